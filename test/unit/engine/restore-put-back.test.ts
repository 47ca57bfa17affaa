// configDrift: restore through the engine with the real Deployment action over the in-memory Kube:
// the drifted ConfigMap is restored first, then a new revision is deployed before the workload's
// write lands (changed_since_plan). The revision still running must not be left with the older
// revision's configuration: rollguard writes the ConfigMap's content from before the restore back
// and says so. Changed again since the restore: found written back by someone else, written back
// again (only its metadata changed), or left as it is (newer content); only a ConfigMap that cannot
// be put back (the tries used up) ends the rollback `error`, escalated, naming it.
import t from 'tap';
import { deploymentAction } from '../../../src/actions/deployment.js';
import { snapshotObject } from '../../../src/config-deps/snapshots.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { metricValue } from '../../support/app.js';
import { firing, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { SNAPSHOT_KEY } from '../../support/snapshots.js';
import { NS, podTemplate, replicaSet, standardCluster } from '../actions/fixtures/objects.js';

const CM = RESOURCES.configmaps;
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

const RULE = `
rules:
  - name: web-errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: shop, name: web }
    trigger: { kind: error_rate, selector: { namespace: shop }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    guards: { configDrift: restore }
`;

/** web at revision 2; revision 1 uses ConfigMap app-config, edited in place since; both contents snapshotted. */
function cluster(o: { deployV3?: boolean } = {}): FakeKube {
  const now = Date.now();
  const T0 = now - 3 * 24 * 60 * MIN; // the content revision 1 was created with (a day later)
  const T1 = now - 9 * MIN; // edited in place with revision 2 (deployed 10 minutes ago, before the alert)
  const kube = standardCluster();
  kube.add(RESOURCES.replicasets, replicaSet('web-bb02', 'web:v2', 2, { createdAt: iso(now - 10 * MIN) }));
  const v1 = replicaSet('web-aa01', 'web:v1', 1, { createdAt: iso(now - 2 * 24 * 60 * MIN) });
  v1.spec.template.spec.containers[0].envFrom = [{ configMapRef: { name: 'app-config' } }];
  kube.add(RESOURCES.replicasets, v1);
  const cm = (data: Record<string, string>, at: number): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app-config', namespace: NS, uid: 'cm-uid', creationTimestamp: '2026-11-01T00:00:00Z', managedFields: [{ time: new Date(at).toISOString() }] }, data });
  const old = kube.add(CM, cm({ TIMEOUT: '5s', MODE: 'safe' }, T0));
  kube.add(CM, snapshotObject(old, 'ConfigMap', T0, SNAPSHOT_KEY));
  kube.put(CM, { ...kube.peek(CM, NS, 'app-config')!, ...cm({ TIMEOUT: '50ms', FEATURE: 'on' }, T1) });
  kube.add(CM, snapshotObject(kube.peek(CM, NS, 'app-config')!, 'ConfigMap', T1, SNAPSHOT_KEY));
  // revision 3 is deployed right after the restore lands, before the workload's write
  if (o.deployV3 === false) return kube;
  let deployed = false;
  kube.onPatch = (rt) => {
    if (rt.plural !== 'configmaps' || deployed) return;
    deployed = true;
    kube.add(RESOURCES.replicasets, replicaSet('web-cc03', 'web:v3', 3, { createdAt: new Date().toISOString() }));
    const d = kube.peek(RESOURCES.deployments, NS, 'web')!;
    d.spec.template = podTemplate('web:v3');
    d.metadata.generation = 3;
    d.metadata.annotations!['deployment.kubernetes.io/revision'] = '3';
    kube.put(RESOURCES.deployments, d);
  };
  return kube;
}

function engine(kube: FakeKube) {
  return testEngine({ kube, actions: { Deployment: deploymentAction }, ruleText: RULE, env: { CONFIG_SNAPSHOTS: 'true', CONFIG_SNAPSHOTS_KEY: SNAPSHOT_KEY } });
}

const alert = () => firing('HighErrorRate', 'web', { labels: { alertname: 'HighErrorRate', namespace: NS, deployment: 'web' } });

t.test('put back: refused, the ConfigMap holds the running revision 3 content again, and the record and the notification say so', async (t) => {
  const kube = cluster();
  const e = engine(kube);
  await e.deliver(alert());
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'refused', rec.outcome?.message ?? JSON.stringify(rec.timeline.slice(-3)));
  t.match(rec.outcome!.message, /moved from revision 2 to 3/);
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '50ms', FEATURE: 'on' }, 'the content revision 3 runs with, as before the restore (fails before: the restored content of revision 1 stays)');
  t.ok(rec.timeline.some((s) => s.step === 'put_back' && /ConfigMap shop\/app-config: its content before the restore written back/.test(s.message)));
  await e.notifications.flush();
  const n = e.notifier.sent.find((x) => x.kind === 'rollback_refused')!;
  t.match(n.lines.join('\n'), /ConfigMap shop\/app-config: its content before the restore written back/, 'the refusal names the ConfigMap');
});

/** Someone changes the ConfigMap after the restore landed, before rollguard writes it back. */
function changeAfterRestore(kube: FakeKube, change: (cur: KubeObject) => KubeObject): void {
  let edited = false;
  kube.failNext('patch', (c) => {
    if (c.resource === 'deployments' && !edited) {
      edited = true;
      kube.put(CM, change(kube.peek(CM, NS, 'app-config')!));
    }
    return null;
  });
}

t.test('newer content written after the restore (the release applies its own configuration): left as it is, said, refused, not escalated, no advice to write the old content back', async (t) => {
  const kube = cluster();
  changeAfterRestore(kube, (cur) => ({ ...cur, data: { TIMEOUT: '1s' } }));
  const e = engine(kube);
  await e.deliver(alert());
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.match(rec.outcome!.message, /moved from revision 2 to 3.*; the configuration restored before the workload's write was changed again since, and left as it is: ConfigMap shop\/app-config was given newer content after the restore/);
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '1s' }, 'the newer content is left');
  t.ok(rec.timeline.some((s) => s.step === 'put_back' && /ConfigMap shop\/app-config was given newer content after the restore .*left as it is/.test(s.message)));
  await e.notifications.flush();
  t.notOk(e.notifier.sent.find((x) => x.kind === 'rollback_failed'), 'not escalated');
  const n = e.notifier.sent.find((x) => x.kind === 'rollback_refused')!;
  t.match(n.lines.join('\n'), /ConfigMap shop\/app-config was given newer content after the restore/, 'the refusal names it');
  t.notMatch(n.lines.join('\n'), /write back the content it had before/, 'no advice to revert the newer configuration');
  t.notOk(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'config_not_put_back' }), 'no config_not_put_back escalation');
});

t.test('the ConfigMap re-applied after the restore with the running revision content (a release re-applying it): put back by someone else, refused, not escalated', async (t) => {
  const kube = cluster();
  changeAfterRestore(kube, (cur) => ({ ...cur, data: { TIMEOUT: '50ms', FEATURE: 'on' } }));
  const e = engine(kube);
  await e.deliver(alert());
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '50ms', FEATURE: 'on' });
  t.ok(rec.timeline.some((s) => s.step === 'put_back' && /ConfigMap shop\/app-config: its content before the restore written back by someone else/.test(s.message)));
  await e.notifications.flush();
  t.notOk(e.notifier.sent.find((x) => x.kind === 'rollback_failed'), 'not escalated');
  t.notOk(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'config_not_put_back' }), 'no config_not_put_back escalation');
});

t.test('only a label added after the restore (content still the restored one): put back under the new resourceVersion, refused', async (t) => {
  const kube = cluster();
  changeAfterRestore(kube, (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { ...(cur.metadata.labels ?? {}), touched: 'yes' } } }));
  const e = engine(kube);
  await e.deliver(alert());
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '50ms', FEATURE: 'on' }, 'running revision 3 gets its configuration back');
  t.equal(kube.peek(CM, NS, 'app-config')!.metadata.labels?.touched, 'yes', 'the label is kept');
  t.ok(rec.timeline.some((s) => s.step === 'put_back' && /ConfigMap shop\/app-config: its content before the restore written back$/.test(s.message)));
});

t.test('the restored content still there but changed at every try to put it back: error, escalated, naming it and where its earlier content is kept', async (t) => {
  const kube = cluster();
  // a controller touching an annotation right before each of rollguard's writes back
  let workloadTried = false;
  let n = 0;
  kube.failNext('patch', (c) => {
    if (c.resource === 'deployments') workloadTried = true;
    else if (c.resource === 'configmaps' && workloadTried) {
      const cur = kube.peek(CM, NS, 'app-config')!;
      kube.put(CM, { ...cur, metadata: { ...cur.metadata, annotations: { ...(cur.metadata.annotations ?? {}), touched: String(++n) } } });
    }
    return null;
  });
  const e = engine(kube);
  await e.deliver(alert());
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'error', rec.outcome?.message ?? '');
  t.match(rec.outcome!.message, /not put back: ConfigMap shop\/app-config could not be put back \(it still holds what the restore wrote .*3 tries.*kubectl -n shop get configmaps -l rollguard.io\/snapshot-of=app-config/);
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '5s', MODE: 'safe' }, 'still the restored content');
  t.equal(n, 3, 'tried 3 times');
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'config_not_put_back' }), 1);
});

t.test("the workload's write refused by the API server (an admission webhook) after the restore: the ConfigMap is put back, and the escalation says so", async (t) => {
  const kube = cluster({ deployV3: false });
  kube.failNext('patch', (c) =>
    c.resource === 'deployments' ? new KubeApiError({ status: 403, reason: 'Forbidden', message: 'admission webhook "images.policy.example" denied the request: image web:v1 is not allowed', operation: 'PATCH' }) : null,
  );
  const e = engine(kube);
  await e.deliver(alert());
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'failed', rec.outcome?.message ?? '');
  t.match(rec.outcome!.message, /denied the request.*; the configuration restored before it was put back: ConfigMap shop\/app-config: its content before the restore written back/);
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '50ms', FEATURE: 'on' }, 'the content revision 2 runs with, as before the restore (fails before: the restored content of revision 1 stays)');
  t.equal(kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template.spec.containers[0].image, 'web:v2', 'the workload was not rolled back');
  await e.notifications.flush();
  t.match(e.notifier.sent.find((x) => x.kind === 'rollback_failed')!.lines.join('\n'), /ConfigMap shop\/app-config: its content before the restore written back/);
});
