// The Helm chart rendered by the built helm binary (no cluster): lint and template with the
// default values and every option on (scripts/lint-chart.sh), the RBAC rules each action kind
// adds, refusals, and that the chart ships the repository's own rules, Prometheus rule files
// and dashboards unchanged. The objects are checked against the API server's schema, and the
// rights with `kubectl auth can-i`, in test/e2e/helm-chart.test.ts.
import t from 'tap';
import { KINDS } from '../../../src/actions/index.js';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { REPO_ROOT, defaultBinDir } from '../../cluster/harness.js';
import { configSchema, loadConfig } from '../../../src/config.js';
import { outOfScope } from '../../../src/guards/scope.js';
import { createRedisClient } from '../../../src/store/redis.js';
import { freePort } from '../../../src/prometheus/local.js';
import { fixture } from '../../support/app.js';
import { waitFor } from '../../support/ports.js';
import { startServe } from '../../support/serve.js';
import { drillCommand } from '../../../src/cli/drill.js';
import { allowed, expand, materialise, selects as selectsExpr, type Obj, type Peer } from '../../support/chart-pod.js';

const CHART = path.join(REPO_ROOT, 'helm', 'rollguard');
const HELM = path.join(defaultBinDir(), 'helm');
if (!fs.existsSync(HELM)) {
  throw new Error(`helm binary missing at ${HELM}: build the test toolchain with 'bash scripts/cluster/build.sh'`);
}

/** The default values plus the one value they lack, a webhook credential (ci/minimal-values.yaml). */
const MINIMAL = ['-f', path.join(CHART, 'ci', 'minimal-values.yaml')];

function helm(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(HELM, args, { encoding: 'utf8', cwd: REPO_ROOT, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l && !l.includes('found symbolic link in path')).join('\n') };
}
/**
 * helm template with ci/minimal-values.yaml and then `args`; without it when `args` name another
 * file of ci/ (each carries its own credentials) or with base: false (the bare defaults).
 */
function render(args: string[] = [], opts: { base?: boolean } = {}): Obj[] {
  const base = opts.base === false || args.some((a) => a.startsWith(path.join(CHART, 'ci'))) ? [] : MINIMAL;
  const r = helm(['template', 'rollguard', CHART, '--namespace', 'rollguard-system', ...base, ...args]);
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
  t.match(r.stderr, /SUCCESS: 6 rules found/, "promtool read the runbook's triggers (deploy/prometheus/alert-rules.yaml)");
  t.match(r.stderr, /Unit Testing: +deploy\/prometheus\/alert-rules\.test\.yaml\s+SUCCESS/, 'promtool test rules: each trigger fires after its for:, not on a healthy workload');
  t.match(r.stderr, /Haskell Dockerfile Linter/, 'hadolint ran');
});

// The rules each kind adds, as `group resource: verbs`; the union over the enabled kinds is what
// the chart grants (src/actions/*.ts through src/kube/ call exactly these).
// The workload kinds also read the restored revision's ConfigMaps and Secrets (metadata only; get
// secrets is the only RBAC for it, so it comes only with actions.checkSecrets in effect: by default
// with scope.namespaces, never cluster-wide).
const CONFIG_RULES = [' configmaps: get', ' secrets: get'];
const KIND_RULES: Record<string, string[]> = {
  Deployment: ['apps deployments: get,patch', 'apps replicasets: list', ...CONFIG_RULES],
  StatefulSet: ['apps statefulsets: get,patch', 'apps controllerrevisions: list', ...CONFIG_RULES],
  DaemonSet: ['apps daemonsets: get,patch', 'apps controllerrevisions: list', ...CONFIG_RULES],
  Rollout: ['argoproj.io rollouts: get,patch', 'argoproj.io rollouts/status: patch', 'apps replicasets: list'],
  BlueGreen: [' services: get,patch', 'apps deployments: list', 'apps replicasets: list'],
  Canary: ['apps deployments: get,patch', 'apps replicasets: list'],
  VirtualService: ['networking.istio.io virtualservices: get,patch'],
  ConfigMap: [' configmaps: get,list,patch', 'apps deployments: get,list,patch', 'apps statefulsets: get,list,patch', 'apps daemonsets: get,list,patch'],
};
function rulesOf(role: Obj): string[] {
  const out: string[] = [];
  for (const r of role.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[]) {
    for (const g of r.apiGroups) for (const res of r.resources) out.push(`${g} ${res}: ${[...r.verbs].join(',')}`);
  }
  return out.sort();
}
/** The union of the kinds' rules; `secrets`: with the workload kinds' `get secrets` (actions.checkSecrets in effect). */
function expected(kinds: string[], secrets = false): string[] {
  const acc = new Map<string, Set<string>>();
  for (const k of kinds) {
    for (const line of KIND_RULES[k]!.filter((l) => secrets || l !== ' secrets: get')) {
      const [key, verbs] = line.split(': ') as [string, string];
      const s = acc.get(key) ?? new Set<string>();
      for (const v of verbs.split(',')) s.add(v);
      acc.set(key, s);
    }
  }
  const order = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  return [...acc].map(([k, s]) => `${k}: ${order.filter((v) => s.has(v)).join(',')}`).sort();
}

t.test('RBAC: exactly the rules of the enabled kinds; never delete, nor more than get on secrets, without HelmRelease', async (t) => {
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
    ['VirtualService'],
    ['Deployment', 'VirtualService'],
  ];
  for (const kinds of sets) {
    const objs = render(['--set', `actions.enabled={${kinds.join(',')}}`]);
    const [role] = find(objs, 'ClusterRole');
    t.ok(role, `${kinds.join('+')}: a ClusterRole`);
    const got = rulesOf(role!);
    t.same(got, expected(kinds), `${kinds.join('+')}: ${got.join('; ')}`);
    t.notOk(got.some((l) => /^ secrets: (?!get$)/.test(l) || /delete|\*/.test(l.split(': ')[1]!)), `${kinds.join('+')}: at most get on secrets, no delete`);
  }
  // ConfigMap: only with configSnapshots.enabled; its row beside the snapshots' own rights
  const snapOnly = rulesOf(find(render(['--set', 'actions.enabled={Deployment}', '--set', 'configSnapshots.enabled=true']), 'ClusterRole')[0]!);
  const withCm = rulesOf(find(render(['--set', 'actions.enabled={Deployment,ConfigMap}', '--set', 'configSnapshots.enabled=true']), 'ClusterRole')[0]!);
  const merged = new Map<string, Set<string>>();
  for (const line of [...snapOnly, ...KIND_RULES.ConfigMap!]) {
    const [key, verbs] = line.split(': ') as [string, string];
    merged.set(key, new Set([...(merged.get(key) ?? []), ...verbs.split(',')]));
  }
  const order = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  t.same(withCm, [...merged].map(([k, v]) => `${k}: ${order.filter((x) => v.has(x)).join(',')}`).sort(), `ConfigMap adds exactly its row: ${withCm.join('; ')}`);
  const cmAlone = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'actions.enabled={ConfigMap}']);
  t.not(cmAlone.code, 0, 'ConfigMap without configSnapshots.enabled: refused');
  t.match(cmAlone.stderr, /actions.enabled lists ConfigMap, .*set configSnapshots.enabled: true/);
  // migrations: only with scope.namespaces (creating Jobs runs pods as any ServiceAccount of the namespace)
  const migAlone = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'migrations.enabled=true']);
  t.not(migAlone.code, 0, 'migrations.enabled without scope.namespaces: refused');
  t.match(migAlone.stderr, /migrations.enabled grants creating Jobs, .*scope.namespaces/);
  const migObjs = render(['--set', 'migrations.enabled=true', '--set', 'scope.namespaces={shop}']);
  t.same(find(migObjs, 'ClusterRole'), [], 'migrations: no ClusterRole');
  t.same(
    rulesOf(find(migObjs, 'Role')[0]!),
    expected(['Deployment', 'StatefulSet', 'DaemonSet'], true).concat(['batch jobs: get,create', ' pods: list', ' pods/log: get']).sort(),
    'migrations.enabled: Jobs created and followed, their pods listed and logs read, in shop only; configmaps get was there already',
  );
  t.notOk(rulesOf(find(render([]), 'ClusterRole')[0]!).some((l) => /jobs|pods/.test(l)), 'by default: no right on Jobs or pods');
  // actions.checkSecrets: auto (null, the default) is off cluster-wide (get secrets in a ClusterRole
  // reads every Secret of the cluster, kube-system's included) and on with scope.namespaces
  const workloads = ['Deployment', 'StatefulSet', 'DaemonSet'];
  const checkEnv = (objs: Obj[]) => (find(objs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).find((e) => e.name === 'CONFIG_CHECK_SECRETS')?.value;
  const secretRules = (objs: Obj[]) => objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role').flatMap(rulesOf).filter((l) => / secrets: /.test(l));
  const defaults = render([]);
  t.same(secretRules(defaults), [], 'by default (cluster-wide): no rule names secrets');
  t.same(rulesOf(find(defaults, 'ClusterRole')[0]!), expected(workloads), 'by default: configmaps get kept');
  t.equal(checkEnv(defaults), 'false', 'by default: CONFIG_CHECK_SECRETS=false, so rollguard asks for no Secret it may not read');
  // true cluster-wide, the default of earlier versions that helm upgrade --reuse-values keeps: refused unless on purpose
  const kept = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'actions.checkSecrets=true']);
  t.not(kept.code, 0, 'actions.checkSecrets: true cluster-wide without checkSecretsClusterWide: refused');
  t.match(kept.stderr, /read every Secret in the cluster.*--reuse-values keeps it: set actions\.checkSecrets=false.*--reset-then-reuse-values.*actions\.checkSecretsClusterWide=true/);
  // the earlier default as --reuse-values hands it back: the whole actions block, without checkSecretsClusterWide
  const oldValues = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rg-old-values-')), 'values.yaml');
  fs.writeFileSync(oldValues, 'actions:\n  enabled: [Deployment, StatefulSet, DaemonSet]\n  checkSecrets: true\n  helm:\n    bin: /usr/local/bin/helm\n');
  t.not(helm(['template', 'rollguard', CHART, ...MINIMAL, '-f', oldValues]).code, 0, "an earlier version's actions values (what --reuse-values keeps): refused, not rendered with get secrets cluster-wide");
  t.equal(helm(['template', 'rollguard', CHART, ...MINIMAL, '-f', oldValues, '--set', 'scope.namespaces={shop}']).code, 0, 'the same values scoped to namespaces: rendered (get secrets there only)');
  const snapOff = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'configSnapshots.enabled=true', '--set', 'configSnapshots.secrets=true', '--set', 'actions.checkSecrets=false']);
  t.not(snapOff.code, 0, 'configSnapshots.secrets with actions.checkSecrets: false (no Secret would ever be restored): refused');
  t.match(snapOff.stderr, /configSnapshots\.secrets restores Secrets, which needs their check/);
  t.equal(helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'configSnapshots.enabled=true', '--set', 'configSnapshots.secrets=true', '--set', 'actions.checkSecrets=true']).code, 0, 'configSnapshots.secrets with actions.checkSecrets: true cluster-wide (Secret rights granted by the snapshots anyway): rendered');
  const explicitOn = render(['--set', 'actions.checkSecrets=true', '--set', 'actions.checkSecretsClusterWide=true']);
  t.same(rulesOf(find(explicitOn, 'ClusterRole')[0]!), expected(workloads, true), 'actions.checkSecrets: true cluster-wide (an explicit choice): get secrets in the ClusterRole');
  t.equal(checkEnv(explicitOn), 'true');
  const scopedAuto = render(['--set', 'scope.namespaces={shop}']);
  t.same(rulesOf(find(scopedAuto, 'Role')[0]!), expected(workloads, true), 'auto with scope.namespaces: get secrets in those namespaces');
  t.equal(checkEnv(scopedAuto), 'true');
  const scopedOff = render(['--set', 'scope.namespaces={shop}', '--set', 'actions.checkSecrets=false']);
  t.same(secretRules(scopedOff), [], 'actions.checkSecrets: false with scope.namespaces: no right on secrets');
  t.same(rulesOf(find(scopedOff, 'Role')[0]!), expected(workloads), 'configmaps get kept');
  t.equal(checkEnv(scopedOff), 'false');
  t.equal(checkEnv(render(['--set', 'actions.checkSecrets=false'])), 'false');
  t.not(helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'actions.checkSecrets=yes']).code, 0, 'actions.checkSecrets: true, false or null, nothing else');
  const noKinds = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-')), 'none.yaml');
  fs.writeFileSync(noKinds, 'actions:\n  enabled: []\n');
  t.teardown(() => fs.rmSync(path.dirname(noKinds), { recursive: true, force: true }));
  const none = render(['-f', noKinds]);
  t.same(find(none, 'ClusterRole')[0]?.rules, [], 'no kind enabled: no rights');
  const byDefault = rulesOf(find(render([]), 'ClusterRole')[0]!);
  t.notOk(byDefault.some((l) => l.includes('virtualservices')), 'VirtualService not enabled (the default): no right on virtualservices');
  t.same(KINDS.map((k) => k.kind).filter((k) => k !== 'HelmRelease').sort(), Object.keys(KIND_RULES).sort(), "every rollback kind in src/actions/index.ts has its chart RBAC row");

  const helmOn = render(['--set', 'actions.enabled={HelmRelease}', '--set', 'scope.namespaces={shop}']);
  t.same(find(helmOn, 'ClusterRole'), [], 'HelmRelease: no ClusterRole');
  const hr = rulesOf(find(helmOn, 'Role')[0]!);
  t.ok(hr.includes(' secrets: get,list,create,update,delete'), 'HelmRelease: the release Secrets');
  t.ok(hr.some((l) => l.startsWith('apps deployments: ') && l.includes('delete')), 'HelmRelease: the broad documented rules (actions.helm.rules)');
  const env = find(helmOn, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[];
  t.ok(env.some((e) => e.name === 'HELM_BIN') && env.some((e) => e.name === 'HELM_CACHE_HOME' && e.value!.startsWith('/tmp/')), 'helm finds its binary and writes only under /tmp');
});

t.test('RBAC: configSnapshots.enabled adds ConfigMap writes and workload watches; Secrets only with configSnapshots.secrets', async (t) => {
  // cluster-wide, actions.checkSecrets (auto) is off: no secrets get, unless configSnapshots.secrets
  // grants Secrets anyway (it is then on: a Secret's restore needs its check)
  const base = expected(['Deployment', 'StatefulSet', 'DaemonSet']);
  const snapshotRules = (secrets: boolean, from = base) =>
    from
      .map((l) => (l.startsWith('apps deployments:') || l.startsWith('apps statefulsets:') || l.startsWith('apps daemonsets:') ? l.replace('get,patch', 'get,list,watch,patch') : l))
      .map((l) => (l === ' configmaps: get' ? ' configmaps: get,list,watch,create,patch,delete' : l))
      .filter((l) => l !== ' secrets: get')
      .concat(secrets ? [' secrets: get,list,watch,create,patch,delete'] : from.includes(' secrets: get') ? [' secrets: get'] : [])
      .sort();
  const off = rulesOf(find(render([]), 'ClusterRole')[0]!);
  t.same(off, base, 'off (the default): no list, watch or write on configmaps');
  const on = rulesOf(find(render(['--set', 'configSnapshots.enabled=true']), 'ClusterRole')[0]!);
  t.same(on, snapshotRules(false), `on: ${on.join('; ')}`);
  t.notOk(on.some((l) => l.startsWith(' secrets:')), 'on, without configSnapshots.secrets, cluster-wide: no right on secrets');
  const withSecrets = rulesOf(find(render(['--set', 'configSnapshots.enabled=true', '--set', 'configSnapshots.secrets=true']), 'ClusterRole')[0]!);
  t.same(withSecrets, snapshotRules(true), 'configSnapshots.secrets: the same for Secrets');
  const secretsAlone = rulesOf(find(render(['--set', 'configSnapshots.secrets=true']), 'ClusterRole')[0]!);
  t.same(secretsAlone, base, 'configSnapshots.secrets without enabled: nothing');
  const scoped = find(render(['--set', 'configSnapshots.enabled=true', '--set', 'scope.namespaces={shop}']), 'Role');
  t.same(scoped.map((r) => r.metadata.namespace), ['shop'], 'scope.namespaces: in those namespaces only');
  t.same(rulesOf(scoped[0]!), snapshotRules(false, expected(['Deployment', 'StatefulSet', 'DaemonSet'], true)), 'scope.namespaces: secrets get there (metadata reads), never a write');
  const env = (vals: string[]) => Object.fromEntries((find(render(vals), 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  t.equal(env(['--set', 'configSnapshots.enabled=true', '--set', 'configSnapshots.secrets=true']).CONFIG_CHECK_SECRETS, 'true', 'configSnapshots.secrets: the check of Secrets on (auto)');
  t.equal(env(['--set', 'configSnapshots.enabled=true']).CONFIG_CHECK_SECRETS, 'false', 'configSnapshots without secrets, cluster-wide: off (auto)');
  t.match(env([]), { CONFIG_SNAPSHOTS: 'false', CONFIG_SNAPSHOTS_MAX: '10', CONFIG_SNAPSHOTS_SECRETS: 'false' });
  t.match(env(['--set', 'configSnapshots.enabled=true', '--set', 'configSnapshots.max=4', '--set', 'configSnapshots.secrets=true']), { CONFIG_SNAPSHOTS: 'true', CONFIG_SNAPSHOTS_MAX: '4', CONFIG_SNAPSHOTS_SECRETS: 'true' });
  t.equal(helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'configSnapshots.max=0']).code, 1, 'configSnapshots.max 0: refused by the values schema');
  // CONFIG_SNAPSHOTS_KEY: a generated Secret (48 random characters), or the operator's own
  const keyed = render(['--set', 'configSnapshots.enabled=true']);
  const keyEnv = (find(keyed, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; valueFrom?: unknown }[]).find((e) => e.name === 'CONFIG_SNAPSHOTS_KEY');
  t.same(keyEnv?.valueFrom, { secretKeyRef: { name: 'rollguard-snapshots', key: 'key' } }, 'the key from the generated Secret, never inline');
  const keySecret = find(keyed, 'Secret', 'rollguard-snapshots')[0];
  t.equal(Buffer.from(keySecret?.data.key as string, 'base64').toString().length, 48, 'a 48-character key');
  t.notSame(find(render(['--set', 'configSnapshots.enabled=true']), 'Secret', 'rollguard-snapshots')[0]?.data.key, keySecret?.data.key, 'random (helm template has no cluster to look the installed one up in)');
  const own = render(['--set', 'configSnapshots.enabled=true', '--set', 'configSnapshots.existingSecret=my-key', '--set', 'configSnapshots.existingSecretKey=k']);
  t.same(find(own, 'Secret', 'rollguard-snapshots'), [], 'existingSecret: nothing generated');
  t.match((find(own, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string }[]).find((e) => e.name === 'CONFIG_SNAPSHOTS_KEY'), { valueFrom: { secretKeyRef: { name: 'my-key', key: 'k' } } });
  t.same(find(render([]), 'Secret', 'rollguard-snapshots'), [], 'off: no key');
});

t.test('RBAC: scope.namespaces gives one Role and RoleBinding per namespace and no ClusterRole', async (t) => {
  const objs = render(['--set', 'scope.namespaces={shop,payments}']);
  t.same(find(objs, 'ClusterRole'), []);
  t.same(find(objs, 'ClusterRoleBinding'), []);
  t.same(find(objs, 'Role').map((r) => r.metadata.namespace), ['shop', 'payments']);
  const rbs = find(objs, 'RoleBinding');
  t.same(rbs.map((r) => r.metadata.namespace), ['shop', 'payments']);
  for (const rb of rbs) t.same(rb.subjects, [{ kind: 'ServiceAccount', name: 'rollguard', namespace: 'rollguard-system' }]);
  for (const r of find(objs, 'Role')) t.same(rulesOf(r), expected(['Deployment', 'StatefulSet', 'DaemonSet'], true), 'actions.checkSecrets (auto): get secrets in each of them');
  const env = find(objs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[];
  t.equal(env.find((e) => e.name === 'SCOPE_NAMESPACES')?.value, 'shop,payments');
});

t.test('scope.denyNamespaces adds to kube-system, kube-public and kube-node-lease (Helm replaces the list); globs deny, and refuse a Role, as rollguard matches them', async (t) => {
  const envOf = (objs: Obj[]) => Object.fromEntries((find(objs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  const scope = (args: string[]) => loadConfig({ SCOPE_DENY_NAMESPACES: envOf(render(args)).SCOPE_DENY_NAMESPACES });
  t.equal(envOf(render([])).SCOPE_DENY_NAMESPACES, 'kube-system,kube-public,kube-node-lease', 'the defaults');
  const payments = scope(['--set', 'scope.denyNamespaces={payments}']);
  for (const ns of ['kube-system', 'kube-public', 'kube-node-lease', 'payments']) {
    t.equal(outOfScope(payments, `Deployment/${ns}/web`, ns), `namespace ${ns} is denied (SCOPE_DENY_NAMESPACES)`, `scope.denyNamespaces={payments} denies ${ns}`);
  }
  t.equal(outOfScope(scope(['--set-json', 'scope.denyNamespaces=[]']), 'Deployment/kube-system/coredns', 'kube-system'), 'namespace kube-system is denied (SCOPE_DENY_NAMESPACES)', 'an empty list too');
  t.equal(outOfScope(scope(['--set', 'scope.denyNamespaces={prod-*}']), 'Deployment/prod-eu/web', 'prod-eu'), 'namespace prod-eu is denied by prod-* (SCOPE_DENY_NAMESPACES)');
  t.same(find(render(['--set', 'scope.namespaces={shop,prod}', '--set', 'scope.denyNamespaces={prod-*}']), 'Role').map((r) => r.metadata.namespace), ['shop', 'prod'], 'prod-* does not match prod');
  for (const [args, re] of [
    [['--set', 'scope.namespaces={shop,prod-eu}', '--set', 'scope.denyNamespaces={prod-*}'], /scope\.namespaces lists prod-eu: rollguard is never granted rights/],
    [['--set', 'scope.namespaces={shop}', '--set', 'drills.namespaces={prod-eu}', '--set', 'scope.denyNamespaces={prod-*}'], /drills\.namespaces lists prod-eu, a namespace rollguard never touches/],
    [['--set', 'scope.denyNamespaces={prod-?}'], /scope\/denyNamespaces\/0.*prod-\?/],
    // what rollguard refuses at start is refused here (a `.` used to pass, and every pod then restarted in a loop)
    [['--set', 'scope.denyNamespaces={prod.eu}'], /scope\/denyNamespaces\/0.*prod\.eu/],
    [['--set', 'scope.namespaces={prod-*}'], /scope\/namespaces\/0.*prod-\*/],
  ] as [string[], RegExp][]) {
    const r = helm(['template', 'rollguard', CHART, ...MINIMAL, ...args]);
    t.not(r.code, 0, `refused: ${args.join(' ')}`);
    t.match(r.stderr, re);
  }
});

// The shipped triggers name rollguard's own Deployment like any other (its pods' memory, a rollout
// of it that stopped progressing), and the ClusterRole lets it patch itself: the release's own
// objects are always out of scope, whatever scope.denyTargets says.
t.test("the release's own objects are always denied (SCOPE_DENY_TARGETS): rollguard never rolls back itself, its Redis or its rule files", async (t) => {
  const envOf = (objs: Obj[]) => Object.fromEntries((find(objs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  const scope = (args: string[], opts: { base?: boolean } = {}) => {
    const env = envOf(render(args, opts));
    return loadConfig({ SCOPE_NAMESPACES: env.SCOPE_NAMESPACES, SCOPE_DENY_NAMESPACES: env.SCOPE_DENY_NAMESPACES, SCOPE_DENY_TARGETS: env.SCOPE_DENY_TARGETS });
  };
  const ns = 'rollguard-system';
  const defaults = scope([]);
  for (const key of [`Deployment/${ns}/rollguard`, `StatefulSet/${ns}/rollguard-redis`, `Service/${ns}/rollguard`, `Service/${ns}/rollguard-redis`, `ConfigMap/${ns}/rollguard-rules`]) {
    t.match(outOfScope(defaults, key, ns), /is denied by \*\/rollguard-system\/rollguard(-redis|-rules)? \(SCOPE_DENY_TARGETS\)/, `${key} is out of scope by default`);
  }
  t.equal(outOfScope(defaults, `Deployment/${ns}/web`, ns), undefined, 'another workload of the namespace is not');
  t.equal(outOfScope(defaults, 'Deployment/shop/rollguard', 'shop'), undefined, 'nor one of the same name elsewhere');

  const mine = scope(['--set', 'scope.denyTargets={Deployment/shop/*-db}', '--set', 'scope.namespaces={shop,rollguard-system}']);
  t.match(outOfScope(mine, 'Deployment/shop/orders-db', 'shop'), /denied by Deployment\/shop\/\*-db/, 'scope.denyTargets still applies');
  t.match(outOfScope(mine, `Deployment/${ns}/rollguard`, ns), /SCOPE_DENY_TARGETS/, 'with the release namespace in scope.namespaces (a Role there) too');

  const renamed = scope(['--set', 'fullnameOverride=guard', '--set', 'rules.existingConfigMap=my-rules', '--set', 'redis.url=redis://r:6379']);
  t.match(outOfScope(renamed, `Deployment/${ns}/guard`, ns), /SCOPE_DENY_TARGETS/, 'named by the release');
  t.match(outOfScope(renamed, `ConfigMap/${ns}/my-rules`, ns), /SCOPE_DENY_TARGETS/, 'the rule files of rules.existingConfigMap');
  t.equal(outOfScope(renamed, `StatefulSet/${ns}/guard-redis`, ns), undefined, 'no bundled Redis, nothing denied for it');
});

// Each object the chart makes in the release namespace, of a kind a rollback writes (a workload, a
// Service a BlueGreen switches, a ConfigMap restored or a Secret restored ahead of a workload that
// mounts it, with CONFIG_SNAPSHOTS_SECRETS): out of scope under every values combination.
t.test("every object of the release of a kind a rollback writes is denied (SCOPE_DENY_TARGETS), whatever the values", async (t) => {
  const ns = 'rollguard-system';
  const WRITTEN = ['Deployment', 'StatefulSet', 'DaemonSet', 'Service', 'ConfigMap', 'Secret'];
  const combos: string[][] = [
    [],
    ['-f', path.join(CHART, 'ci', 'all-on-values.yaml')],
    ['-f', path.join(CHART, 'ci', 'bundled-redis-values.yaml')],
    ['--set', 'fullnameOverride=guard', '--set', 'configSnapshots.enabled=true', '--set', 'grafanaDashboard.enabled=true'],
    ['--set', 'nameOverride=rg', '--set', 'auth.admin.tokens={a-token-of-32-characters-or-more-xx}', '--set', 'auth.read.tokens={r-token-of-32-characters-or-more-xx}'],
  ];
  for (const args of combos) {
    const objs = render(args);
    const env = Object.fromEntries((find(objs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
    const config = loadConfig({ SCOPE_DENY_TARGETS: env.SCOPE_DENY_TARGETS });
    const own = objs.filter((o) => WRITTEN.includes(o.kind) && o.metadata.namespace === ns);
    t.ok(own.length >= 4, `${args.join(' ') || 'defaults'}: the release's objects found`);
    for (const o of own) {
      const key = `${o.kind}/${ns}/${o.metadata.name}`;
      t.match(outOfScope(config, key, ns), /\(SCOPE_DENY_TARGETS\)$/, `${args.join(' ') || 'defaults'}: ${key} is out of scope`);
      t.equal(outOfScope(config, `${o.kind}/shop/${o.metadata.name}`, 'shop'), undefined, `${args.join(' ') || 'defaults'}: ${o.kind} ${o.metadata.name} of another namespace is not`);
    }
  }
});

// Kubernetes gives a container the last of two env entries of one name: extraEnv's SCOPE_DENY_TARGETS
// (as set before the chart denied the release's own objects) would silently replace the chart's.
t.test('extraEnv naming SCOPE_DENY_TARGETS or SCOPE_DENY_NAMESPACES is refused, naming the value to use', async (t) => {
  for (const [name, value] of [['SCOPE_DENY_TARGETS', 'scope.denyTargets'], ['SCOPE_DENY_NAMESPACES', 'scope.denyNamespaces']] as const) {
    const r = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', `extraEnv[0].name=${name}`, '--set', 'extraEnv[0].value=Deployment/shop/db']);
    t.not(r.code, 0, `extraEnv ${name}: refused`);
    t.match(r.stderr, new RegExp(`extraEnv sets ${name}, which the chart sets itself .*move its value to ${value.replace('.', '\\.')}`), `the error names ${value}`);
  }
  t.equal(helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'extraEnv[0].name=VERIFY_TIMEOUT', '--set', 'extraEnv[0].value=15m']).code, 0, 'another setting through extraEnv: rendered');
});

t.test('RBAC: gitops.enabled adds a Role in the Argo CD namespace and in each Flux namespace, nothing cluster-wide', async (t) => {
  const gitopsRules = (objs: Obj[]) => objs.filter((o) => o.kind === "Role" || o.kind === "ClusterRole").flatMap(rulesOf).filter((l) => /argoproj\.io applications|toolkit\.fluxcd\.io/.test(l));
  t.same(gitopsRules(render([])), [], 'off (the default): no right on Applications, Kustomizations or HelmReleases');
  const on = render(['--set', 'gitops.enabled=true']);
  t.same(gitopsRules(find(on, 'ClusterRole')), [], 'none in the ClusterRole');
  const roles = find(on, 'Role', 'rollguard-gitops');
  t.same(roles.map((r) => r.metadata.namespace).sort(), ['argocd', 'flux-system'], 'the defaults: argocd and flux-system');
  t.same(rulesOf(roles.find((r) => r.metadata.namespace === 'argocd')!), ['argoproj.io applications: get,patch', 'argoproj.io applicationsets: get']);
  t.same(rulesOf(roles.find((r) => r.metadata.namespace === 'flux-system')!), ['helm.toolkit.fluxcd.io helmreleases: get,patch', 'kustomize.toolkit.fluxcd.io kustomizations: get,patch']);
  const rbs = find(on, 'RoleBinding', 'rollguard-gitops');
  t.same(rbs.map((r) => [r.metadata.namespace, r.roleRef.name, r.subjects]).sort(), [
    ['argocd', 'rollguard-gitops', [{ kind: 'ServiceAccount', name: 'rollguard', namespace: 'rollguard-system' }]],
    ['flux-system', 'rollguard-gitops', [{ kind: 'ServiceAccount', name: 'rollguard', namespace: 'rollguard-system' }]],
  ]);
  const custom = render(['--set', 'gitops.enabled=true', '--set', 'gitops.argocd.namespace=gitops', '--set', 'gitops.flux.namespaces={gitops,teams}', '--set', 'gitops.ownerAllow={Kustomization/teams/*}', '--set', 'scope.namespaces={shop}']);
  const croles = find(custom, 'Role', 'rollguard-gitops');
  t.same(croles.map((r) => r.metadata.namespace).sort(), ['gitops', 'teams']);
  t.same(rulesOf(croles.find((r) => r.metadata.namespace === 'gitops')!), [
    'argoproj.io applications: get,patch', 'argoproj.io applicationsets: get', 'helm.toolkit.fluxcd.io helmreleases: get,patch', 'kustomize.toolkit.fluxcd.io kustomizations: get,patch',
  ], 'Argo CD and Flux in one namespace: one Role');
  t.same(gitopsRules(find(custom, 'Role').filter((r) => r.metadata.name !== 'rollguard-gitops')), [], 'scope.namespaces Roles (shop) carry no gitops right');
  const env = Object.fromEntries((find(custom, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  t.equal(env.GITOPS_ARGOCD_NAMESPACE, 'gitops');
  t.equal(env.GITOPS_OWNER_ALLOW, 'Kustomization/teams/*');
  t.same(configSchema.parse({ GITOPS_ARGOCD_NAMESPACE: env.GITOPS_ARGOCD_NAMESPACE, GITOPS_OWNER_ALLOW: env.GITOPS_OWNER_ALLOW }).GITOPS_OWNER_ALLOW, ['Kustomization/teams/*'], 'rollguard reads them');
  const envOf = (docs: ReturnType<typeof render>) => Object.fromEntries((find(docs, 'Deployment')[0]!.spec.template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  t.equal(envOf(on).GITOPS_ARGOCD_IN_CLUSTER, 'https://kubernetes.default.svc,in-cluster', "Argo CD's in-cluster server and name by default");
  const local = envOf(render(['--set', 'gitops.argocd.inCluster={https://kubernetes.default.svc,in-cluster,local}']));
  t.same(configSchema.parse({ GITOPS_ARGOCD_IN_CLUSTER: local.GITOPS_ARGOCD_IN_CLUSTER }).GITOPS_ARGOCD_IN_CLUSTER, ['https://kubernetes.default.svc', 'in-cluster', 'local'], 'gitops.argocd.inCluster: GITOPS_ARGOCD_IN_CLUSTER, as rollguard reads it');
  for (const [args, re] of [
    [['--set', 'gitops.enabled=true', '--set', 'gitops.flux.namespaces={kube-system}'], /gitops: kube-system is a namespace of gitops\.argocd\.namespace or gitops\.flux\.namespaces/],
    [['--set', 'gitops.enabled=true', '--set', 'gitops.argocd.namespace=kube-public'], /gitops: kube-public/],
    [['--set', 'gitops.ownerAllow={flux-system/apps}'], /ownerAllow/],
    [['--set', 'gitops.argocd.inCluster={}'], /inCluster/],
  ] as [string[], RegExp][]) {
    const r = helm(['template', 'rollguard', CHART, '--namespace', 'rollguard-system', ...MINIMAL, ...args]);
    t.not(r.code, 0, `refused: ${args.join(' ')}`);
    t.match(r.stderr, re);
  }
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
    // least privilege: HelmRelease only per namespace, never a Role in a denied namespace
    [['--set', 'actions.enabled={Deployment,HelmRelease}'], /HelmRelease.*scope\.namespaces/],
    [['--set', 'scope.namespaces={shop,kube-system}'], /scope\.namespaces lists kube-system/],
    [['--set', 'scope.namespaces={kube-node-lease}', '--set-json', 'scope.denyNamespaces=[]'], /scope\.namespaces lists kube-node-lease/],
    [['--set', 'scope.namespaces={shop,payments}', '--set', 'scope.denyNamespaces={payments}'], /scope\.namespaces lists payments/],
    // the webhook credential and its on-purpose opt-out are exclusive
    [['--set', 'auth.webhook.allowUnauthenticated=true'], /auth\.webhook\.allowUnauthenticated is true but a credential is set/],
    [['--set', 'auth.read.allowUnauthenticated=true', '--set', 'auth.read.existingSecret=r'], /auth\.read\.allowUnauthenticated is true but a credential is set/],
    // a NetworkPolicy peer selecting every pod of the cluster
    [['--set', 'networkPolicy.alertmanager.namespaceSelector.matchLabels=null', '--set', 'networkPolicy.alertmanager.podSelector.matchLabels=null'], /networkPolicy\.alertmanager: namespaceSelector and podSelector are both empty/],
    // the bundled Redis' maxmemory: below its memory limit, in units the chart reads
    [['--set', 'redis.bundled.maxmemory=512Mi'], /maxmemory \(512Mi\) must be above 0 and below redis\.bundled\.resources\.limits\.memory \(512Mi\)/],
    [['--set', 'redis.bundled.maxmemory=1Gi'], /must be above 0 and below/],
    [['--set', 'redis.bundled.maxmemory=100mb'], /maxmemory/],
    [['--set', 'redis.bundled.resources.limits.memory=0.5Gi'], /redis\.bundled\.resources\.limits\.memory is "0\.5Gi"/],
    [['--set', 'redis.bundled.resources.limits=null'], /redis\.bundled\.resources\.limits\.memory is not set/],
  ];
  for (const [args, re] of cases) {
    const r = helm(['template', 'rollguard', CHART, ...MINIMAL, ...args]);
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

t.test('the default values alone refuse to render: no webhook credential, unless allowUnauthenticated is set on purpose', async (t) => {
  const r = helm(['template', 'rollguard', CHART]);
  t.not(r.code, 0, 'helm template with the default values fails');
  t.match(r.stderr, /auth\.webhook: no webhook credential/);
  t.match(r.stderr, /auth\.webhook\.existingSecret/, 'names the value to set');
  t.match(r.stderr, /auth\.webhook\.allowUnauthenticated: true/, 'and the on-purpose opt-out');
  const inst = helm(['install', 'rollguard', CHART, '--dry-run=client']);
  t.not(inst.code, 0, 'helm install too');

  const withTokens = render(['--set', 'auth.webhook.tokens={webhook-token-0000000001}'], { base: false });
  t.equal(envOf(find(withTokens, 'Deployment')[0]!).find((e) => e.name === 'WEBHOOK_TOKEN_FILE')?.value, '/etc/rollguard/auth/webhook/token', 'tokens: a token file');
  t.equal(Buffer.from(find(withTokens, 'Secret', 'rollguard-secrets')[0]!.data['webhook-token'], 'base64').toString(), 'webhook-token-0000000001');
  const viaSecret = render([], {});
  const vol = viaSecret.find((o) => o.kind === 'Deployment')!.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'webhook-token');
  t.same(vol.secret, { secretName: 'rollguard-webhook', items: [{ key: 'token', path: 'token' }] }, 'existingSecret: mounted as the token file');
  const open = render(['--set', 'auth.webhook.allowUnauthenticated=true'], { base: false });
  const openEnv = envOf(find(open, 'Deployment')[0]!);
  t.same(openEnv.filter((e) => e.name.startsWith('WEBHOOK_')), [{ name: 'WEBHOOK_ALLOW_UNAUTHENTICATED', value: 'true' }], 'allowUnauthenticated: no webhook credential at all, and serve told it is on purpose');
  t.notOk(envOf(find(withTokens, 'Deployment')[0]!).some((e) => e.name === 'WEBHOOK_ALLOW_UNAUTHENTICATED'), 'with a credential: never set');
});

t.test('dry-run by default; acting for real needs a Prometheus to confirm alerts, unless allowUnconfirmed is set on purpose', async (t) => {
  t.equal(envOf(find(render(), 'Deployment')[0]!).find((e) => e.name === 'DRY_RUN')?.value, 'true', 'the default install decides and records, and changes nothing');
  const bare = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'dryRun=false']);
  t.not(bare.code, 0, 'dryRun: false without Prometheus is refused');
  t.match(bare.stderr, /dryRun is false but no Prometheus is configured/);
  t.match(bare.stderr, /prometheus\.url or prometheus\.existingSecret/, 'names the values to set');
  t.match(bare.stderr, /prometheus\.allowUnconfirmed: true/, 'and the on-purpose opt-out');
  const both = helm(['template', 'rollguard', CHART, ...MINIMAL, '--set', 'prometheus.url=http://p:9090', '--set', 'prometheus.existingSecret=prom']);
  t.not(both.code, 0, 'url and existingSecret together are refused');
  const withUrl = envOf(find(render(['--set', 'dryRun=false', '--set', 'prometheus.url=http://prometheus-operated.monitoring.svc:9090']), 'Deployment')[0]!);
  t.equal(withUrl.find((e) => e.name === 'DRY_RUN')?.value, 'false');
  t.equal(withUrl.find((e) => e.name === 'PROMETHEUS_URL')?.value, 'http://prometheus-operated.monitoring.svc:9090');
  const viaSecret = envOf(find(render(['--set', 'dryRun=false', '--set', 'prometheus.existingSecret=prom-url']), 'Deployment')[0]!);
  t.same(viaSecret.find((e) => e.name === 'PROMETHEUS_URL')?.valueFrom?.secretKeyRef, { name: 'prom-url', key: 'url' }, 'a URL with credentials stays in a Secret, not in the Deployment');
  const unconfirmed = envOf(find(render(['--set', 'dryRun=false', '--set', 'prometheus.allowUnconfirmed=true']), 'Deployment')[0]!);
  t.notOk(unconfirmed.some((e) => e.name === 'PROMETHEUS_URL'), 'allowUnconfirmed: renders without Prometheus');
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
  // Without a network plugin enforcing the NetworkPolicy any pod reaches port 6379, and before the
  // password: 7.4.2 let such a client grow its output buffers without bound until Redis was
  // OOM-killed (CVE-2025-21605, fixed in 7.4.3); 7.4.6 and 7.4.10 fixed remote code execution
  // through Lua scripts (CVE-2025-49844 and others) and the July 2026 security release.
  const version = (/^redis:(\d+)\.(\d+)\.(\d+)/.exec(c.image) ?? []).slice(1).map(Number);
  t.ok(version.length === 3 && (version[0]! > 7 || (version[0] === 7 && (version[1]! > 4 || (version[1] === 4 && version[2]! >= 10)))), `the bundled Redis is 7.4.10 or later: ${c.image}`);
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
  t.same(find(open, 'Secret').filter((o) => o.metadata.name.startsWith('rollguard-redis')), [], 'auth off: no Redis Secret');
  const oc = find(open, 'StatefulSet')[0]!.spec.template.spec.containers[0];
  t.match(oc.args.join(' '), /--protected-mode no/);
  t.notMatch(oc.args.join(' '), /requirepass/);
  t.notOk(oc.env, 'no password env');
  const openEnv = envOf(find(open, 'Deployment')[0]!);
  t.equal(openEnv.find((e) => e.name === 'REDIS_URL')?.value, 'redis://rollguard-redis.rollguard-system.svc:6379/0');
  t.notOk(openEnv.some((e) => e.name === 'REDIS_PASSWORD'));

  // an existing password Secret
  const ex = render(['--set', 'redis.bundled.auth.existingSecret=my-redis', '--set', 'redis.bundled.auth.existingSecretKey=pw']);
  t.same(find(ex, 'Secret').filter((o) => o.metadata.name.startsWith('rollguard-redis')), [], 'existingSecret: the chart creates no Redis Secret');
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
  const partial = helm(['template', 'rollguard', old, ...MINIMAL, '--set', 'redis.bundled.enabled=true', '--set', 'replicaCount=2']);
  t.not(partial.code, 0, 'redis.bundled.enabled without the rest of redis.bundled (--reuse-values from chart 0.1) is refused');
  t.match(partial.stderr, /--reset-then-reuse-values/, `with what to do instead: ${partial.stderr.split('\n')[0]}`);

  // ci/bundled-redis-values.yaml: every option of the bundled Redis on
  const all = render(['-f', path.join(CHART, 'ci', 'bundled-redis-values.yaml')]);
  const s = find(all, 'StatefulSet')[0]!;
  const p = s.spec.template.spec;
  t.equal(p.containers[0].image, 'registry.example.com/mirror/redis:7.4.10-alpine@sha256:' + '1'.repeat(64));
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
  t.equal(await cfg('maxmemory'), String(256 * 1024 * 1024), 'maxmemory: half the container limit (512Mi) by default');
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
  for (const n of ['CONSUMER_NAME', 'REDIS_URL', 'WEBHOOK_TOKEN_FILE', 'READ_TOKEN_FILE', 'ADMIN_TOKEN_FILE', 'METRICS_PORT', 'RULES_PATH', 'PROMETHEUS_URL', 'DRY_RUN', 'SCOPE_NAMESPACES', 'SCOPE_DENY_NAMESPACES', 'SCOPE_DENY_TARGETS', 'BUDGET_CLUSTER_PER_HOUR', 'MAX_CONCURRENT_ROLLBACKS', 'NOTIFY_SLACK_URL', 'NOTIFY_WEBHOOK_URL', 'LOG_LEVEL']) {
    t.ok(names.includes(n), `${n} is set`);
  }
  t.notOk(names.includes('WEBHOOK_TOKEN') || names.includes('ADMIN_TOKEN'), 'tokens only as files from Secrets');
  const secret = find(objs, 'Secret').find((s) => s.data?.['webhook-token'])!;
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
    "the runbook's triggers with their durations",
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
  const r = helm(['install', 'rollguard', CHART, '--namespace', 'rollguard-system', '--dry-run=client', ...MINIMAL]);
  t.equal(r.code, 0, r.stderr);
  const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
  t.match(notes, /url: http:\/\/rollguard\.rollguard-system\.svc:9095\/v1\/alerts/);
  t.match(notes, /send_resolved: true/);
  t.match(notes, /group_wait: 10s/);
  t.match(notes, /repeat_interval: 1h/);
  t.match(notes, /credentials_file:/);
  t.notMatch(notes, /WARNING/, 'a webhook credential, a read token, NetworkPolicies: nothing to warn about');
  t.match(notes, /NetworkPolicy rollguard: port http \(webhook, API\) only from/);
  t.match(notes, /get secret rollguard-read -o jsonpath='\{\.data\.token\}'/, 'how to read the generated read token');
  const open = helm(['install', 'rollguard', CHART, '--namespace', 'rollguard-system', '--dry-run=client', '--set', 'auth.webhook.allowUnauthenticated=true', '--set', 'auth.read.allowUnauthenticated=true', '--set', 'networkPolicy.enabled=false']);
  t.equal(open.code, 0, open.stderr);
  t.match(open.stdout, /WARNING: auth\.webhook\.allowUnauthenticated is true/);
  t.match(open.stdout, /WARNING: auth\.read\.allowUnauthenticated is true/);
  t.match(open.stdout, /WARNING: networkPolicy\.enabled is false/);
  // a Redis without a password is a way round every token: whoever reaches it can queue alerts
  const noPassword = helm(['install', 'rollguard', CHART, '--namespace', 'rollguard-system', '--dry-run=client', ...MINIMAL, '--set', 'redis.bundled.auth.enabled=false']);
  t.equal(noPassword.code, 0, noPassword.stderr);
  t.match(noPassword.stdout, /WARNING: redis\.bundled\.auth\.enabled is false: .*queue alerts/s, 'a bundled Redis without a password is warned about');
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

// Pods as the common installs label them: kube-prometheus-stack's (the Prometheus Operator sets
// app.kubernetes.io/name, managed-by, instance and alertmanager/prometheus), the
// prometheus-community alertmanager and prometheus charts', and pods that must not get in.
const PEERS: Record<string, Peer> = {
  'kube-prometheus-stack Alertmanager': { namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'alertmanager', 'app.kubernetes.io/managed-by': 'prometheus-operator', 'app.kubernetes.io/instance': 'kps-alertmanager', alertmanager: 'kps-alertmanager' } },
  'alertmanager chart': { namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'alertmanager', 'app.kubernetes.io/instance': 'alertmanager' } },
  'kube-prometheus-stack Prometheus': { namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'prometheus', 'app.kubernetes.io/managed-by': 'prometheus-operator', 'app.kubernetes.io/instance': 'kps-prometheus', prometheus: 'kps-prometheus' } },
  'prometheus chart server': { namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'prometheus', 'app.kubernetes.io/component': 'server' } },
  'any pod in default': { namespace: 'default', labels: { app: 'curl' } },
  'a pod named alertmanager in shop': { namespace: 'shop', labels: { 'app.kubernetes.io/name': 'alertmanager' } },
  'another pod in monitoring': { namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'grafana' } },
  'another pod in rollguard-system': { namespace: 'rollguard-system', labels: { app: 'debug' } },
};

t.test('NetworkPolicies (default): port http from Alertmanager only, port metrics from Prometheus only, the bundled Redis from rollguard only', async (t) => {
  const objs = render();
  const nps = find(objs, 'NetworkPolicy');
  t.same(nps.map((n) => n.metadata.name).sort(), ['rollguard', 'rollguard-redis']);
  const dep = find(objs, 'Deployment')[0]!;
  const sts = find(objs, 'StatefulSet')[0]!;
  const rgPod: Record<string, string> = dep.spec.template.metadata.labels;
  const redisPod: Record<string, string> = sts.spec.template.metadata.labels;
  const rgSelf: Peer = { namespace: 'rollguard-system', labels: rgPod };
  // the named ports the policies open exist on the containers
  t.same(dep.spec.template.spec.containers[0].ports.map((p: { name: string; containerPort: number }) => `${p.name}:${p.containerPort}`), ['http:9095', 'metrics:9096']);
  t.same(sts.spec.template.spec.containers[0].ports.map((p: { name: string }) => p.name), ['redis']);
  const env = Object.fromEntries(envOf(dep).map((e) => [e.name, e.value]));
  t.same([env.PORT, env.METRICS_PORT], ['9095', '9096'], 'rollguard listens on both: the API on PORT, /metrics alone on METRICS_PORT');
  t.same(find(objs, 'Service', 'rollguard')[0]!.spec.ports.map((p: { name: string; port: number; targetPort: string }) => `${p.name}:${p.port}->${p.targetPort}`), ['http:9095->http', 'metrics:9096->metrics']);

  const table: [peer: string, port: 'http' | 'metrics' | 'redis', want: boolean][] = [
    ['kube-prometheus-stack Alertmanager', 'http', true],
    ['alertmanager chart', 'http', true],
    ['kube-prometheus-stack Alertmanager', 'metrics', false],
    ['kube-prometheus-stack Prometheus', 'metrics', true],
    ['prometheus chart server', 'metrics', true],
    ['kube-prometheus-stack Prometheus', 'http', false],
    ['prometheus chart server', 'http', false],
    ['any pod in default', 'http', false],
    ['any pod in default', 'metrics', false],
    ['a pod named alertmanager in shop', 'http', false],
    ['another pod in monitoring', 'http', false],
    ['another pod in monitoring', 'metrics', false],
    ['another pod in rollguard-system', 'http', false],
  ];
  for (const [peer, port, want] of table) {
    t.equal(allowed(nps, 'rollguard-system', rgPod, PEERS[peer]!, port), want, `${peer} -> rollguard:${port}: ${want ? 'allowed' : 'refused'}`);
  }
  t.equal(allowed(nps, 'rollguard-system', redisPod, rgSelf, 'redis'), true, 'rollguard -> Redis: allowed');
  for (const peer of Object.keys(PEERS)) t.equal(allowed(nps, 'rollguard-system', redisPod, PEERS[peer]!, 'redis'), false, `${peer} -> Redis: refused`);
  t.equal(allowed(nps, 'rollguard-system', redisPod, { namespace: 'shop', labels: rgPod }, 'redis'), false, "a pod in another namespace carrying rollguard's labels -> Redis: refused");
  t.notOk(selectsExpr(find(nps, 'NetworkPolicy', 'rollguard')[0]!.spec.podSelector, redisPod), "rollguard's policy does not select the Redis pod");
  t.notOk(selectsExpr(find(nps, 'NetworkPolicy', 'rollguard-redis')[0]!.spec.podSelector, rgPod), "the Redis policy does not select rollguard's pods");

  // the ServiceMonitor scrapes the metrics port
  const sm = find(render(['--set', 'serviceMonitor.enabled=true']), 'ServiceMonitor')[0]!;
  t.same(sm.spec.endpoints.map((e: { port: string; path: string }) => `${e.port} ${e.path}`), ['metrics /metrics']);

  // other selectors (a plain Alertmanager in namespace observability), extra rules, and off
  const bundledOn = render(['-f', path.join(CHART, 'ci', 'bundled-redis-values.yaml')]);
  const bNps = find(bundledOn, 'NetworkPolicy');
  const obsAm: Peer = { namespace: 'observability', labels: { 'app.kubernetes.io/name': 'alertmanager', 'app.kubernetes.io/instance': 'main' } };
  const bPod: Record<string, string> = find(bundledOn, 'Deployment')[0]!.spec.template.metadata.labels;
  t.equal(allowed(bNps, 'rollguard-system', bPod, obsAm, 'http'), true, 'the configured Alertmanager (observability, instance main) gets in');
  t.equal(allowed(bNps, 'rollguard-system', bPod, PEERS['alertmanager chart']!, 'http'), false, 'the default one no longer does');
  t.equal(allowed(bNps, 'rollguard-system', bPod, { namespace: 'observability', labels: { 'app.kubernetes.io/name': 'prometheus' } }, 'metrics'), true, 'Prometheus in observability (matchExpressions)');
  t.equal(allowed(bNps, 'rollguard-system', bPod, PEERS['kube-prometheus-stack Prometheus']!, 'metrics'), true, 'and in monitoring');
  t.equal(find(bundledOn, 'Service', 'rollguard')[0]!.spec.ports[1].port, 9100, 'service.metricsPort');
  const allOn = render(['-f', path.join(CHART, 'ci', 'all-on-values.yaml')]);
  const aNps = find(allOn, 'NetworkPolicy');
  t.same(aNps.map((n) => n.metadata.name), ['rollguard'], 'an external Redis: no Redis policy');
  const aPod: Record<string, string> = find(allOn, 'Deployment')[0]!.spec.template.metadata.labels;
  t.equal(allowed(aNps, 'rollguard-system', aPod, { namespace: 'ingress-nginx', labels: { app: 'controller' } }, 'http'), true, 'networkPolicy.extraIngress adds rules');
  t.equal(allowed(aNps, 'rollguard-system', aPod, { namespace: 'ingress-nginx', labels: { app: 'controller' } }, 'metrics'), false, '... for the ports they name');
  t.same(find(render(['--set', 'networkPolicy.enabled=false']), 'NetworkPolicy'), [], 'networkPolicy.enabled: false renders none');
});

t.test('the service started as the chart configures it: a forged alert is refused (401), reads need the read token, /metrics is alone on its port, a full Redis answers 503', async (t) => {
  const objs = render();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-pod-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // the Secret the operator created for the webhook (ci/minimal-values.yaml names it)
  const token = 'alertmanager-webhook-token-0123456789';
  const env = materialise(objs, find(objs, 'Deployment')[0]!, path.join(dir, 'rollguard'), { 'rollguard-webhook': { token } });

  // the bundled Redis, from its rendered command line (data dir and port moved to this machine)
  const c = find(objs, 'StatefulSet')[0]!.spec.template.spec.containers[0];
  const redisEnv = materialise(objs, find(objs, 'StatefulSet')[0]!, path.join(dir, 'redis'));
  const redisPort = await freePort();
  fs.mkdirSync(path.join(dir, 'data'));
  const args = (c.args as string[]).slice(1).map((a) => expand(a, redisEnv));
  args[args.indexOf('--dir') + 1] = path.join(dir, 'data');
  args[args.indexOf('--port') + 1] = String(redisPort);
  const server = spawn('redis-server', args, { stdio: 'ignore' });
  t.teardown(() => { server.kill('SIGKILL'); });
  const redisUrl = `redis://:${redisEnv.REDIS_PASSWORD}@127.0.0.1:${redisPort}/0`;
  const redis = await waitFor('the bundled Redis', async () => {
    const c = createRedisClient(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
    try {
      await c.connect();
      return c;
    } catch {
      c.disconnect();
      return undefined;
    }
  }, 10_000, 100);
  t.teardown(() => redis.disconnect());
  t.equal(((await redis.call('CONFIG', 'GET', 'maxmemory')) as string[])[1], String(256 * 1024 * 1024), 'maxmemory: half of the 512Mi limit');

  // rollguard with the pod's environment; only addresses moved to this machine
  env.REDIS_URL = env.REDIS_URL!.replace(/@[^/]+\//, `@127.0.0.1:${redisPort}/`);
  env.METRICS_PORT = String(await freePort());
  const s = await startServe(env);
  t.teardown(() => s.proc.kill('SIGKILL'));
  const post = (headers: Record<string, string> = {}) =>
    fetch(`${s.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: fixture('alertmanager/firing-two-alerts.json') });

  const forged = await post();
  t.equal(forged.status, 401, 'a forged alert without a credential: 401');
  t.equal((await post({ authorization: 'Bearer guessed-token' })).status, 401, 'with a wrong token: 401');
  t.equal((await post({ authorization: `Bearer ${token}` })).status, 200, "with Alertmanager's token: accepted");

  const readToken = Buffer.from(find(objs, 'Secret', 'rollguard-read')[0]!.data.token, 'base64').toString();
  t.match(readToken, /^[A-Za-z0-9]{32}$/, 'a generated read token');
  t.equal((await fetch(`${s.url}/v1/rollbacks`)).status, 401, 'GET /v1/rollbacks without the read token: 401');
  t.equal((await fetch(`${s.url}/v1/rollbacks`, { headers: { authorization: `Bearer ${readToken}` } })).status, 200, 'with it: 200');

  const metrics = await fetch(`http://127.0.0.1:${env.METRICS_PORT}/metrics`);
  t.equal(metrics.status, 200, 'GET /metrics on the metrics port');
  t.match(await metrics.text(), /rollguard_/);
  t.equal((await fetch(`http://127.0.0.1:${env.METRICS_PORT}/v1/rollbacks`)).status, 404, 'nothing else on the metrics port');
  t.equal((await fetch(`${s.url}/metrics`)).status, 404, 'no /metrics on the API port');

  // Redis full: writes refused (noeviction), the webhook answers 503 so Alertmanager retries, and
  // nothing already stored was evicted
  const before = (await redis.call('DBSIZE')) as number;
  const big = 'x'.repeat(1024 * 1024);
  let oom = '';
  for (let i = 0; i < 1000 && !oom; i++) {
    try {
      await redis.set(`filler:${i}`, big);
    } catch (err) {
      oom = (err as Error).message;
    }
  }
  t.match(oom, /^OOM command not allowed when used memory > 'maxmemory'/, `Redis refuses writes past maxmemory: ${oom}`);
  const full = await post({ authorization: `Bearer ${token}` });
  t.equal(full.status, 503, 'the webhook answers 503 (Alertmanager retries)');
  t.ok(((await redis.call('DBSIZE')) as number) >= before, 'no key evicted');
  await redis.call('DEL', ...Array.from({ length: 1000 }, (_, i) => `filler:${i}`));
  const again = await fetch(`${s.url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: fixture('alertmanager/one-resolved-one-firing.json'),
  });
  t.equal(again.status, 200, 'room again: the retry is accepted');

  // allowUnauthenticated on purpose: the same service takes the alert without a credential
  const openObjs = render(['--set', 'auth.webhook.allowUnauthenticated=true', '--set', 'redis.bundled.enabled=false', '--set', 'replicaCount=1'], { base: false });
  const openEnv = materialise(openObjs, find(openObjs, 'Deployment')[0]!, path.join(dir, 'open'));
  openEnv.METRICS_PORT = String(await freePort());
  const o = await startServe(openEnv);
  t.teardown(() => o.proc.kill('SIGKILL'));
  const openPost = await fetch(`${o.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: fixture('alertmanager/firing-two-alerts.json') });
  t.equal(openPost.status, 200, 'auth.webhook.allowUnauthenticated: true renders an open webhook, as it says');
});

t.test('drills: off by default; DRILL_NAMESPACES; a CronJob per schedule running the CLI against the Service with the admin token; refusals', async (t) => {
  const none = render();
  t.same(find(none, 'CronJob'), [], 'no scheduled drill by default');
  t.notOk(envOf(find(none, 'Deployment')[0]!).some((e) => e.name === 'DRILL_NAMESPACES'), 'drills off by default (no DRILL_NAMESPACES)');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-drills-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const values = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };
  const live = ['--set', 'dryRun=false', '--set', 'prometheus.url=http://prometheus-operated.monitoring.svc:9090', '--set', 'auth.admin.existingSecret=rollguard-admin', '--set', 'auth.admin.existingSecretKey=token'];
  const scheduled = values(
    'drills.yaml',
    `drills:
  namespaces: [staging]
  schedules:
    - name: web-errors
      schedule: "0 10 1 */3 *"
      timeZone: Europe/Berlin
      target: Deployment/staging/web
      fault: [env, DEMO_ERRORS=on]
      deadline: 5m
    - name: api-image
      schedule: "30 10 1 */3 *"
      target: StatefulSet/staging/api
      fault: [image]
`,
  );
  const objs = render([...live, '-f', scheduled]);
  const dep = find(objs, 'Deployment')[0]!;
  t.equal(envOf(dep).find((e) => e.name === 'DRILL_NAMESPACES')?.value, 'staging');
  const jobs = find(objs, 'CronJob');
  t.same(jobs.map((j) => j.metadata.name), ['rollguard-drill-web-errors', 'rollguard-drill-api-image']);
  const [web, api] = jobs as [Obj, Obj];
  t.same([web.spec.schedule, web.spec.timeZone, web.spec.concurrencyPolicy, web.spec.suspend], ['0 10 1 */3 *', 'Europe/Berlin', 'Forbid', false]);
  const pod = web.spec.jobTemplate.spec.template;
  const c = pod.spec.containers[0];
  const tokenFile = ['--token-file', '/etc/rollguard/auth/admin/token'];
  t.same(c.args, ['drill', 'run', 'Deployment/staging/web', 'env', 'DEMO_ERRORS=on', '--deadline', '5m', '--by', 'cronjob/web-errors', ...tokenFile], 'the CLI, one drill, its report in the log');
  t.same(api.spec.jobTemplate.spec.template.spec.containers[0].args, ['drill', 'run', 'StatefulSet/staging/api', 'image', '--by', 'cronjob/api-image', ...tokenFile]);
  t.equal(c.image, dep.spec.template.spec.containers[0].image, "rollguard's own image");
  t.same(c.env, [{ name: 'ROLLGUARD_URL', value: 'http://rollguard.rollguard-system.svc:9095' }], 'no token in the environment');
  t.same(c.volumeMounts, [{ name: 'admin-token', mountPath: '/etc/rollguard/auth/admin', readOnly: true }]);
  t.same(pod.spec.volumes, [{ name: 'admin-token', secret: { secretName: 'rollguard-admin', items: [{ key: 'token', path: 'token' }] } }], 'the admin token as a file');
  const ownKey = find(render([...live, '-f', scheduled, '--set', 'drills.existingSecretKey=drill']), 'CronJob')[0]!;
  t.same(ownKey.spec.jobTemplate.spec.template.spec.volumes[0].secret.items, [{ key: 'drill', path: 'token' }], 'drills.existingSecretKey: a key of its own, one token while the admin key holds two');

  // A rotation with the chart's Secret (auth.admin.tokens: the old beside the new): the drill pod,
  // as the kubelet would set it up, sends one token, the first, and the CLI accepts it.
  const [oldToken, newToken] = ['adm-old-8f3k2a7c0e4b9d1', 'adm-new-x9q7m2p5r8t1w4z'];
  const rotating = render(['--set', 'dryRun=false', '--set', 'prometheus.url=http://p:9090', '--set', `auth.admin.tokens={${oldToken},${newToken}}`, '-f', scheduled]);
  const server = find(rotating, 'Deployment')[0]!.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'admin-token');
  t.equal(server.secret.items[0].key, 'admin-token', 'the server still reads every admin token');
  const job = find(rotating, 'CronJob')[0]!;
  const jobPod = { ...job, spec: job.spec.jobTemplate.spec };
  const podEnv = materialise(rotating, jobPod, path.join(dir, 'drill-pod'));
  const args = (jobPod.spec.template.spec.containers[0].args as string[]).map((a) => a.replace(/^\/etc\/rollguard\/auth\/admin\//, `${path.join(dir, 'drill-pod', 'admin-token')}/`));
  t.equal(fs.readFileSync(args.at(-1)!, 'utf8'), oldToken, 'the mounted file holds the first token alone');
  const sent: string[] = [];
  const errs: string[] = [];
  const code = await drillCommand(args.slice(1), {
    io: { out: () => undefined, err: (s) => errs.push(s) },
    env: podEnv,
    now: () => Date.now(),
    fetch: async (_u, init) => {
      sent.push(new Headers(init?.headers).get('authorization') ?? '');
      return new Response(JSON.stringify({ message: 'refused here' }), { status: 422, headers: { 'content-type': 'application/json' } });
    },
  });
  t.same(sent, [`Bearer ${oldToken}`], `one request with one token (${errs.join(' ')})`);
  t.equal(code, 9, 'the refusal is the answer, not a bad token');
  t.same([pod.spec.restartPolicy, web.spec.jobTemplate.spec.backoffLimit, pod.spec.automountServiceAccountToken], ['Never', 0, false], 'runs once, no Kubernetes credentials');
  t.equal(c.securityContext.readOnlyRootFilesystem, true);
  const drillPod: Record<string, string> = pod.metadata.labels;
  t.notOk(selects(find(objs, 'Service', 'rollguard')[0]!.spec.selector, drillPod), "rollguard's Service does not select the drill pods");
  t.notOk(selectsExpr(find(objs, 'PodDisruptionBudget')[0]!.spec.selector, drillPod), 'nor its PodDisruptionBudget');
  const nps = find(objs, 'NetworkPolicy');
  t.equal(allowed(nps, 'rollguard-system', dep.spec.template.metadata.labels, { namespace: 'rollguard-system', labels: drillPod }, 'http'), true, 'the drill pods reach the API port');
  t.equal(allowed(nps, 'rollguard-system', dep.spec.template.metadata.labels, { namespace: 'rollguard-system', labels: drillPod }, 'metrics'), false, 'and nothing else');
  t.equal(allowed(nps, 'rollguard-system', dep.spec.template.metadata.labels, { namespace: 'staging', labels: drillPod }, 'http'), false, 'from the release namespace only');
  t.same(find(render([...live, '--set', 'drills.namespaces={staging}']), 'CronJob'), [], 'namespaces alone schedule nothing');

  const refused = (args: string[], why: RegExp, what: string) => {
    const r = helm(['template', 'rollguard', CHART, '--namespace', 'rollguard-system', ...MINIMAL, ...args]);
    t.not(r.code, 0, what);
    t.match(r.stderr, why, what);
  };
  refused([...live, '-f', scheduled, '--set', 'drills.namespaces={other}'], /drills.schedules web-errors: Deployment\/staging\/web is not in drills.namespaces \(DRILL_NAMESPACES\)/, 'a target outside drills.namespaces');
  refused(['--set', 'dryRun=false', '--set', 'prometheus.url=http://p:9090', '-f', scheduled], /drills.schedules: a scheduled drill starts with the admin token: set auth.admin.existingSecret/, 'no admin token');
  refused(['--set', 'auth.admin.existingSecret=a', '-f', scheduled], /dryRun is true and rollguard refuses drills in dry-run/, 'dry-run');
  refused([...live, '--set', 'drills.namespaces={kube-system}'], /drills.namespaces lists kube-system, a namespace rollguard never touches/, 'kube-system');
  refused([...live, '--set', 'drills.namespaces={staging}', '--set', 'scope.namespaces={shop}'], /drills.namespaces lists staging, outside scope.namespaces/, 'outside scope.namespaces');
  refused([...live, '-f', values('bad-fault.yaml', 'drills:\n  namespaces: [staging]\n  schedules:\n    - {name: x, schedule: "@daily", target: Deployment/staging/web, fault: [reboot]}\n')], /at '\/drills\/schedules\/0\/fault': 'oneOf' failed/, 'an unknown fault (values.schema.json)');
  refused([...live, '-f', values('bad-kind.yaml', 'drills:\n  namespaces: [staging]\n  schedules:\n    - {name: x, schedule: "@daily", target: Rollout/staging/web, fault: [crash]}\n')], /at '\/drills\/schedules\/0\/target': 'Rollout\/staging\/web' does not match pattern/, 'a kind drills do not break');
});
