// The Helm chart rendered by the built helm binary (no cluster): lint and template with the
// default values and every option on (scripts/lint-chart.sh), the RBAC rules each action kind
// adds, refusals, and that the chart ships the repository's own rules, Prometheus rule files
// and dashboards unchanged. The objects are checked against the API server's schema, and the
// rights with `kubectl auth can-i`, in test/e2e/helm-chart.test.ts.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { REPO_ROOT, defaultBinDir } from '../../cluster/harness.js';
import { configSchema } from '../../../src/config.js';
import { createRedisClient } from '../../../src/store/redis.js';
import { freePort } from '../../../src/prometheus/local.js';

const CHART = path.join(REPO_ROOT, 'helm', 'rollguard');
const HELM = path.join(defaultBinDir(), 'helm');
if (!fs.existsSync(HELM)) {
  throw new Error(`helm binary missing at ${HELM}: build the test toolchain with 'bash scripts/cluster/build.sh'`);
}

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [k: string]: any;
}

function helm(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(HELM, args, { encoding: 'utf8', cwd: REPO_ROOT, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l && !l.includes('found symbolic link in path')).join('\n') };
}
function render(args: string[] = []): Obj[] {
  const r = helm(['template', 'rollguard', CHART, '--namespace', 'rollguard-system', ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')}: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => !!o);
}
const find = (objs: Obj[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (!name || o.metadata.name === name));

t.test('scripts/lint-chart.sh: helm lint --strict and helm template (default, every option on), promtool, hadolint', async (t) => {
  const r = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'lint-chart.sh')], { encoding: 'utf8', cwd: REPO_ROOT, timeout: 300_000 });
  t.equal(r.status, 0, `lint-chart.sh exited ${r.status}\n${r.stderr}\n${r.stdout}`);
  t.match(r.stderr, /chart ok/);
  t.match(r.stderr, /SUCCESS: 6 rules found/, "promtool read the seeds' triggers (deploy/prometheus/alert-rules.yaml)");
  t.match(r.stderr, /Unit Testing: +deploy\/prometheus\/alert-rules\.test\.yaml\s+SUCCESS/, 'promtool test rules: each trigger fires after its for:, not on a healthy workload');
  t.match(r.stderr, /Haskell Dockerfile Linter/, 'hadolint ran');
});

// The rules each kind adds, as `group resource: verbs`; the union over the enabled kinds is what
// the chart grants (src/actions/*.ts through src/kube/ call exactly these).
const KIND_RULES: Record<string, string[]> = {
  Deployment: ['apps deployments: get,patch', 'apps replicasets: list'],
  StatefulSet: ['apps statefulsets: get,patch', 'apps controllerrevisions: list'],
  DaemonSet: ['apps daemonsets: get,patch', 'apps controllerrevisions: list'],
  Rollout: ['argoproj.io rollouts: get,patch', 'argoproj.io rollouts/status: patch', 'apps replicasets: list'],
  BlueGreen: [' services: get,patch', 'apps deployments: list'],
  Canary: ['apps deployments: get,patch'],
};
function rulesOf(role: Obj): string[] {
  const out: string[] = [];
  for (const r of role.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[]) {
    for (const g of r.apiGroups) for (const res of r.resources) out.push(`${g} ${res}: ${[...r.verbs].join(',')}`);
  }
  return out.sort();
}
function expected(kinds: string[]): string[] {
  const acc = new Map<string, Set<string>>();
  for (const k of kinds) {
    for (const line of KIND_RULES[k]!) {
      const [key, verbs] = line.split(': ') as [string, string];
      const s = acc.get(key) ?? new Set<string>();
      for (const v of verbs.split(',')) s.add(v);
      acc.set(key, s);
    }
  }
  const order = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  return [...acc].map(([k, s]) => `${k}: ${order.filter((v) => s.has(v)).join(',')}`).sort();
}

t.test('RBAC: exactly the rules of the enabled kinds; never delete or secrets without HelmRelease', async (t) => {
  const sets = [
    ['Deployment', 'StatefulSet', 'DaemonSet'],
    ['Deployment'],
    ['StatefulSet'],
    ['DaemonSet'],
    ['Rollout'],
    ['BlueGreen'],
    ['Canary'],
    ['Deployment', 'Rollout', 'BlueGreen', 'Canary'],
    ['Deployment', 'StatefulSet', 'DaemonSet', 'Rollout', 'BlueGreen', 'Canary'],
  ];
  for (const kinds of sets) {
    const objs = render(['--set', `actions.enabled={${kinds.join(',')}}`]);
    const [role] = find(objs, 'ClusterRole');
    t.ok(role, `${kinds.join('+')}: a ClusterRole`);
    const got = rulesOf(role!);
    t.same(got, expected(kinds), `${kinds.join('+')}: ${got.join('; ')}`);
    t.notOk(got.some((l) => /\bsecrets\b/.test(l) || /delete|\*/.test(l.split(': ')[1]!)), `${kinds.join('+')}: no secrets, no delete`);
  }
  const noKinds = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-')), 'none.yaml');
  fs.writeFileSync(noKinds, 'actions:\n  enabled: []\n');
  t.teardown(() => fs.rmSync(path.dirname(noKinds), { recursive: true, force: true }));
  const none = render(['-f', noKinds]);
  t.same(find(none, 'ClusterRole')[0]?.rules, [], 'no kind enabled: no rights');

  const helmOn = render(['--set', 'actions.enabled={HelmRelease}']);
  const hr = rulesOf(find(helmOn, 'ClusterRole')[0]!);
  t.ok(hr.includes(' secrets: get,list,create,update,delete'), 'HelmRelease: the release Secrets');
  t.ok(hr.some((l) => l.startsWith('apps deployments: ') && l.includes('delete')), 'HelmRelease: the broad documented rules (actions.helm.rules)');
  const env = find(helmOn, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[];
  t.ok(env.some((e) => e.name === 'HELM_BIN') && env.some((e) => e.name === 'HELM_CACHE_HOME' && e.value!.startsWith('/tmp/')), 'helm finds its binary and writes only under /tmp');
});

t.test('RBAC: scope.namespaces gives one Role and RoleBinding per namespace and no ClusterRole', async (t) => {
  const objs = render(['--set', 'scope.namespaces={shop,payments}']);
  t.same(find(objs, 'ClusterRole'), []);
  t.same(find(objs, 'ClusterRoleBinding'), []);
  t.same(find(objs, 'Role').map((r) => r.metadata.namespace), ['shop', 'payments']);
  const rbs = find(objs, 'RoleBinding');
  t.same(rbs.map((r) => r.metadata.namespace), ['shop', 'payments']);
  for (const rb of rbs) t.same(rb.subjects, [{ kind: 'ServiceAccount', name: 'rollguard', namespace: 'rollguard-system' }]);
  for (const r of find(objs, 'Role')) t.same(rulesOf(r), expected(['Deployment', 'StatefulSet', 'DaemonSet']));
  const env = find(objs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[];
  t.equal(env.find((e) => e.name === 'SCOPE_NAMESPACES')?.value, 'shop,payments');
});

t.test('refusals: values the chart does not render', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--set', 'replicaCount=2', '--set', 'redis.bundled.enabled=false'], /redis/i],
    [['--set', 'redis.bundled.appendfsync=no'], /appendfsync/],
    [['--set', 'redis.bundled.image.tag=latest'], /image\/tag/],
    [['--set', 'redis.bundled.persistence.size=lots'], /persistence\/size/],
    [['--set', 'redis.bundled.persistence.storageClass=Fast_SSD'], /storageClass/],
    [['--set', 'redis.bundled.auth.enabled=false', '--set', 'redis.bundled.auth.existingSecret=r'], /auth\.enabled is false/],
    [['--set', 'redis.bundled.enabledd=true'], /enabledd|additional/],
    [['--set', 'actions.enabled={Deploymnet}'], /enabled/],
    [['--set', 'replicaCount=2', '--set', 'redis.url=http://redis:6379'], /redis/],
    [['--set', 'redis.url=redis://a:6379', '--set', 'redis.existingSecret=r'], /not both/],
    [['--set', 'rules.create=false'], /existingConfigMap/],
    [['--set', 'auth.webhook.tokens={short}'], /tokens/],
    [['--set', 'scope.namespaces={Not_A_Namespace}'], /namespaces/],
    [['--set', 'replicaCountt=2'], /replicaCountt|additional/],
  ];
  for (const [args, re] of cases) {
    const r = helm(['template', 'rollguard', CHART, ...args]);
    t.not(r.code, 0, `refused: ${args.join(' ')}`);
    t.match(r.stderr, re, r.stderr.split('\n').slice(0, 3).join(' | '));
  }
  // two replicas with an external Redis: rendered, Redis URL from a Secret, a PodDisruptionBudget,
  // spread over nodes, nothing bundled
  const objs = render(['--set', 'replicaCount=2', '--set', 'redis.url=redis://redis:6379/0']);
  const dep = find(objs, 'Deployment')[0]!;
  t.equal(dep.spec.replicas, 2);
  t.equal(find(objs, 'PodDisruptionBudget').length, 1);
  t.same(dep.spec.template.spec.topologySpreadConstraints[0].topologyKey, 'kubernetes.io/hostname');
  const redis = (dep.spec.template.spec.containers[0].env as { name: string; valueFrom?: { secretKeyRef: { name: string } } }[]).find((e) => e.name === 'REDIS_URL');
  t.equal(redis?.valueFrom?.secretKeyRef.name, 'rollguard-secrets');
  t.same(find(objs, 'StatefulSet'), [], 'redis.url set: no bundled Redis');
  t.same(objs.filter((o) => o.metadata.name.startsWith('rollguard-redis')), [], 'redis.url set: no bundled Redis object at all');
});

type Env = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
const envOf = (dep: Obj) => dep.spec.template.spec.containers[0].env as Env[];
/** Does a selector's matchLabels select a pod with these labels? */
const selects = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);

t.test('default values: 2 replicas spread over nodes on the bundled Redis StatefulSet', async (t) => {
  const objs = render();
  const dep = find(objs, 'Deployment')[0]!;
  t.equal(dep.spec.replicas, 2, 'two rollguard replicas by default');
  t.equal(dep.spec.template.spec.topologySpreadConstraints[0].topologyKey, 'kubernetes.io/hostname');
  t.equal(dep.spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable, 'DoNotSchedule');
  t.equal(find(objs, 'PodDisruptionBudget').length, 1, 'a PodDisruptionBudget');

  const [sts] = find(objs, 'StatefulSet');
  t.ok(sts, 'a Redis StatefulSet');
  t.equal(sts!.metadata.name, 'rollguard-redis');
  const spec = sts!.spec;
  t.equal(spec.replicas, 1);
  const pod = spec.template.spec;
  const c = pod.containers[0];
  t.match(c.image, /^redis:7\.\d+\.\d+$/, `image pinned by tag: ${c.image}`);
  const args = (c.args as string[]).join(' ');
  t.match(args, /--appendonly yes/);
  t.match(args, /--appendfsync everysec/);
  t.match(args, /--maxmemory-policy noeviction/, 'never evicts the queue or the records');
  t.match(args, /--requirepass \$\(REDIS_PASSWORD\)/, 'the password from the env (Kubernetes expands $(VAR) in args)');
  t.notMatch(args, /protected-mode/);
  // non-root, read-only root filesystem, the data volume the only writable path
  t.same([pod.securityContext.runAsNonRoot, pod.securityContext.runAsUser, pod.securityContext.runAsGroup, pod.securityContext.fsGroup], [true, 999, 999, 999]);
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  t.equal(c.securityContext.readOnlyRootFilesystem, true);
  t.equal(c.securityContext.allowPrivilegeEscalation, false);
  t.same(c.securityContext.capabilities.drop, ['ALL']);
  t.same(c.volumeMounts, [{ name: 'data', mountPath: '/data' }]);
  t.ok(c.resources.requests?.memory && c.resources.limits?.memory, 'resources');
  for (const probe of ['livenessProbe', 'readinessProbe']) t.match(c[probe].exec.command.join(' '), /redis-cli .*ping/, `${probe}: redis-cli ping`);
  t.same(
    (c.env as Env[]).map((e) => [e.name, e.valueFrom?.secretKeyRef?.name, e.valueFrom?.secretKeyRef?.key]),
    [['REDIS_PASSWORD', 'rollguard-redis', 'redis-password'], ['REDISCLI_AUTH', 'rollguard-redis', 'redis-password']],
  );
  // the PVC
  t.equal(pod.volumes, undefined, 'no pod volume: the claim template provides data');
  t.equal(spec.volumeClaimTemplates.length, 1);
  const pvc = spec.volumeClaimTemplates[0];
  t.equal(pvc.metadata.name, 'data');
  t.equal(pvc.spec.resources.requests.storage, '1Gi');
  t.notOk('storageClassName' in pvc.spec, 'the default StorageClass');
  // its own ServiceAccount, no token, no rights
  t.equal(pod.serviceAccountName, 'rollguard-redis');
  t.equal(pod.automountServiceAccountToken, false);
  const sa = find(objs, 'ServiceAccount', 'rollguard-redis')[0];
  t.equal(sa?.automountServiceAccountToken, false, 'the Redis ServiceAccount mounts no token');
  for (const b of [...find(objs, 'ClusterRoleBinding'), ...find(objs, 'RoleBinding')]) {
    t.same(b.subjects.map((s: { name: string }) => s.name), ['rollguard'], `${b.kind} ${b.metadata.name}: only rollguard's ServiceAccount`);
  }
  t.notOk(find(objs, 'Role').length, 'no Role');
  t.equal(find(objs, 'ClusterRole').length, 1, "one ClusterRole (rollguard's)");

  // Services: the ClusterIP one rollguard uses, the headless governing one
  const svc = find(objs, 'Service', 'rollguard-redis')[0]!;
  const headless = find(objs, 'Service', 'rollguard-redis-headless')[0]!;
  t.equal(svc.spec.type, 'ClusterIP');
  t.equal(headless.spec.clusterIP, 'None');
  t.equal(spec.serviceName, 'rollguard-redis-headless');
  const redisPod: Record<string, string> = spec.template.metadata.labels;
  const rgPod: Record<string, string> = dep.spec.template.metadata.labels;
  t.ok(selects(spec.selector.matchLabels, redisPod) && selects(svc.spec.selector, redisPod) && selects(headless.spec.selector, redisPod), 'the Redis Services select the Redis pod');
  t.notOk(selects(svc.spec.selector, rgPod), "the Redis Service does not select rollguard's pods");
  // rollguard's Service, PodDisruptionBudget and topology spread never count the Redis pod
  t.notOk(selects(find(objs, 'Service', 'rollguard')[0]!.spec.selector, redisPod), "rollguard's Service does not select the Redis pod");
  t.notOk(selects(find(objs, 'PodDisruptionBudget')[0]!.spec.selector.matchLabels, redisPod), "rollguard's PodDisruptionBudget does not select the Redis pod");
  for (const tsc of dep.spec.template.spec.topologySpreadConstraints) t.notOk(selects(tsc.labelSelector.matchLabels, redisPod), 'the topology spread does not count the Redis pod');
  t.notOk(selects(dep.spec.selector.matchLabels, redisPod), "rollguard's Deployment does not select the Redis pod");

  // the password: generated (32 alphanumerics), in a Secret; rollguard's REDIS_URL built from it
  const secret = find(objs, 'Secret', 'rollguard-redis')[0]!;
  t.match(Buffer.from(secret.data['redis-password'], 'base64').toString(), /^[A-Za-z0-9]{32}$/);
  const env = envOf(dep);
  const iPass = env.findIndex((e) => e.name === 'REDIS_PASSWORD');
  const iUrl = env.findIndex((e) => e.name === 'REDIS_URL');
  t.same(env[iPass]?.valueFrom?.secretKeyRef, { name: 'rollguard-redis', key: 'redis-password' });
  t.equal(env[iUrl]?.value, 'redis://:$(REDIS_PASSWORD)@rollguard-redis.rollguard-system.svc:6379/0');
  t.ok(iPass >= 0 && iPass < iUrl, 'REDIS_PASSWORD comes before REDIS_URL (Kubernetes expands only variables defined earlier)');
  t.notOk(find(objs, 'Secret', 'rollguard-secrets').length, 'no rollguard Secret: nothing inline');
});

t.test('the bundled Redis options', async (t) => {
  const sts = (args: string[]) => find(render(args), 'StatefulSet')[0]!;
  const noPv = sts(['--set', 'redis.bundled.persistence.enabled=false', '--set', 'redis.bundled.persistence.size=512Mi']);
  t.notOk(noPv.spec.volumeClaimTemplates, 'persistence off: no claim');
  t.same(noPv.spec.template.spec.volumes, [{ name: 'data', emptyDir: { sizeLimit: '512Mi' } }], 'an emptyDir of that size');
  t.equal(sts(['--set', 'redis.bundled.persistence.storageClass=-']).spec.volumeClaimTemplates[0].spec.storageClassName, '', '"-": no class');
  t.equal(sts(['--set', 'redis.bundled.persistence.storageClass=fast-ssd']).spec.volumeClaimTemplates[0].spec.storageClassName, 'fast-ssd');
  t.match(sts(['--set', 'redis.bundled.appendfsync=always']).spec.template.spec.containers[0].args.join(' '), /--appendfsync always/);

  // no password
  const open = render(['--set', 'redis.bundled.auth.enabled=false']);
  t.same(find(open, 'Secret'), [], 'auth off: no Secret');
  const oc = find(open, 'StatefulSet')[0]!.spec.template.spec.containers[0];
  t.match(oc.args.join(' '), /--protected-mode no/);
  t.notMatch(oc.args.join(' '), /requirepass/);
  t.notOk(oc.env, 'no password env');
  const openEnv = envOf(find(open, 'Deployment')[0]!);
  t.equal(openEnv.find((e) => e.name === 'REDIS_URL')?.value, 'redis://rollguard-redis.rollguard-system.svc:6379/0');
  t.notOk(openEnv.some((e) => e.name === 'REDIS_PASSWORD'));

  // an existing password Secret
  const ex = render(['--set', 'redis.bundled.auth.existingSecret=my-redis', '--set', 'redis.bundled.auth.existingSecretKey=pw']);
  t.same(find(ex, 'Secret'), [], 'existingSecret: the chart creates no Secret');
  t.same(envOf(find(ex, 'Deployment')[0]!).find((e) => e.name === 'REDIS_PASSWORD')?.valueFrom?.secretKeyRef, { name: 'my-redis', key: 'pw' });
  t.same(find(ex, 'StatefulSet')[0]!.spec.template.spec.containers[0].env.map((e: Env) => e.valueFrom?.secretKeyRef), [{ name: 'my-redis', key: 'pw' }, { name: 'my-redis', key: 'pw' }]);

  // an external Redis from an existing Secret: nothing bundled; one replica without Redis: in-memory
  const ext = render(['--set', 'redis.existingSecret=redis-url']);
  t.same(find(ext, 'StatefulSet'), []);
  t.same(envOf(find(ext, 'Deployment')[0]!).find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef, { name: 'redis-url', key: 'url' });
  const mem = render(['--set', 'replicaCount=1', '--set', 'redis.bundled.enabled=false']);
  t.same(find(mem, 'StatefulSet'), []);
  t.same(find(mem, 'PodDisruptionBudget'), [], 'one replica: no PodDisruptionBudget');
  t.notOk(envOf(find(mem, 'Deployment')[0]!).some((e) => e.name.startsWith('REDIS_') && e.name !== 'REDIS_KEY_PREFIX'), 'in-memory: no REDIS_URL');

  // A release of chart 0.1 upgraded with --reuse-values: helm reuses the old release's values and
  // ignores the new defaults, so redis.bundled is absent (checked by hand on the test control
  // plane: helm upgrade --reuse-values from the 0.1.0 chart). It renders as before, no Redis.
  const reused = render(['--set', 'redis.bundled=null', '--set', 'replicaCount=1']);
  t.same(find(reused, 'StatefulSet'), [], 'values without redis.bundled: nothing bundled');
  t.notOk(envOf(find(reused, 'Deployment')[0]!).some((e) => e.name === 'REDIS_URL'), 'values without redis.bundled: the in-memory store, as with chart 0.1');
  // ... and `--reuse-values --set redis.bundled.enabled=true` on it: the chart's defaults without
  // redis.bundled (a copy of the chart with the block removed), plus that one value
  const old = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-old-'));
  t.teardown(() => fs.rmSync(old, { recursive: true, force: true }));
  fs.cpSync(CHART, old, { recursive: true, dereference: true });
  const values = parseYaml(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as { redis: Record<string, unknown> };
  delete values.redis.bundled;
  fs.writeFileSync(path.join(old, 'values.yaml'), JSON.stringify(values));
  const partial = helm(['template', 'rollguard', old, '--set', 'redis.bundled.enabled=true', '--set', 'replicaCount=2']);
  t.not(partial.code, 0, 'redis.bundled.enabled without the rest of redis.bundled (--reuse-values from chart 0.1) is refused');
  t.match(partial.stderr, /--reset-then-reuse-values/, `with what to do instead: ${partial.stderr.split('\n')[0]}`);

  // ci/bundled-redis-values.yaml: every option of the bundled Redis on
  const all = render(['-f', path.join(CHART, 'ci', 'bundled-redis-values.yaml')]);
  const s = find(all, 'StatefulSet')[0]!;
  const p = s.spec.template.spec;
  t.equal(p.containers[0].image, 'registry.example.com/mirror/redis:7.4.2-alpine@sha256:' + '1'.repeat(64));
  t.equal(p.containers[0].imagePullPolicy, 'Always');
  t.match(p.containers[0].args.join(' '), /--appendfsync always/);
  t.same(p.containers[0].env[0].valueFrom.secretKeyRef, { name: 'rollguard-redis-auth', key: 'password' });
  t.equal(s.spec.volumeClaimTemplates[0].spec.storageClassName, 'fast-ssd');
  t.equal(s.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '2Gi');
  t.equal(p.priorityClassName, 'system-cluster-critical');
  t.equal(p.terminationGracePeriodSeconds, 60);
  t.same(p.nodeSelector, { 'kubernetes.io/os': 'linux' });
  t.equal(p.tolerations[0].key, 'dedicated');
  t.ok(p.affinity.nodeAffinity);
  t.same(p.imagePullSecrets, [{ name: 'registry' }]);
  t.equal(s.spec.template.metadata.annotations['example.com/backup'], 'true');
  t.equal(find(all, 'Deployment')[0]!.spec.replicas, 3);
});

t.test('the bundled Redis command line, probes and REDIS_URL work against a real redis-server', async (t) => {
  const objs = render();
  const c = find(objs, 'StatefulSet')[0]!.spec.template.spec.containers[0];
  const password = Buffer.from(find(objs, 'Secret', 'rollguard-redis')[0]!.data['redis-password'], 'base64').toString();
  const podEnv: Record<string, string> = { REDIS_PASSWORD: password, REDISCLI_AUTH: password };
  // Kubernetes' $(VAR) expansion of args and env values
  const expand = (s: string, env: Record<string, string>) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-redis-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // the container's args, with the data dir and port moved for this machine
  const args = (c.args as string[]).slice(1).map((a) => expand(a, podEnv));
  args[args.indexOf('--dir') + 1] = dir;
  args[args.indexOf('--port') + 1] = String(port);
  t.equal(c.args[0], 'redis-server');
  const server = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (!server.pid) throw new Error('redis-server not runnable (Debian package redis-server)');
  t.teardown(() => { server.kill('SIGKILL'); });
  const probe = (cmd: string[], env: Record<string, string>) =>
    spawnSync(cmd[0]!, cmd.slice(1).map((a) => a.replace('-p 6379', `-p ${port}`)), { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 10_000 }).status;
  let ready = 1;
  for (let i = 0; i < 50 && ready !== 0; i++) {
    ready = probe(c.readinessProbe.exec.command, podEnv) ?? 1;
    if (ready !== 0) await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(ready, 0, 'readiness probe: PONG');
  t.equal(probe(c.livenessProbe.exec.command, podEnv), 0, 'liveness probe: PONG');
  t.not(probe(c.readinessProbe.exec.command, { REDISCLI_AUTH: 'wrong' }), 0, 'the readiness probe fails without the password (redis-cli exits 0 on NOAUTH: the probe checks the reply)');

  // rollguard's REDIS_URL, expanded as the kubelet does, with the host moved to this machine
  const env = envOf(find(objs, 'Deployment')[0]!);
  const url = expand(env.find((e) => e.name === 'REDIS_URL')!.value!, { REDIS_PASSWORD: password }).replace(/@[^/]+\//, `@127.0.0.1:${port}/`);
  t.ok(configSchema.shape.REDIS_URL.safeParse(url).success, "rollguard's config accepts the URL");
  const client = createRedisClient(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  t.teardown(() => client.disconnect());
  await client.connect();
  t.equal(await client.ping(), 'PONG', 'rollguard authenticates with the URL');
  const cfg = async (k: string) => ((await client.call('CONFIG', 'GET', k)) as string[])[1];
  t.equal(await cfg('appendonly'), 'yes');
  t.equal(await cfg('appendfsync'), 'everysec');
  t.equal(await cfg('maxmemory-policy'), 'noeviction');
  const anon = spawnSync('redis-cli', ['-p', String(port), 'set', 'k', 'v'], { encoding: 'utf8', env: { ...process.env, REDISCLI_AUTH: '' } });
  t.match(anon.stdout + anon.stderr, /NOAUTH/, 'without the password Redis refuses');
});

t.test('the Deployment: probes, non-root, read-only root filesystem, every env var a real setting', async (t) => {
  const objs = render(['-f', path.join(CHART, 'ci', 'all-on-values.yaml')]);
  const dep = find(objs, 'Deployment')[0]!;
  const pod = dep.spec.template.spec;
  const c = pod.containers[0];
  t.equal(c.livenessProbe.httpGet.path, '/healthz');
  t.equal(c.readinessProbe.httpGet.path, '/readyz');
  t.equal(pod.securityContext.runAsNonRoot, true);
  t.equal(c.securityContext.readOnlyRootFilesystem, true);
  t.equal(c.securityContext.allowPrivilegeEscalation, false);
  t.same(c.securityContext.capabilities.drop, ['ALL']);
  t.ok(c.resources.requests && c.resources.limits, 'resources');
  t.ok(pod.volumes.some((v: { name: string; emptyDir?: object }) => v.name === 'tmp' && v.emptyDir), '/tmp is an emptyDir');
  const settings = new Set(Object.keys(configSchema.shape));
  const helmEnv = new Set(['HELM_BIN', 'HELM_CACHE_HOME', 'HELM_CONFIG_HOME', 'HELM_DATA_HOME']);
  for (const e of c.env as { name: string }[]) t.ok(settings.has(e.name) || helmEnv.has(e.name), `${e.name} is a setting of src/config.ts`);
  const names = (c.env as { name: string }[]).map((e) => e.name);
  for (const n of ['CONSUMER_NAME', 'REDIS_URL', 'WEBHOOK_TOKEN_FILE', 'ADMIN_TOKEN_FILE', 'RULES_PATH', 'PROMETHEUS_URL', 'DRY_RUN', 'SCOPE_NAMESPACES', 'SCOPE_DENY_NAMESPACES', 'SCOPE_DENY_TARGETS', 'BUDGET_CLUSTER_PER_HOUR', 'MAX_CONCURRENT_ROLLBACKS', 'NOTIFY_SLACK_URL', 'NOTIFY_WEBHOOK_URL', 'LOG_LEVEL']) {
    t.ok(names.includes(n), `${n} is set`);
  }
  t.notOk(names.includes('WEBHOOK_TOKEN') || names.includes('ADMIN_TOKEN'), 'tokens only as files from Secrets');
  const secret = find(objs, 'Secret')[0]!;
  t.same(Buffer.from(secret.data['webhook-token'], 'base64').toString().split('\n'), ['webhook-token-current-0001', 'webhook-token-next-000002'], 'rotation: one token per line');
  // default values (the bundled Redis): REDIS_PASSWORD is no setting, only the $(REDIS_PASSWORD) in REDIS_URL
  for (const e of envOf(find(render(), 'Deployment')[0]!)) {
    if (e.name === 'REDIS_PASSWORD') t.ok(e.valueFrom?.secretKeyRef, 'REDIS_PASSWORD: from a Secret, expanded into REDIS_URL');
    else t.ok(settings.has(e.name), `${e.name} is a setting of src/config.ts (default values)`);
  }
});

t.test('the chart ships the repository files unchanged: rules, Prometheus rule files, dashboards', async (t) => {
  const objs = render(['-f', path.join(CHART, 'ci', 'all-on-values.yaml')]);
  const rules = find(objs, 'ConfigMap', 'rollguard-rules')[0]!;
  const ruleFiles = fs.readdirSync(path.join(REPO_ROOT, 'rules')).filter((f) => /\.ya?ml$/.test(f));
  t.ok(ruleFiles.length > 0);
  for (const f of ruleFiles) t.equal(rules.data[f], fs.readFileSync(path.join(REPO_ROOT, 'rules', f), 'utf8').replace(/\n$/, ''), `rules/${f}`);
  t.equal(rules.data['extra.yaml'], 'rules: []', 'rules.inline adds files');

  const pr = find(objs, 'PrometheusRule')[0]!;
  const promDir = path.join(CHART, 'files', 'prometheus');
  const groups = fs.readdirSync(promDir).sort().flatMap((f) => (parseYaml(fs.readFileSync(path.join(promDir, f), 'utf8')) as { groups: unknown[] }).groups);
  t.same(pr.spec.groups, groups, 'PrometheusRule = files/prometheus/*.yaml');
  const triggers = (pr.spec.groups as { rules: { alert: string; for?: string; expr: string; labels: Record<string, string> }[] }[]).flatMap((g) => g.rules).filter((r) => r.labels.rollguard === 'enabled');
  t.same(
    triggers.map((r) => `${r.alert} ${r.for}`),
    ['HighErrorRate 2m', 'HighLatencyP99 5m', 'LatencyAboveBaseline 5m', 'HealthCheckFailing 1m', 'MemorySaturation 3m', 'KubeDeploymentFailed 5m'],
    "the seeds' triggers with their durations",
  );
  const expr = (a: string) => triggers.find((r) => r.alert === a)!.expr;
  t.match(expr('HighErrorRate'), /> 0\.05/);
  t.match(expr('HighLatencyP99'), /histogram_quantile\(0\.99[\s\S]*> 2\s*$/);
  t.match(expr('HealthCheckFailing'), /> 0\.5/);
  t.match(expr('MemorySaturation'), /> 0\.95/);
  t.match(expr('KubeDeploymentFailed'), /condition="Progressing",\s*status="false"/);
  // every alert a rollguard rule matches on has a trigger here
  const matched = ruleFiles.flatMap((f) => [...fs.readFileSync(path.join(REPO_ROOT, 'rules', f), 'utf8').matchAll(/alertname="(\w+)"/g)].map((m) => m[1]));
  for (const a of matched) t.ok(triggers.some((r) => r.alert === a), `alert ${a} of rules/ is defined`);

  const dashDir = path.join(CHART, 'dashboards');
  const dashFiles = fs.existsSync(dashDir) ? fs.readdirSync(dashDir).filter((f) => f.endsWith('.json')) : [];
  t.ok(dashFiles.length > 0, 'helm/rollguard/dashboards/ holds at least one dashboard');
  const cm = find(objs, 'ConfigMap', 'rollguard-dashboards')[0];
  t.equal(cm?.metadata.labels?.grafana_dashboard, '1', 'labelled for the Grafana sidecar');
  for (const f of dashFiles) {
    t.equal(cm?.data[f], fs.readFileSync(path.join(dashDir, f), 'utf8'), `dashboards/${f}, byte for byte`);
    t.doesNotThrow(() => JSON.parse(cm?.data[f] ?? ''), `dashboards/${f} is JSON`);
  }
});

t.test('NOTES.txt: the Alertmanager receiver block to paste', async (t) => {
  const r = helm(['install', 'rollguard', CHART, '--namespace', 'rollguard-system', '--dry-run=client']);
  t.equal(r.code, 0, r.stderr);
  const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
  t.match(notes, /url: http:\/\/rollguard\.rollguard-system\.svc:9095\/v1\/alerts/);
  t.match(notes, /send_resolved: true/);
  t.match(notes, /group_wait: 10s/);
  t.match(notes, /repeat_interval: 1h/);
  t.match(notes, /credentials_file:/);
  t.match(notes, /WARNING: no webhook token configured/);
  // the block is valid YAML an Alertmanager config can take
  const block = notes.slice(notes.indexOf('route:'), notes.indexOf('\n2. '));
  const cfg = parseYaml(block) as { receivers: { name: string; webhook_configs: { send_resolved: boolean }[] }[]; route: { routes: { receiver: string }[] } };
  t.equal(cfg.route.routes[0]!.receiver, 'rollguard');
  t.equal(cfg.receivers[0]!.webhook_configs[0]!.send_resolved, true);

  // pasted into an Alertmanager configuration beside its default receiver, amtool accepts it
  const amtool = spawnSync('amtool', ['--version'], { encoding: 'utf8' });
  if (amtool.error) throw new Error(`amtool not runnable (${amtool.error.message}): Debian's prometheus-alertmanager package has it (scripts/provision.sh)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-am-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const am = { ...cfg, route: { receiver: 'default', ...cfg.route }, receivers: [{ name: 'default' }, ...cfg.receivers] };
  fs.writeFileSync(path.join(dir, 'alertmanager.yml'), JSON.stringify(am));
  const check = spawnSync('amtool', ['check-config', path.join(dir, 'alertmanager.yml')], { encoding: 'utf8', timeout: 30_000 });
  t.equal(check.status, 0, `amtool check-config: ${check.stdout}${check.stderr}`);
});
