// The Helm chart on the real control plane (test/cluster/harness.ts), with the built helm and
// kubectl binaries:
//   1. every object the chart renders, with each of helm/rollguard/ci/*-values.yaml (the default
//      values plus the webhook credential they lack; every option on; the bundled Redis with
//      every option on), passes the API server's own schema check
//      (apply --dry-run=server --validate=strict; the Prometheus Operator kinds through the
//      minimal CRDs of test/fixtures/crds/monitoring-coreos.yaml);
//   2. `helm install` with the default values (and a webhook Secret): two rollguard replicas become available on two
//      different nodes (kwok's fake pods) beside the bundled Redis StatefulSet (its claim bound to
//      a pre-made PersistentVolume, its own token-less ServiceAccount with no rights), and
//      `kubectl auth can-i` as the chart's ServiceAccount allows exactly what the enabled actions
//      need and denies the rest, as a table, and `auth can-i --list` shows no other right;
//   3. the Deployment action, run with the chart's ServiceAccount token, rolls a Deployment back
//      (the rights are not only few but enough);
//   3b. `helm upgrade` adding Rollout, BlueGreen, Canary and gitops: Argo CD Applications only in
//      argocd, Flux Kustomizations and HelmReleases only in flux-system (Roles), nowhere else;
//   3c. `helm upgrade` to Canary alone, then BlueGreen alone: each kind's rights and no other, and
//      each rolls back with the ServiceAccount token (plan, execute, verify);
//   4. `helm upgrade` to every action kind, scoped to one namespace: Roles there, nothing
//      cluster-wide (kube-system and namespaces outside the scope: no right), release Secrets only
//      with HelmRelease (refused without scope.namespaces), and `helm rollback` run as the chart's
//      ServiceAccount works with the documented broad rules; the bundled Redis keeps its generated
//      password across upgrades;
//   5. redis.url (an external Redis) replaces the bundled one; the two replicas stay on two nodes.
import t, { type Test } from 'tap';
import pino from 'pino';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, startCluster, type Cluster } from '../cluster/harness.js';
import { installCrds } from '../cluster/reconcilers.js';
import { trafficWorkloads } from '../cluster/traffic-workloads.js';
import { deploymentAction } from '../../src/actions/deployment.js';
import { blueGreenAction } from '../../src/actions/blue-green.js';
import { canaryAction } from '../../src/actions/canary.js';
import type { Action, ActionContext, TargetRef } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { loadKubeConfig } from '../../src/kube/config.js';

const CHART = path.join(REPO_ROOT, 'helm', 'rollguard');
const ALL_ON = path.join(CHART, 'ci', 'all-on-values.yaml');
const BUNDLED_ON = path.join(CHART, 'ci', 'bundled-redis-values.yaml');
const MINIMAL = path.join(CHART, 'ci', 'minimal-values.yaml'); // the defaults + auth.webhook.existingSecret: rollguard-webhook
const MONITORING_CRDS = path.join(REPO_ROOT, 'test', 'fixtures', 'crds', 'monitoring-coreos.yaml');
const NS = 'rg-chart'; // where the chart is installed
const RELEASE = 'rg'; // names: rg-rollguard (the harness owns the plain "rollguard" objects)
const SA = `system:serviceaccount:${NS}:${RELEASE}-rollguard`;
const REDIS = `${RELEASE}-rollguard-redis`; // the bundled Redis: StatefulSet, Services, Secret, ServiceAccount
const RG_PODS = `app.kubernetes.io%2Fname%3Drollguard%2Capp.kubernetes.io%2Finstance%3D${RELEASE}`;

const cluster: Cluster = await startCluster();
t.teardown(() => cluster.stop({ keep: !t.passing() }));
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-helm-chart-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** helm prints an INFO line for the chart's files/rules symlink (the repo's rules/); anything else on stderr is shown. */
const helmStderr = (s: string) => s.split('\n').filter((l) => l && !l.includes('found symbolic link in path')).join('\n');
async function helm(args: string[], opts: { kubeconfig?: string; check?: boolean } = {}) {
  const r = await cluster.run('helm', args, { timeoutMs: 240_000, ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}) });
  if (opts.check !== false && r.code !== 0) throw new Error(`helm ${args.join(' ')} exited ${r.code}\n${helmStderr(r.stderr)}\n${r.stdout}`);
  return r;
}
async function kubectl(args: string[], input?: string) {
  return cluster.kubectl(args, { check: true, timeoutMs: 120_000, ...(input !== undefined ? { input } : {}) });
}

// Namespaces the chart's values name, the namespace "other" that a scoped install must not reach,
// and the Prometheus Operator CRDs.
await kubectl(['create', 'namespace', NS]);
// the webhook token Alertmanager will send, as an operator creates it (ci/minimal-values.yaml names it)
await kubectl(['-n', NS, 'create', 'secret', 'generic', 'rollguard-webhook', '--from-literal=token=e2e-webhook-token-0123456789']);
for (const ns of ['shop', 'payments', 'other']) await kubectl(['create', 'namespace', ns]);
await kubectl(['apply', '--server-side', '--field-manager=rollguard-test', '-f', MONITORING_CRDS]);
await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/servicemonitors.monitoring.coreos.com', 'crd/prometheusrules.monitoring.coreos.com']);
// The control plane has no storage provisioner and no StorageClass: a pre-made PersistentVolume
// without a class, as an administrator would create, for the bundled Redis' claim (the default
// values request 1Gi from the default class; with none, the claim binds to a class-less volume).
await kubectl(['apply', '-f', '-'], JSON.stringify({
  apiVersion: 'v1',
  kind: 'PersistentVolume',
  metadata: { name: 'rg-redis-data' },
  spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], persistentVolumeReclaimPolicy: 'Retain', hostPath: { path: '/var/lib/rg-redis-data', type: 'DirectoryOrCreate' } },
}));

t.test('every rendered object passes the API server schema check (--dry-run=server --validate=strict)', async (t) => {
  for (const [name, values] of [
    ['default values', ['-f', MINIMAL] as string[]],
    ['every option on', ['-f', ALL_ON]],
    ['the bundled Redis with every option on', ['-f', BUNDLED_ON]],
  ] as const) {
    const r = await helm(['template', RELEASE, CHART, '--namespace', NS, ...values]);
    const kinds = [...r.stdout.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]).sort();
    t.ok(kinds.includes('Deployment') && kinds.includes('Service') && kinds.includes('ServiceAccount'), `${name}: ${kinds.join(', ')}`);
    t.equal(kinds.filter((k) => k === 'NetworkPolicy').length, values[1] === ALL_ON ? 1 : 2, `${name}: NetworkPolicies (rollguard's${values[1] === ALL_ON ? '' : ", the bundled Redis'"})`);
    if (values[1] === ALL_ON) {
      for (const k of ['ServiceMonitor', 'PrometheusRule', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Secret']) t.ok(kinds.includes(k), `${name} renders a ${k}`);
      t.ok(/grafana_dashboard: "1"/.test(r.stdout), `${name}: the dashboard ConfigMap carries grafana_dashboard`);
      t.notOk(kinds.includes('ClusterRole'), `${name}: scoped to namespaces, no ClusterRole`);
      t.notOk(kinds.includes('StatefulSet'), `${name}: redis.url, nothing bundled`);
    } else {
      t.ok(kinds.includes('ClusterRole') && kinds.includes('ClusterRoleBinding'), `${name}: cluster-wide scope is a ClusterRole`);
      t.ok(kinds.includes('StatefulSet') && kinds.includes('PodDisruptionBudget'), `${name}: the bundled Redis StatefulSet, a PodDisruptionBudget`);
      t.equal(kinds.filter((k) => k === 'Service').length, 3, `${name}: rollguard's Service, the Redis ClusterIP and headless Services`);
      t.equal(kinds.filter((k) => k === 'ServiceAccount').length, 2, `${name}: rollguard's ServiceAccount and the Redis one`);
      // no tokens inline: the only Secrets are the generated Redis password and read token (none
      // with existingSecret and auth.read.allowUnauthenticated)
      t.equal(kinds.filter((k) => k === 'Secret').length, values[1] === MINIMAL ? 2 : 0, `${name}: Secrets`);
    }
    const file = path.join(tmp, `${name.replace(/\W+/g, '-')}.yaml`);
    fs.writeFileSync(file, r.stdout);
    const v = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', file], { timeoutMs: 120_000 });
    t.equal(v.code, 0, `${name}: ${v.stderr || 'valid'}`);
    const accepted = v.stdout.split('\n').filter((l) => /\(server dry run\)$/.test(l));
    t.equal(accepted.length, kinds.length, `${name}: the API server accepted all ${kinds.length} objects`);
  }

  // The check is real: an unknown field in a ServiceMonitor (a typo) is refused.
  const bad = `apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: typo, namespace: ${NS}}\nspec:\n  selector: {}\n  endpoints: [{port: http, intervall: 30s}]\n`;
  const v = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], { input: bad });
  t.not(v.code, 0, 'an unknown ServiceMonitor field is refused');
  t.match(v.stderr, /intervall/, v.stderr);
});

/** The bundled Redis' generated password, read after install, compared after each upgrade. */
let redisPassword = '';

/** The nodes of rollguard's running pods, once exactly replicas of them run (a rollout finished). */
async function rollguardNodes(replicas = 2): Promise<string[]> {
  let nodes: string[] = [];
  for (let i = 0; i < 100; i++) {
    const pods = await cluster.request<{ items: KubeObject[] }>('GET', `/api/v1/namespaces/${NS}/pods?labelSelector=${RG_PODS}`);
    const running = pods.items.filter((p) => p.status?.phase === 'Running' && !p.metadata.deletionTimestamp);
    nodes = running.map((p) => p.spec.nodeName as string);
    if (running.length === replicas && pods.items.length === replicas) break;
    await sleep(300);
  }
  return nodes;
}

/** One row: `kubectl auth can-i VERB RESOURCE [--subresource] -n NAMESPACE` as the chart's ServiceAccount. */
type Row = [verb: string, resource: string, namespace: string, expected: boolean];
async function canI([verb, resource, ns]: Row): Promise<boolean> {
  const [res, sub] = resource.split('/') as [string, string | undefined];
  const r = await cluster.kubectl(['auth', 'can-i', verb, res, ...(sub ? [`--subresource=${sub}`] : []), `--as=${SA}`, '-n', ns], { timeoutMs: 60_000 });
  const out = r.stdout.trim();
  if (out !== 'yes' && out !== 'no') throw new Error(`kubectl auth can-i ${verb} ${resource} -n ${ns}: ${r.stderr}${r.stdout}`);
  return out === 'yes';
}
async function checkTable(t: Test, rows: Row[]) {
  const got = await Promise.all(rows.map(canI));
  const lines: string[] = [];
  rows.forEach((row, i) => {
    const [verb, resource, ns, want] = row;
    lines.push(`${got[i] === want ? ' ' : '✗'} ${verb.padEnd(16)} ${resource.padEnd(40)} ${ns.padEnd(9)} ${got[i] ? 'yes' : 'no '} (want ${want ? 'yes' : 'no'})`);
    t.equal(got[i], want, `can-i ${verb} ${resource} -n ${ns}`);
  });
  t.comment(`auth can-i as ${SA}\n${lines.join('\n')}`);
}

/** `auth can-i --list` in a namespace, minus what every authenticated user has (self reviews). */
async function rightsList(ns: string): Promise<string[]> {
  const r = await kubectl(['auth', 'can-i', '--list', `--as=${SA}`, '-n', ns, '--no-headers']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s{2,}/))
    .filter((c) => c.length === 4 && c[1] === '[]' && !/^selfsubject/.test(c[0]!))
    .map((c) => `${c[0]} ${c[3]}`)
    .sort();
}

// Rows shared by the tables: what no configuration without HelmRelease may do. (get configmaps and
// get secrets: the workload kinds' configuration check, metadata only, in each table; get secrets
// only where actions.checkSecrets is in effect: never by default cluster-wide.)
const neverWithoutHelm = (ns: string): Row[] => [
  ['list', 'secrets', ns, false],
  ['watch', 'secrets', ns, false],
  ['list', 'configmaps', ns, false],
  ['patch', 'configmaps', ns, false],
  ['delete', 'deployments.apps', ns, false],
  ['delete', 'pods', ns, false],
  ['delete', 'replicasets.apps', ns, false],
  ['deletecollection', 'deployments.apps', ns, false],
  ['create', 'deployments.apps', ns, false],
  ['update', 'deployments.apps', ns, false],
  ['patch', 'deployments.apps/scale', ns, false],
  ['create', 'pods/exec', ns, false],
  ['create', 'events', ns, false],
  ['get', 'leases.coordination.k8s.io', ns, false],
  ['patch', 'nodes', ns, false],
  ['create', 'clusterroles.rbac.authorization.k8s.io', ns, false],
  ['create', 'rolebindings.rbac.authorization.k8s.io', ns, false],
  ['create', 'serviceaccounts/token', ns, false],
  ['impersonate', 'serviceaccounts', ns, false],
];

t.test('helm install (default values): the ServiceAccount may do exactly what Deployment/StatefulSet/DaemonSet undo needs', async (t) => {
  const refused = await helm(['install', RELEASE, CHART, '--namespace', NS, '--dry-run=server'], { check: false });
  t.not(refused.code, 0, 'the default values alone (no webhook credential) do not install');
  t.match(refused.stderr, /auth\.webhook\.allowUnauthenticated/);
  await helm(['install', RELEASE, CHART, '--namespace', NS, '-f', MINIMAL, '--wait', '--timeout', '3m']);
  const dep = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${RELEASE}-rollguard`);
  t.equal(dep.spec.replicas, 2, 'two replicas by default');
  t.equal(dep.status?.availableReplicas, 2, 'the Deployment is available (kwok pods)');
  const nodes = await rollguardNodes();
  t.equal(new Set(nodes).size, 2, `the two replicas on distinct nodes (topology spread): ${nodes.join(', ')}`);
  const pdb = await cluster.request<KubeObject>('GET', `/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets/${RELEASE}-rollguard`);
  t.equal(pdb.spec.maxUnavailable, 1, 'a PodDisruptionBudget keeps one up');
  t.equal(pdb.status?.expectedPods, 2, "the PodDisruptionBudget counts rollguard's two pods, not Redis");

  // the bundled Redis
  const sts = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/statefulsets/${REDIS}`);
  t.equal(sts.status?.readyReplicas, 1, 'the Redis StatefulSet is ready');
  const pvc = await cluster.request<KubeObject>('GET', `/api/v1/namespaces/${NS}/persistentvolumeclaims/data-${REDIS}-0`);
  t.same([pvc.status?.phase, pvc.spec.volumeName, pvc.spec.resources.requests.storage], ['Bound', 'rg-redis-data', '1Gi'], 'its claim is bound');
  const redisPod = await cluster.request<KubeObject>('GET', `/api/v1/namespaces/${NS}/pods/${REDIS}-0`);
  t.equal(redisPod.status?.phase, 'Running');
  t.equal(redisPod.spec.serviceAccountName, REDIS, 'its own ServiceAccount');
  t.equal(redisPod.spec.automountServiceAccountToken, false, 'no API token mounted');
  t.notOk((redisPod.spec.volumes as { name: string; projected?: unknown }[]).some((v) => v.projected), 'no projected token volume');
  t.same([redisPod.spec.securityContext.runAsUser, redisPod.spec.containers[0].securityContext.readOnlyRootFilesystem], [999, true], 'uid 999, read-only root filesystem');
  t.match(redisPod.spec.containers[0].args.join(' '), /--appendonly yes --appendfsync everysec/);
  const svc = await cluster.request<KubeObject>('GET', `/api/v1/namespaces/${NS}/services/${REDIS}`);
  t.match(svc.spec.clusterIP, /^\d+\.\d+\.\d+\.\d+$/, 'a ClusterIP Service');
  const rgSvc = await cluster.request<KubeObject & { subsets?: { addresses?: unknown[] }[] }>('GET', `/api/v1/namespaces/${NS}/endpoints/${RELEASE}-rollguard`);
  t.equal((rgSvc.subsets ?? []).flatMap((s) => s.addresses ?? []).length, 2, "rollguard's Service: its two pods, not Redis");
  const redisSvc = await cluster.request<KubeObject & { subsets?: { addresses?: { targetRef?: { name: string } }[] }[] }>('GET', `/api/v1/namespaces/${NS}/endpoints/${REDIS}`);
  t.same((redisSvc.subsets ?? []).flatMap((s) => s.addresses ?? []).map((a) => a.targetRef?.name), [`${REDIS}-0`], 'the Redis Service: the Redis pod');
  const env = dep.spec.template.spec.containers[0].env as { name: string; value?: string }[];
  t.equal(env.find((e) => e.name === 'REDIS_URL')?.value, `redis://:$(REDIS_PASSWORD)@${REDIS}.${NS}.svc:6379/0`, 'REDIS_URL points at the bundled Redis');
  const secret = await cluster.request<KubeObject & { data: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/secrets/${REDIS}`);
  redisPassword = Buffer.from(secret.data['redis-password']!, 'base64').toString();
  t.match(redisPassword, /^[A-Za-z0-9]{32}$/, 'a generated password');
  // Redis needs no Kubernetes API right: its ServiceAccount has none
  const redisSA = `system:serviceaccount:${NS}:${REDIS}`;
  const redisRights = await kubectl(['auth', 'can-i', '--list', `--as=${redisSA}`, '-n', NS, '--no-headers']);
  t.same(
    redisRights.stdout.split('\n').map((l) => l.trim().split(/\s{2,}/)).filter((c) => c.length === 4 && c[1] === '[]' && !/^selfsubject/.test(c[0]!)),
    [],
    'the Redis ServiceAccount: no right',
  );
  const redisCan = await cluster.kubectl(['auth', 'can-i', 'get', 'secrets', `--as=${redisSA}`, '-n', NS]);
  t.equal(redisCan.stdout.trim(), 'no', 'the Redis ServiceAccount cannot read Secrets');
  const c = dep.spec.template.spec.containers[0];
  t.equal(c.securityContext.readOnlyRootFilesystem, true, 'read-only root filesystem');
  t.equal(dep.spec.template.spec.securityContext.runAsNonRoot, true, 'non-root');
  t.same([c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path], ['/healthz', '/readyz']);
  t.ok(c.env.some((e: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }) => e.name === 'CONSUMER_NAME' && e.valueFrom?.fieldRef?.fieldPath === 'metadata.name'), 'CONSUMER_NAME from the pod name');

  const ns = 'shop';
  await checkTable(t, [
    ['get', 'deployments.apps', ns, true],
    ['patch', 'deployments.apps', ns, true],
    ['get', 'deployments.apps', 'other', true], // ClusterRole: every namespace (the scope guard narrows)
    // ClusterRole: RBAC allows kube-system too and only the scope guard (SCOPE_DENY_NAMESPACES)
    // refuses it; scope.namespaces takes the right away (the scoped upgrade below)
    ['patch', 'deployments.apps', 'kube-system', true],
    ['list', 'replicasets.apps', ns, true],
    ['get', 'statefulsets.apps', ns, true],
    ['patch', 'statefulsets.apps', ns, true],
    ['get', 'daemonsets.apps', ns, true],
    ['patch', 'daemonsets.apps', ns, true],
    ['list', 'controllerrevisions.apps', ns, true],
    // the restored revision's ConfigMaps, read as metadata only. Secrets too would need `get
    // secrets` (RBAC has no metadata-only right), which cluster-wide reads every Secret of the
    // cluster: actions.checkSecrets (auto, the default) is off here, no right on Secrets anywhere
    ['get', 'configmaps', ns, true],
    ['get', 'secrets', ns, false],
    ['get', 'secrets', 'other', false],
    ['get', 'secrets', 'kube-system', false],
    ['get', 'secrets', NS, false],
    // not needed by these three kinds
    ['list', 'deployments.apps', ns, false],
    ['watch', 'deployments.apps', ns, false],
    ['patch', 'replicasets.apps', ns, false],
    ['patch', 'controllerrevisions.apps', ns, false],
    ['patch', 'services', ns, false],
    ['patch', 'rollouts.argoproj.io', ns, false],
    ['patch', 'rollouts.argoproj.io/status', ns, false],
    ['get', 'pods', ns, false],
    ...neverWithoutHelm(ns),
  ]);
  t.same(
    await rightsList(ns),
    [
      'configmaps [get]',
      'controllerrevisions.apps [list]',
      'daemonsets.apps [get patch]',
      'deployments.apps [get patch]',
      'replicasets.apps [list]',
      'statefulsets.apps [get patch]',
    ],
    'auth can-i --list: no right beyond these',
  );
  t.same(await rightsList('kube-system'), await rightsList(ns), 'the same (no Secret) in kube-system');
  t.equal(env.find((e) => e.name === 'CONFIG_CHECK_SECRETS')?.value, 'false', 'CONFIG_CHECK_SECRETS follows: rollguard asks for no Secret');
});

t.test('the Deployment action rolls back with the chart ServiceAccount token', async (t) => {
  const ns = 'shop';
  const dep = (image: string) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: ns },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      // an optional Secret (absent): the configuration check has a Secret to (not) read
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image, envFrom: [{ secretRef: { name: 'web-creds', optional: true } }] }] } },
    },
  });
  await kubectl(['apply', '-f', '-'], JSON.stringify(dep('web:v1')));
  await kubectl(['rollout', 'status', '-n', ns, 'deployment/web', '--timeout=90s']);
  await kubectl(['apply', '-f', '-'], JSON.stringify(dep('web:v2')));
  await kubectl(['rollout', 'status', '-n', ns, 'deployment/web', '--timeout=90s']);

  const kubeconfig = await saKubeconfig();
  const ctx: ActionContext = {
    kube: new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: kubeconfig }))!),
    logger: pino({ level: 'silent' }),
    changeCause: 'rollguard: e2e helm-chart',
    checkFence: async () => {},
  };
  const ref: TargetRef = { kind: 'Deployment', namespace: ns, name: 'web' };
  // the default install has no right on Secrets: CONFIG_CHECK_SECRETS on would be refused by the API server
  const forbidden = await deploymentAction.plan(ref, ctx);
  t.match(forbidden.configDrift?.map((d) => d.message), [/^Secret shop\/web-creds, used by revision 1, could not be checked \(.*forbidden/i], 'CONFIG_CHECK_SECRETS on against the default RBAC: forbidden');
  // as the chart sets it by default (CONFIG_CHECK_SECRETS=false): no Secret read, listed as not checked, naming the setting
  const off: ActionContext = { ...ctx, checkSecrets: false };
  const plan = await deploymentAction.plan(ref, off);
  t.same(plan.configDrift?.map((d) => d.message), ['Secret shop/web-creds, used by revision 1, not checked: CONFIG_CHECK_SECRETS is off (chart: actions.checkSecrets): it may have changed since']);
  await rollsBack(t, deploymentAction, ref, off);
  const d = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/web`);
  t.equal(d.spec.template.spec.containers[0].image, 'web:v1', 'v1 is back');
});

/** The action plans (no refusal), writes and verifies its rollback of `ref` with `ctx`. */
async function rollsBack(t: Test, action: Action, ref: TargetRef, ctx: ActionContext): Promise<void> {
  const plan = await action.plan(ref, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? plan.summary);
  const exec = await action.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await action.verify(plan, ctx, { timeoutMs: 90_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
}

/** A kubeconfig holding a token of the chart's ServiceAccount (TokenRequest API). */
async function saKubeconfig(): Promise<string> {
  const tok = await cluster.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${NS}/serviceaccounts/${RELEASE}-rollguard/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  });
  const file = path.join(tmp, `sa-${Date.now()}.kubeconfig`);
  const cfg = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: cluster.server, 'certificate-authority': cluster.caFile } }],
    users: [{ name: 'rollguard', user: { token: tok.status.token } }],
    contexts: [{ name: 'rollguard', context: { cluster: 'test', user: 'rollguard', namespace: NS } }],
    'current-context': 'rollguard',
  };
  fs.writeFileSync(file, JSON.stringify(cfg), { mode: 0o600 });
  return file;
}

t.test('helm upgrade: Rollout, BlueGreen and Canary added, and gitops; actions.checkSecrets off: no Secrets, and no delete', async (t) => {
  // gitops.enabled: Roles in the Argo CD namespace and the Flux namespaces (the defaults), which exist where those tools run
  for (const ns of ['argocd', 'flux-system']) await kubectl(['create', 'namespace', ns]);
  await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'actions.enabled={Deployment,Rollout,BlueGreen,Canary}', '--set', 'gitops.enabled=true', '--set', 'actions.checkSecrets=false', '--wait', '--timeout', '3m']);
  // kubectl auth can-i resolves a resource through discovery: the Argo CD CRDs make its rows
  // answerable (Flux's CRDs come with the Flux build; its rights are in the --list below)
  await installCrds(cluster, path.join(REPO_ROOT, 'test', 'fixtures', 'crds', 'argocd'));
  const ns = 'payments';
  await checkTable(t, [
    ['get', 'deployments.apps', ns, true],
    ['list', 'deployments.apps', ns, true], // BlueGreen: the Deployments behind each colour
    ['patch', 'deployments.apps', ns, true], // Canary: spec.replicas, no scale subresource
    ['list', 'replicasets.apps', ns, true],
    ['get', 'rollouts.argoproj.io', ns, true],
    ['patch', 'rollouts.argoproj.io', ns, true],
    ['patch', 'rollouts.argoproj.io/status', ns, true], // abort
    ['get', 'services', ns, true],
    ['patch', 'services', ns, true], // selector switch
    ['update', 'rollouts.argoproj.io', ns, false],
    ['delete', 'rollouts.argoproj.io', ns, false],
    ['delete', 'services', ns, false],
    ['list', 'services', ns, false],
    ['patch', 'statefulsets.apps', ns, false], // StatefulSet no longer enabled
    ['list', 'controllerrevisions.apps', ns, false],
    ['get', 'configmaps', ns, true], // Deployment: the restored revision's ConfigMaps (metadata)
    ['get', 'secrets', ns, false], // actions.checkSecrets: false
    // gitops.enabled: read the owners, patch their sync settings (suspend, resume), only in the
    // Argo CD namespace (Applications; ApplicationSets read only) and the Flux namespaces
    ['get', 'applications.argoproj.io', 'argocd', true],
    ['patch', 'applications.argoproj.io', 'argocd', true],
    ['get', 'applicationsets.argoproj.io', 'argocd', true],
    ['patch', 'applicationsets.argoproj.io', 'argocd', false],
    ['delete', 'applications.argoproj.io', 'argocd', false],
    ['update', 'applications.argoproj.io', 'argocd', false],
    ['create', 'applications.argoproj.io', 'argocd', false],
    ['get', 'applications.argoproj.io', ns, false], // not cluster-wide
    ['patch', 'applications.argoproj.io', ns, false],
    ['patch', 'applications.argoproj.io', 'flux-system', false],
    ['get', 'applicationsets.argoproj.io', ns, false],
    ...neverWithoutHelm(ns),
  ]);
  // the ClusterRole's, in every namespace
  const clusterRights = ['configmaps [get]', 'deployments.apps [get list patch]', 'replicasets.apps [list]', 'rollouts.argoproj.io/status [patch]', 'rollouts.argoproj.io [get patch]', 'services [get patch]'];
  t.same(await rightsList(ns), [...clusterRights].sort(), 'auth can-i --list: no right beyond these (no GitOps owner right)');
  const dep = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${RELEASE}-rollguard`);
  t.equal((dep.spec.template.spec.containers[0].env as { name: string; value?: string }[]).find((e) => e.name === 'CONFIG_CHECK_SECRETS')?.value, 'false', 'actions.checkSecrets: false: CONFIG_CHECK_SECRETS=false');
  t.same(
    await rightsList('flux-system'),
    ['helmreleases.helm.toolkit.fluxcd.io [get patch]', 'kustomizations.kustomize.toolkit.fluxcd.io [get patch]', ...clusterRights].sort(),
    'flux-system: the Kustomizations and HelmReleases, get and patch, beside the ClusterRole',
  );
});

t.test('helm upgrade to Canary alone, then BlueGreen alone: each rolls back with the chart ServiceAccount token', async (t) => {
  // Each plan lists the ReplicaSets of the Deployments it reads: an install enabling one of these
  // kinds alone must grant that (the rights are not only few but enough, kind by kind).
  const ns = 'payments';
  const { api, available, create, blueGreen } = trafficWorkloads(cluster, ns);
  const saCtx = async (): Promise<ActionContext> => ({
    kube: new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: await saKubeconfig() }))!),
    logger: pino({ level: 'silent' }),
    changeCause: 'rollguard: e2e helm-chart, one kind alone',
    checkFence: async () => {},
  });

  await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'actions.enabled={Canary}', '--set', 'gitops.enabled=false', '--wait', '--timeout', '3m']);
  t.same(await rightsList(ns), ['deployments.apps [get patch]', 'replicasets.apps [list]'], 'Canary alone: its rights, no other');
  await create('cart-stable', { app: 'cart', track: 'stable' }, 2);
  await create('cart-canary', { app: 'cart', track: 'canary' }, 1);
  await available('cart-stable');
  await available('cart-canary');
  await rollsBack(t, canaryAction, { kind: 'Canary', namespace: ns, name: 'cart' }, await saCtx());
  t.equal((await cluster.request<KubeObject>('GET', api('deployments/cart-canary'))).spec.replicas, 0, 'the canary is at 0');

  await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'actions.enabled={BlueGreen}', '--wait', '--timeout', '3m']);
  t.same(await rightsList(ns), ['deployments.apps [list]', 'replicasets.apps [list]', 'services [get patch]'], 'BlueGreen alone: its rights, no other');
  await blueGreen('till', 1);
  await rollsBack(t, blueGreenAction, { kind: 'BlueGreen', namespace: ns, name: 'till' }, await saCtx());
  const svc = await cluster.request<KubeObject>('GET', `/api/v1/namespaces/${ns}/services/till`);
  t.same(svc.spec.selector, { app: 'till', version: 'blue' }, 'the Service is back on blue');
});

t.test('helm upgrade: every kind with HelmRelease, scoped to namespace shop (Roles)', async (t) => {
  const unscoped = await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'actions.enabled={Deployment,HelmRelease}', '--dry-run=server'], { check: false });
  t.not(unscoped.code, 0, 'HelmRelease without scope.namespaces is refused');
  t.match(unscoped.stderr, /HelmRelease.*scope\.namespaces/);
  const system = await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'scope.namespaces={shop,kube-system}', '--dry-run=server'], { check: false });
  t.not(system.code, 0, 'a Role in kube-system is refused');
  t.match(system.stderr, /scope\.namespaces lists kube-system/);
  await helm([
    'upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values',
    '--set', 'actions.enabled={Deployment,StatefulSet,DaemonSet,Rollout,BlueGreen,Canary,HelmRelease}',
    '--set', 'scope.namespaces={shop}',
    '--set', 'gitops.enabled=false',
    // an earlier upgrade set false, and --reuse-values keeps it (with helm 4, `--set
    // actions.checkSecrets=null` did not drop it here): true, what auto gives with scope.namespaces
    // (auto itself: test/unit/helm/chart.test.ts)
    '--set', 'actions.checkSecrets=true',
    '--wait', '--timeout', '3m',
  ]);
  const crs = await cluster.request<{ items: KubeObject[] }>('GET', `/apis/rbac.authorization.k8s.io/v1/clusterroles?labelSelector=app.kubernetes.io%2Finstance%3D${RELEASE}`);
  t.same(crs.items.map((c) => c.metadata.name), [], 'the ClusterRole is gone');
  const roles = await cluster.request<{ items: KubeObject[] }>('GET', `/apis/rbac.authorization.k8s.io/v1/roles?labelSelector=app.kubernetes.io%2Finstance%3D${RELEASE}`);
  t.same(roles.items.map((r) => `${r.metadata.namespace}/${r.metadata.name}`), [`shop/${RELEASE}-rollguard`], 'one Role, in shop');
  const dep = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${RELEASE}-rollguard`);
  const env = Object.fromEntries((dep.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  t.equal(env.SCOPE_NAMESPACES, 'shop', 'SCOPE_NAMESPACES follows the Roles');
  t.equal(env.CONFIG_CHECK_SECRETS, 'true', 'actions.checkSecrets on with scope.namespaces: CONFIG_CHECK_SECRETS=true (get secrets in shop only)');
  t.equal(env.HELM_BIN, '/usr/local/bin/helm');

  await checkTable(t, [
    ['get', 'secrets', 'shop', true], // helm release storage
    ['list', 'secrets', 'shop', true],
    ['create', 'secrets', 'shop', true],
    ['update', 'secrets', 'shop', true],
    ['delete', 'secrets', 'shop', true], // --history-max pruning
    ['patch', 'deployments.apps', 'shop', true],
    ['delete', 'deployments.apps', 'shop', true], // helm rollback re-applies the release (documented broad role)
    ['patch', 'rollouts.argoproj.io/status', 'shop', true],
    ['patch', 'services', 'shop', true],
    ['list', 'controllerrevisions.apps', 'shop', true],
    // outside the scope: nothing at all, kube-system included
    ['patch', 'deployments.apps', 'kube-system', false],
    ['patch', 'daemonsets.apps', 'kube-system', false],
    ['get', 'secrets', 'kube-system', false],
    ['get', 'deployments.apps', 'other', false],
    ['patch', 'deployments.apps', 'other', false],
    ['get', 'secrets', 'other', false],
    ['get', 'secrets', NS, false],
    ['patch', 'services', 'payments', false],
    // never, even with helm
    ['create', 'clusterroles.rbac.authorization.k8s.io', 'shop', false],
    ['create', 'rolebindings.rbac.authorization.k8s.io', 'shop', false],
    ['patch', 'nodes', 'shop', false],
    ['create', 'pods/exec', 'shop', false],
    ['impersonate', 'serviceaccounts', 'shop', false],
  ]);
  t.same(await rightsList('other'), [], 'no right at all in a namespace outside the scope');
  t.same(await rightsList('kube-system'), [], 'none in kube-system');

  // The broad rules are enough for `helm rollback`, run with the ServiceAccount's token.
  const chart = path.join(tmp, 'shop-chart');
  fs.mkdirSync(path.join(chart, 'templates'), { recursive: true });
  fs.writeFileSync(path.join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: shop\nversion: 0.1.0\n');
  fs.writeFileSync(path.join(chart, 'values.yaml'), 'image: shop:v1\n');
  fs.writeFileSync(
    path.join(chart, 'templates', 'app.yaml'),
    'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: shop}}\n' +
      '  template:\n    metadata: {labels: {app: shop}}\n    spec: {containers: [{name: shop, image: "{{ .Values.image }}"}]}\n' +
      '---\napiVersion: v1\nkind: Service\nmetadata: {name: shop}\nspec: {selector: {app: shop}, ports: [{port: 80}]}\n' +
      '---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop}\ndata: {image: "{{ .Values.image }}"}\n',
  );
  await helm(['install', 'shop', chart, '-n', 'shop', '--wait', '--timeout', '2m']);
  await helm(['upgrade', 'shop', chart, '-n', 'shop', '--set', 'image=shop:v2', '--wait', '--timeout', '2m']);
  const kubeconfig = await saKubeconfig();
  const env2 = { kubeconfig };
  const rb = await helm(['rollback', 'shop', '1', '-n', 'shop', '--wait', '--timeout', '2m'], { ...env2, check: false });
  t.equal(rb.code, 0, `helm rollback as the ServiceAccount: ${helmStderr(rb.stderr)}`);
  const cm = await cluster.request<KubeObject & { data: Record<string, string> }>('GET', '/api/v1/namespaces/shop/configmaps/shop');
  t.equal(cm.data.image, 'shop:v1', 'revision 1 is back');
  const denied = await helm(['list', '-n', 'other'], { ...env2, check: false });
  t.not(denied.code, 0, 'helm cannot read releases outside the scope');
  t.match(denied.stderr, /forbidden/i);

  // three upgrades later the bundled Redis still has the password generated at install (lookup)
  const secret = await cluster.request<KubeObject & { data: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/secrets/${REDIS}`);
  t.ok(redisPassword, 'the password was read at install');
  t.equal(Buffer.from(secret.data['redis-password']!, 'base64').toString(), redisPassword, 'the Redis password survives helm upgrade');
});

t.test('redis.url: an external Redis replaces the bundled one; two replicas on two nodes', async (t) => {
  await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'redis.url=redis://redis.rg-chart.svc:6379/0', '--wait', '--timeout', '3m']);
  const nodes = await rollguardNodes();
  t.equal(nodes.length, 2, 'two pods running');
  t.equal(new Set(nodes).size, 2, `on distinct nodes: ${nodes.join(', ')}`);
  const pdb = await cluster.request<KubeObject>('GET', `/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets/${RELEASE}-rollguard`);
  t.equal(pdb.spec.maxUnavailable, 1, 'a PodDisruptionBudget keeps one up');
  const secret = await cluster.request<KubeObject & { data: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/secrets/${RELEASE}-rollguard-secrets`);
  t.equal(Buffer.from(secret.data['redis-url']!, 'base64').toString(), 'redis://redis.rg-chart.svc:6379/0', 'REDIS_URL from a Secret');
  const sts = await cluster.request<{ items: KubeObject[] }>('GET', `/apis/apps/v1/namespaces/${NS}/statefulsets`);
  t.same(sts.items.map((s) => s.metadata.name), [], 'the bundled Redis StatefulSet is gone');
  const sas = await cluster.request<{ items: KubeObject[] }>('GET', `/api/v1/namespaces/${NS}/serviceaccounts?labelSelector=app.kubernetes.io%2Finstance%3D${RELEASE}`);
  t.same(sas.items.map((s) => s.metadata.name), [`${RELEASE}-rollguard`], 'and its ServiceAccount');
  const pvc = await cluster.request<KubeObject>('GET', `/api/v1/namespaces/${NS}/persistentvolumeclaims/data-${REDIS}-0`);
  t.equal(pvc.status?.phase, 'Bound', "its data stays (a StatefulSet's claims outlive it; delete by hand)");

  const refused = await helm(['upgrade', RELEASE, CHART, '--namespace', NS, '--reuse-values', '--set', 'redis.url=', '--set', 'redis.bundled.enabled=false', '--dry-run=server'], { check: false });
  t.not(refused.code, 0, 'two replicas without Redis (neither external nor bundled) are refused');
  t.match(refused.stderr, /redis/);
});
