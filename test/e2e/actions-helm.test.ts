// Helm rollback through the built helm binary against the real control plane: install v1,
// upgrade to v2, roll back with rollguard's Helm action (argument array, --wait), check the
// release history and the Deployment it owns. Then a release a Flux HelmRelease installs, rolled
// back by an alert through the engine as rollguard's ServiceAccount: the HelmRelease is suspended
// first, and only when its own status lists the release's workload. Flux's helm-controller cannot be
// built here (docs/actions.md says why): the HelmRelease CRD is its own, and the test writes the
// origin labels and the inventory that controller would.
import t from 'tap';
import pino from 'pino';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { applyChartRbac, REPO_ROOT, startCluster, type Cluster } from '../cluster/harness.js';
import { FLUX_NAMESPACE, installCrds } from '../cluster/reconcilers.js';
import { clusterEngine, firingNow } from '../support/engine.js';
import { MemoryStore } from '../../src/store/memory.js';
import { createHelmAction } from '../../src/actions/helm.js';
import type { ActionContext } from '../../src/actions/action.js';
import type { KubeObject } from '../../src/kube/kube.js';

const NS = 'e2e-helm';
const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp 1234), rollback r-helm';

const cluster: Cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));

const chart = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-'));
t.teardown(() => fs.rmSync(chart, { recursive: true, force: true }));
fs.mkdirSync(path.join(chart, 'templates'));
fs.writeFileSync(path.join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: "1"\n');
fs.writeFileSync(path.join(chart, 'values.yaml'), 'image: shop:v1\n');
fs.writeFileSync(
  path.join(chart, 'templates', 'deployment.yaml'),
  `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  {{- with .Values.labels }}
  labels: {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  replicas: 2
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image }}
`,
);

const helm = (args: string[]) => cluster.run('helm', args, { timeoutMs: 180_000 });

t.test('helm rollback RELEASE --wait through the helm binary', async (t) => {
  await cluster.kubectl(['create', 'namespace', NS], { check: true });
  const i = await helm(['install', 'shop', chart, '-n', NS, '--wait', '--timeout', '2m']);
  t.equal(i.code, 0, `helm install: ${i.stderr}`);
  const u = await helm(['upgrade', 'shop', chart, '-n', NS, '--set', 'image=shop:v2', '--wait', '--timeout', '2m']);
  t.equal(u.code, 0, `helm upgrade: ${u.stderr}`);

  // helm keeps releases in Secrets, which rollguard's ServiceAccount may not read: admin here
  const action = createHelmAction({ helmBin: cluster.bin('helm'), kubeconfig: cluster.adminKubeconfig });
  const ctx: ActionContext = { kube: null, logger: pino({ level: 'silent' }), changeCause: CAUSE, checkFence: async () => {} };
  const plan = await action.plan({ kind: 'HelmRelease', namespace: NS, name: 'shop', options: { timeout: '2m' } }, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? plan.summary);
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1);
  t.same([plan.command?.[1], ...(plan.command?.slice(-3) ?? [])], ['rollback', '--', 'shop', '1'], 'the release and revision after --, as the built helm takes them');
  const exec = await action.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await action.verify(plan, ctx, { timeoutMs: 30_000, pollMs: 500, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);

  const d = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/shop`);
  t.equal(d.spec.template.spec.containers[0].image, 'shop:v1', 'v1 is back');
  const h = await helm(['history', 'shop', '-n', NS, '-o', 'json']);
  const hist = JSON.parse(h.stdout) as { revision: number; status: string; description: string }[];
  const last = hist[hist.length - 1]!;
  t.equal(last.revision, 3);
  t.equal(last.status, 'deployed');
  t.equal(last.description, CAUSE, 'the rollback revision says which rule and alert');

  const missing = await action.plan({ kind: 'HelmRelease', namespace: NS, name: 'nope' }, ctx);
  t.equal(missing.refusal?.code, 'not_found', missing.refusal?.message ?? '');
});

t.test('a release a Flux HelmRelease installs: suspended before helm rollback, only when its status lists the release\'s workload', async (t) => {
  const REL = 'shop-flux';
  await installCrds(cluster, path.join(REPO_ROOT, 'test', 'fixtures', 'crds', 'flux-helm'));
  // the gitops RBAC's Roles are in Argo CD's namespace and Flux's
  for (const ns of [FLUX_NAMESPACE, 'argocd']) await cluster.kubectl(['create', 'namespace', ns], { check: true });
  // rollguard's ServiceAccount: the chart's RBAC with HelmRelease (helm's release Secrets, and the
  // kinds a release holds, in NS: its workloads are read with those rights) and Deployment on, and
  // gitops.enabled (HelmReleases get and patch in flux-system)
  await applyChartRbac(cluster, ['gitops.enabled=true', 'actions.enabled={Deployment,HelmRelease}', `scope.namespaces={${NS}}`]);
  // helm-controller's post-renderer labels every object it renders with its HelmRelease
  const values = path.join(chart, 'flux-values.yaml');
  fs.writeFileSync(values, JSON.stringify({ labels: { 'helm.toolkit.fluxcd.io/name': REL, 'helm.toolkit.fluxcd.io/namespace': FLUX_NAMESPACE } }));
  t.equal((await helm(['install', REL, chart, '-n', NS, '-f', values, '--wait', '--timeout', '2m'])).code, 0, 'installed v1');
  t.equal((await helm(['upgrade', REL, chart, '-n', NS, '-f', values, '--set', 'image=shop:v2', '--wait', '--timeout', '2m'])).code, 0, 'upgraded to v2');
  const hrPath = `/apis/helm.toolkit.fluxcd.io/v2/namespaces/${FLUX_NAMESPACE}/helmreleases/${REL}`;
  await cluster.request('POST', `/apis/helm.toolkit.fluxcd.io/v2/namespaces/${FLUX_NAMESPACE}/helmreleases`, {
    apiVersion: 'helm.toolkit.fluxcd.io/v2',
    kind: 'HelmRelease',
    metadata: { name: REL },
    spec: { interval: '1m', releaseName: REL, targetNamespace: NS, storageNamespace: NS, chartRef: { kind: 'OCIRepository', name: 'shop' } },
  });
  // the status helm-controller writes: the objects it applied, and the release it installs (its
  // newest history entry, and where the release's records are)
  const status = (ids: string[], release: string) =>
    cluster.request('PATCH', `${hrPath}/status`, {
      status: {
        inventory: { entries: ids.map((id) => ({ id, v: 'v1' })) },
        storageNamespace: NS,
        history: [{ name: release, namespace: NS, version: 2, status: 'deployed', chartName: 'shop', chartVersion: '0.1.0', configDigest: 'sha256:0', digest: 'sha256:0', firstDeployed: new Date().toISOString(), lastDeployed: new Date().toISOString() }],
      },
    });
  const history = async () => (JSON.parse((await helm(['history', REL, '-n', NS, '-o', 'json'])).stdout) as { revision: number; description: string }[]).map((h) => h.revision);

  // a P0 rule per kind, acting without a Prometheus to confirm (there is none here)
  const rule = (name: string, alertname: string, target: string) =>
    `  - { name: ${name}, match: ['alertname="${alertname}"'], target: ${target}, priority: P0, onPrometheusDown: act,\n` +
    '      trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s } }\n';
  const RULES = `rules:\n${rule('bad-release', 'BadRelease', '{ kind: HelmRelease, namespace: "{{ $labels.namespace }}", name: "{{ $labels.release }}" }')}${rule('bad-deploy', 'BadDeploy', '{ kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }')}`;
  const { engine } = await clusterEngine({
    kubeconfig: cluster.rollguardKubeconfig,
    // as the chart sets them with scope.namespaces and gitops.ownerAllow: rollbacks in NS only, and
    // the HelmReleases rollguard may suspend named apart (flux-system is not opened to rollbacks)
    env: { DRY_RUN: 'false', SCOPE_NAMESPACES: NS, GITOPS_OWNER_ALLOW: `HelmRelease/${FLUX_NAMESPACE}/shop-*`, VERIFY_TIMEOUT: '60s', LOCK_TTL: '10s' },
    rulesText: RULES,
    store: new MemoryStore(),
    owner: 'replica-a',
    helm: { helmBin: cluster.bin('helm'), kubeconfig: cluster.rollguardKubeconfig },
  });
  t.teardown(() => engine.stop());
  let ev = 0;
  const alert = async (labels: Record<string, string> = { alertname: 'BadRelease', namespace: NS, release: REL }) => {
    const a = firingNow(labels.alertname!, REL);
    a.fingerprint = `bad-release-${++ev}`;
    a.labels = labels;
    await engine.handle({ id: `ev-${ev}`, alert: a, deliveries: 1 });
    await engine.idle();
    return (await engine.records.list({})).find((r) => r.alert?.fingerprint === a.fingerprint)!;
  };

  // the labels name the HelmRelease, but its status lists another object: the labels are not proof
  await status([`${NS}_other_apps_Deployment`], REL);
  const refused = await alert();
  t.equal(refused.state, 'refused', `${refused.state}: ${refused.outcome?.message}`);
  t.match(refused.outcome?.message, /names Flux HelmRelease flux-system\/shop-flux by its labels .*but that HelmRelease's status.inventory does not list it/, 'the outcome names the HelmRelease and why it is not taken for the owner');
  t.same(await history(), [1, 2], 'helm rollback not run');
  t.notOk((await cluster.request<KubeObject>('GET', hrPath)).spec.suspend, 'the HelmRelease untouched');

  // it lists the Deployment, but says it installs another release (a manifest may name another release's object)
  await status([`${NS}_${REL}_apps_Deployment`], 'platform');
  const other = await alert();
  t.equal(other.state, 'refused', `${other.state}: ${other.outcome?.message}`);
  t.match(other.outcome?.message, /but that HelmRelease's status says it installs release e2e-helm\/platform \(status\.history, status\.storageNamespace\): it is not taken for the release's owner/);
  t.same(await history(), [1, 2], 'helm rollback not run');

  // as helm-controller records it: the release's Deployment in its inventory, the release in its history
  await status([`${NS}_${REL}_apps_Deployment`], REL);
  const rec = await alert();
  t.same(rec.gitops?.owners.map((o) => [o.kind, o.namespace, o.name, o.found, o.unverified]), [['HelmRelease', FLUX_NAMESPACE, REL, true, undefined]], 'the HelmRelease found from the release\'s workload');
  t.same(rec.gitops?.suspended?.map((s) => [s.kind, s.name, s.field, s.set]), [['HelmRelease', REL, '/spec/suspend', true]], 'suspended, and the record says what was set');
  const steps = rec.timeline.map((s) => s.step);
  t.ok(steps.indexOf('gitops_suspended') >= 0 && steps.indexOf('gitops_suspended') < steps.indexOf('executed'), `suspended before helm rollback ran: ${steps.join(', ')}`);
  t.equal((await cluster.request<KubeObject>('GET', hrPath)).spec.suspend, true, 'spec.suspend is true on the HelmRelease');
  t.same(await history(), [1, 2, 3], 'helm rollback ran once');
  const d = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${REL}`);
  t.equal(d.spec.template.spec.containers[0].image, 'shop:v1', 'v1 is back');
  t.equal(rec.state, 'unverified', `${rec.state}: ${rec.outcome?.message} (no Prometheus in this test to re-check the trigger; helm status said deployed)`);

  // its Deployment is in cooldown as the Helm rollback's: a Deployment rule's rollout undo now would bring v2 back
  const undo = await alert({ alertname: 'BadDeploy', namespace: NS, deployment: REL });
  t.equal(undo.state, 'blocked', `${undo.state}: ${undo.outcome?.message}`);
  t.match(undo.outcome?.message, new RegExp(`^blocked by cooldown: Deployment/${NS}/${REL} was rolled back by ${rec.id} `));
  const after = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${REL}`);
  t.equal(after.spec.template.spec.containers[0].image, 'shop:v1', 'still v1');
});

t.test("an umbrella release of 12 Deployments rolled back by an alert: every one of them in cooldown with it", async (t) => {
  const REL = 'umbrella';
  const N = 12;
  const umbrella = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-umbrella-'));
  t.teardown(() => fs.rmSync(umbrella, { recursive: true, force: true }));
  fs.mkdirSync(path.join(umbrella, 'templates'));
  fs.writeFileSync(path.join(umbrella, 'Chart.yaml'), 'apiVersion: v2\nname: umbrella\nversion: 0.1.0\nappVersion: "1"\n');
  fs.writeFileSync(path.join(umbrella, 'values.yaml'), `image: shop:v1\ncount: ${N}\n`);
  fs.writeFileSync(
    path.join(umbrella, 'templates', 'deployments.yaml'),
    `{{- range $i := until (int .Values.count) }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $.Release.Name }}-{{ $i }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ $.Release.Name }}-{{ $i }}}
  template:
    metadata:
      labels: {app: {{ $.Release.Name }}-{{ $i }}}
    spec:
      containers:
        - name: app
          image: {{ $.Values.image }}
{{- end }}
`,
  );
  await applyChartRbac(cluster, ['actions.enabled={Deployment,HelmRelease}', `scope.namespaces={${NS}}`]);
  t.equal((await helm(['install', REL, umbrella, '-n', NS, '--wait', '--timeout', '2m'])).code, 0, 'installed v1');
  t.equal((await helm(['upgrade', REL, umbrella, '-n', NS, '--set', 'image=shop:v2', '--wait', '--timeout', '2m'])).code, 0, 'upgraded to v2');
  const rule = (name: string, alertname: string, target: string) =>
    `  - { name: ${name}, match: ['alertname="${alertname}"'], target: ${target}, priority: P0, onPrometheusDown: act,\n` +
    '      trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s } }\n';
  const { engine } = await clusterEngine({
    kubeconfig: cluster.rollguardKubeconfig,
    env: { DRY_RUN: 'false', SCOPE_NAMESPACES: NS, VERIFY_TIMEOUT: '60s', LOCK_TTL: '10s' },
    rulesText: `rules:\n${rule('bad-release', 'BadRelease', '{ kind: HelmRelease, namespace: "{{ $labels.namespace }}", name: "{{ $labels.release }}" }')}${rule('bad-deploy', 'BadDeploy', '{ kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }')}`,
    store: new MemoryStore(),
    owner: 'replica-a',
    helm: { helmBin: cluster.bin('helm'), kubeconfig: cluster.rollguardKubeconfig },
  });
  t.teardown(() => engine.stop());
  let ev = 0;
  const alert = async (labels: Record<string, string>) => {
    const a = firingNow(labels.alertname!, REL);
    a.fingerprint = `umbrella-${++ev}`;
    a.labels = labels;
    await engine.handle({ id: `ev-u-${ev}`, alert: a, deliveries: 1 });
    await engine.idle();
    return (await engine.records.list({})).find((r) => r.alert?.fingerprint === a.fingerprint)!;
  };
  const image = async (i: number) => (await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${REL}-${i}`)).spec.template.spec.containers[0].image;

  const rec = await alert({ alertname: 'BadRelease', namespace: NS, release: REL });
  t.ok(rec.times.executedAt, `helm rollback ran (${rec.state}: ${rec.outcome?.message})`);
  t.same(rec.plan?.changes?.map((c) => c.name).sort(), Array.from({ length: N }, (_, i) => `${REL}-${i}`).sort(), 'every Deployment of the release is among what it writes (before: the first 10)');
  for (const i of [0, N - 1]) t.equal(await image(i), 'shop:v1', `${REL}-${i} is back on v1`);

  // a Deployment rule's rollout undo of any of them now would bring v2 back: each one's cooldown
  // blocks it (before, the two past the first 10 in the manifest's order went back to v2)
  for (let i = 0; i < N; i++) {
    const undo = await alert({ alertname: 'BadDeploy', namespace: NS, deployment: `${REL}-${i}` });
    t.equal(undo.state, 'blocked', `${REL}-${i}: ${undo.state}: ${undo.outcome?.message}`);
    t.match(undo.outcome?.message, new RegExp(`^blocked by cooldown: Deployment/${NS}/${REL}-${i} was rolled back by ${rec.id} `));
    t.equal(await image(i), 'shop:v1', `${REL}-${i} still v1`);
  }
});
