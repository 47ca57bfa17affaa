// Configuration snapshots on the real control plane (the Go-built API server, a
// kube-controller-manager running every controller, garbage collector included, and kwok nodes),
// as rollguard's ServiceAccount with the chart's RBAC and configSnapshots.enabled:
//  (c) a ConfigMap edited in place with the bad deploy, rule policy `configDrift: restore`: the
//      rollback first writes back the snapshot that was current when the target revision was
//      created, then rolls the Deployment back; the ConfigMap's data is then byte for byte what it
//      was at that revision, and the record, the notification and the report say what was restored;
//  (d) snapshots stay at CONFIG_SNAPSHOTS_MAX per object through several edits (the newest kept),
//      and the real garbage collector deletes them with their ConfigMap;
//  (d2) a configuration-only rollback (target kind: ConfigMap): a ConfigMap edited in place with
//      no new revision gets its previous content back, and the Deployment using it is restarted
//      as `kubectl rollout restart` does (a new ReplicaSet, its pods running), verified.
import t from 'tap';
import type { Alert } from '../../src/alertmanager/alert.js';
import { ConfigSnapshots } from '../../src/config-deps/watch.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { incidentReport } from '../../src/engine/report.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { MemoryStore } from '../../src/store/memory.js';
import { applyChartRbac, CHART_ACTION_KINDS, deploymentSettled as settled, type DeploymentView as Dep, startCluster } from '../cluster/harness.js';
import { clusterEngine, firingNow } from '../support/engine.js';
import { SNAPSHOT_KEY } from '../support/snapshots.js';

const MAX = 3;
const NAMESPACES = ['snap-c', 'snap-d', 'snap-d2'];

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
const kubectl = (args: string[], input?: string) => cluster.kubectl(args, { check: true, ...(input ? { input } : {}) });

// rollguard's ServiceAccount: the chart's RBAC with configSnapshots.enabled (its ClusterRole replaces the harness's default)
await applyChartRbac(cluster, ['configSnapshots.enabled=true', `configSnapshots.max=${MAX}`, `actions.enabled={${[...CHART_ACTION_KINDS, 'ConfigMap'].join(',')}}`]);
for (const ns of NAMESPACES) await kubectl(['create', 'namespace', ns]);

const RULES = `
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
    guards: { configDrift: restore }
  - name: bad-config
    match: ['alertname="ConfigBroken"']
    target: { kind: ConfigMap, namespace: "{{ $labels.namespace }}", name: "{{ $labels.configmap }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`;
const { engine, config, kube, notifier, notifications, logs } = await clusterEngine({
  kubeconfig: cluster.rollguardKubeconfig,
  env: { DRY_RUN: 'false', LOCK_TTL: '10s', VERIFY_TIMEOUT: '60s', CONFIG_SNAPSHOTS: 'true', CONFIG_SNAPSHOTS_KEY: SNAPSHOT_KEY, CONFIG_SNAPSHOTS_MAX: String(MAX), SCOPE_NAMESPACES: NAMESPACES.join(',') },
  rulesText: RULES,
  store: new MemoryStore(),
  owner: 'snapshots-a',
});

const snapshots = new ConfigSnapshots({ kube, logger: logs.logger, namespaces: config.SCOPE_NAMESPACES, denyNamespaces: config.SCOPE_DENY_NAMESPACES, max: config.CONFIG_SNAPSHOTS_MAX, secrets: false, key: SNAPSHOT_KEY });
await snapshots.start();
t.teardown(() => snapshots.stop());

interface CM {
  metadata: { name: string; uid: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: { kind: string; name: string; uid: string }[] };
  immutable?: boolean;
  data?: Record<string, string>;
}
const getDep = (ns: string, name: string) => cluster.request<Dep>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
const getCm = (ns: string, name: string) => cluster.request<CM>('GET', `/api/v1/namespaces/${ns}/configmaps/${name}`);
const snapshotsOf = async (ns: string, name: string) => {
  const items = (await cluster.request<{ items: CM[] }>('GET', `/api/v1/namespaces/${ns}/configmaps?labelSelector=${encodeURIComponent(`rollguard.io/snapshot-of=${name}`)}`)).items;
  return items.sort((a, b) => Date.parse(a.metadata.annotations!['rollguard.io/current-since']!) - Date.parse(b.metadata.annotations!['rollguard.io/current-since']!));
};
const applyObj = (o: unknown) => kubectl(['apply', '-f', '-'], JSON.stringify(o));
const configMap = (ns: string, name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data });
const deployment = (ns: string, name: string, image: string, cm: string) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: ns, labels: { app: name } },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: name } },
    template: {
      metadata: { labels: { app: name } },
      spec: { containers: [{ name: 'app', image, envFrom: [{ configMapRef: { name: cm } }], volumeMounts: [{ name: 'config', mountPath: '/etc/app' }] }], volumes: [{ name: 'config', configMap: { name: cm } }] },
    },
  },
});
async function deploy(ns: string, name: string, image: string, cm: string) {
  await applyObj(deployment(ns, name, image, cm));
  await cluster.poll(`${ns}/${name} at ${image}`, () => getDep(ns, name), (d) => settled(d, image), 90_000);
}
const nextSecond = () => new Promise((r) => setTimeout(r, 1100));
const alert = (ns: string, deployment: string): Alert =>
  firingNow('HighErrorRate', deployment, { labels: { alertname: 'HighErrorRate', namespace: ns, deployment }, annotations: { summary: `${deployment} 5xx above 5%` } });

t.test("the chart's rights with configSnapshots.enabled, as kubectl auth can-i shows them", async (t) => {
  const SA = 'system:serviceaccount:rollguard-system:rollguard';
  const rows: [string, string, boolean][] = [
    ...['get', 'list', 'watch', 'create', 'patch', 'delete'].map((v): [string, string, boolean] => [v, 'configmaps', true]),
    ['update', 'configmaps', false],
    ...['deployments', 'statefulsets', 'daemonsets'].flatMap((r): [string, string, boolean][] => [['list', `${r}.apps`, true], ['watch', `${r}.apps`, true], ['delete', `${r}.apps`, false]]),
    // cluster-wide without configSnapshots.secrets: actions.checkSecrets (auto) is off, no right on Secrets
    ...['get', 'list', 'watch', 'create', 'patch', 'delete'].map((v): [string, string, boolean] => [v, 'secrets', false]),
  ];
  const lines: string[] = [];
  for (const [verb, resource, want] of rows) {
    const r = await cluster.kubectl(['auth', 'can-i', verb, resource, `--as=${SA}`, '-n', 'snap-c']);
    const got = r.stdout.trim() === 'yes';
    lines.push(`${got === want ? ' ' : '✗'} ${verb.padEnd(7)} ${resource.padEnd(18)} ${got ? 'yes' : 'no '} (want ${want ? 'yes' : 'no'})`);
    t.equal(got, want, `can-i ${verb} ${resource}`);
  }
  t.comment(`auth can-i as ${SA} -n snap-c (configSnapshots.enabled, not secrets)\n${lines.join('\n')}`);
});

t.test('(c) configDrift: restore with snapshots: the ConfigMap is written back first, then the Deployment; its data is byte for byte that of the target revision', async (t) => {
  const ns = 'snap-c';
  // values whose bytes are easy to get wrong: newlines, trailing spaces, non-ASCII, JSON
  const v1 = { TIMEOUT: '5s', 'app.yaml': 'server:\n  port: 8080\n  greeting: "grüß dich"  \n', 'flags.json': '{"a":1, "b":[true,null]}' };
  await applyObj(configMap(ns, 'app-settings', v1));
  await deploy(ns, 'api', 'api:v1', 'app-settings');
  const atV1 = await getCm(ns, 'app-settings');
  const first = await cluster.poll('a snapshot of the first content', () => snapshotsOf(ns, 'app-settings'), (s) => s.length === 1, 30_000);
  t.same(first[0]!.data, v1, 'the snapshot holds the content');
  t.equal(first[0]!.immutable, true, 'immutable');
  t.same(first[0]!.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.uid]), [['ConfigMap', 'app-settings', atV1.metadata.uid]], 'owned by the live ConfigMap');
  await nextSecond();
  // the bad deploy: the ConfigMap edited in place (a key changed, one added, one removed) and a new image
  await kubectl(['patch', 'configmap', '-n', ns, 'app-settings', '--type=merge', '-p', JSON.stringify({ data: { TIMEOUT: '50ms', 'flags.json': null, EXTRA: 'on' } })]);
  await deploy(ns, 'api', 'api:v2', 'app-settings');
  await cluster.poll('a snapshot of the edited content', () => snapshotsOf(ns, 'app-settings'), (s) => s.length === 2, 30_000);

  await engine.handle({ id: 'ev-c', alert: alert(ns, 'api'), deliveries: 1 });
  await engine.idle();
  await notifications.flush();
  const rec = (await engine.records.list({})).find((r) => r.target === `Deployment/${ns}/api`) as RollbackRecord;
  t.ok(rec, 'a record');
  t.equal(rec.state, 'unverified', `${rec.outcome?.message} (no Prometheus here to re-check; the rollout and the restore were verified)`);
  await cluster.poll('api back at v1', () => getDep(ns, 'api'), (d) => settled(d, 'api:v1'), 60_000);
  const after = await getCm(ns, 'app-settings');
  t.same(after.data, atV1.data, 'the data of revision 1');
  t.equal(JSON.stringify(Object.entries(after.data!).sort()), JSON.stringify(Object.entries(atV1.data!).sort()), 'byte for byte');
  t.equal(after.metadata.uid, atV1.metadata.uid, 'the same object, written back in place');

  const restored = /^ConfigMap snap-c\/app-settings changed at \d\d:\d\d UTC, after revision 1 was created: restored first from snapshot app-settings-snap-[0-9a-f]{10} \(its content since \d\d:\d\d UTC, current when revision 1 was created\)$/;
  t.match(rec.plan?.configDrift?.[0], restored, 'the record says what was restored');
  t.match(rec.timeline.find((s) => s.step === 'config_drift')?.message, restored, 'on the timeline');
  t.match(rec.plan?.writes?.[0], { kind: 'ConfigMap', name: 'app-settings' }, 'the ConfigMap is the first write, before the Deployment');
  t.match(rec.plan?.writes?.[1], { kind: 'Deployment', name: 'api' });
  t.match(rec.timeline.find((s) => s.step === 'rollout')?.message, /^succeeded: .*; ConfigMap snap-c\/app-settings holds the restored content$/, 'verification covers the ConfigMap');
  t.notOk(rec.guards?.some((g) => g.guard === 'approval' && g.result !== 'allow'), 'no human needed: there was a snapshot');
  const started = notifier.sent.find((n) => n.kind === 'rollback_started' && n.title.includes(rec.target));
  t.ok(started?.lines.some((l) => restored.test(l.replace(/^Configuration: /, ''))), 'the "rollback in progress" notification says so');
  t.match(incidentReport(rec), /restored first from snapshot app-settings-snap-/, 'and the report');
});

t.test('(d) at most CONFIG_SNAPSHOTS_MAX snapshots per ConfigMap, the newest kept; the garbage collector deletes them with it', async (t) => {
  const ns = 'snap-d';
  await applyObj(configMap(ns, 'limits', { RPS: '0' }));
  await deploy(ns, 'worker', 'worker:v1', 'limits');
  await cluster.poll('a snapshot', () => snapshotsOf(ns, 'limits'), (s) => s.length === 1, 30_000);
  for (let i = 1; i <= 5; i++) {
    await nextSecond();
    await kubectl(['patch', 'configmap', '-n', ns, 'limits', '--type=merge', '-p', JSON.stringify({ data: { RPS: String(i * 100) } })]);
    await cluster.poll(`the snapshot of edit ${i}`, () => snapshotsOf(ns, 'limits'), (s) => s.at(-1)?.data?.RPS === String(i * 100) && s.length <= MAX, 30_000);
  }
  await snapshots.idle();
  const kept = await snapshotsOf(ns, 'limits');
  t.same(kept.map((s) => s.data?.RPS), ['300', '400', '500'], `${MAX} kept, the newest, oldest first`);
  for (const s of kept) {
    t.equal(s.immutable, true);
    t.match(s.metadata.labels, { 'rollguard.io/snapshot-of': 'limits', 'rollguard.io/current-since': /^\d+$/ });
  }

  await kubectl(['delete', 'configmap', '-n', ns, 'limits']);
  await cluster.poll('the snapshots deleted by the garbage collector', () => snapshotsOf(ns, 'limits'), (s) => s.length === 0, 90_000);
  t.pass('no snapshot of limits left');
});

t.test('(d2) a configuration-only rollback: the ConfigMap gets its previous content back and its Deployment is restarted', async (t) => {
  const ns = 'snap-d2';
  const good = { FLAG: 'off', TIMEOUT: '5s', 'app.properties': 'pool.size=8\nretry=3\n' };
  await applyObj(configMap(ns, 'features', good));
  await deploy(ns, 'shop', 'shop:v1', 'features');
  await cluster.poll('a snapshot of the good content', () => snapshotsOf(ns, 'features'), (s) => s.length === 1, 30_000);
  await nextSecond();
  // the bad change: the ConfigMap alone, edited in place; no new revision of the Deployment
  await kubectl(['patch', 'configmap', '-n', ns, 'features', '--type=merge', '-p', JSON.stringify({ data: { FLAG: 'on', TIMEOUT: '1ms', 'app.properties': null } })]);
  await cluster.poll('a snapshot of the bad content', () => snapshotsOf(ns, 'features'), (s) => s.length === 2, 30_000);
  const rsBefore = (await cluster.request<{ items: { metadata: { name: string } }[] }>('GET', `/apis/apps/v1/namespaces/${ns}/replicasets?labelSelector=app%3Dshop`)).items.map((r) => r.metadata.name);
  t.equal(rsBefore.length, 1, 'one revision of shop');

  await engine.handle({ id: 'ev-d2', alert: firingNow('ConfigBroken', 'shop', { labels: { alertname: 'ConfigBroken', namespace: ns, configmap: 'features' } }), deliveries: 1 });
  await engine.idle();
  await notifications.flush();
  const rec = (await engine.records.list({})).find((r) => r.target === `ConfigMap/${ns}/features`) as RollbackRecord;
  t.ok(rec, 'a record for the ConfigMap');
  t.equal(rec.state, 'unverified', `${rec.outcome?.message} (no Prometheus here to re-check; the restore and the restart were verified)`);
  const after = await getCm(ns, 'features');
  t.same(after.data, good, 'the previous content, byte for byte (the removed key back)');
  t.match(after.metadata.annotations?.['rollguard.io/restored-from'], /^features-snap-[0-9a-f]{10}$/);
  const dep = await cluster.request<{ spec: { template: { metadata: { annotations?: Record<string, string> } } } }>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/shop`);
  t.match(dep.spec.template.metadata.annotations?.['kubectl.kubernetes.io/restartedAt'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'restarted as kubectl rollout restart does');
  const rsAfter = (await cluster.request<{ items: { metadata: { name: string } }[] }>('GET', `/apis/apps/v1/namespaces/${ns}/replicasets?labelSelector=app%3Dshop`)).items.map((r) => r.metadata.name);
  t.equal(rsAfter.length, 2, 'the restart made a new ReplicaSet: its pods read the restored content');
  await cluster.poll('shop settled after the restart', () => getDep(ns, 'shop'), (d) => settled(d, 'shop:v1'), 60_000);
  t.match(rec.plan?.writes?.map((w) => `${w.kind}/${w.name}`), ['ConfigMap/features', 'Deployment/shop'], 'the restore, then the restart');
  t.match(rec.timeline.find((s) => s.step === 'rollout')?.message, /^succeeded: ConfigMap snap-d2\/features holds the content of snapshot features-snap-[0-9a-f]{10}; deployment "shop" successfully rolled out/, 'verification covers both');
  t.match(rec.plan?.summary, /^restore ConfigMap snap-d2\/features from snapshot features-snap-[0-9a-f]{10} \(its content since .*, the one before the live content\), then restart deployment shop$/);
  t.ok(notifier.sent.some((n) => n.kind === 'rollback_started' && n.title.includes(rec.target)), 'notified');
  t.match(incidentReport(rec), /restore ConfigMap snap-d2\/features from snapshot/, 'the report says what was restored');
});
