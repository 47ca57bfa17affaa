// A configuration-only rollback (kind: ConfigMap) on plain objects: the previous snapshot back,
// the workloads using it restarted as `kubectl rollout restart` does, its refusals, the conflict
// rule, and verification. The same on the real control plane: test/e2e/config-snapshots.test.ts.
import t from 'tap';
import { configMapAction, MAX_RESTARTS, RESTARTED_AT, RESTORED_FROM, RESTORED_HASH } from '../../../src/actions/configmap.js';
import { parseOptions, writtenObjects } from '../../../src/actions/index.js';
import { snapshotObject } from '../../../src/config-deps/snapshots.js';
import { RESOURCES, type KubeObject, type ResourceType } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { parseRuleFile } from '../../../src/rules/loader.js';
import { resolveTargets } from '../../../src/rules/targets.js';
import { changeCause } from '../../../src/engine/messages.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { summarisePlan } from '../../../src/engine/change.js';
import { lockName } from '../../../src/guards/lock.js';
import { testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { SNAPSHOT_KEY } from '../../support/snapshots.js';
import { CAUSE, NS, context as baseContext, deployment } from './fixtures/objects.js';

/** An action context with CONFIG_SNAPSHOTS on: its key signs and checks the snapshots. */
const context = (kube: FakeKube | null) => baseContext(kube, { snapshotKey: SNAPSHOT_KEY });

const CM = RESOURCES.configmaps;
const T0 = Date.parse('2026-11-20T14:00:00Z');
const T1 = Date.parse('2026-11-20T14:02:00Z');

function configMap(data: Record<string, string>, at: number): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app-config', namespace: NS, uid: 'cm-uid', creationTimestamp: '2026-11-01T00:00:00Z', managedFields: [{ time: new Date(at).toISOString() }] }, data };
}
/** web uses app-config through envFrom; api does not use it; worker (a StatefulSet) mounts it. */
function cluster(opts: { paused?: boolean; onDelete?: boolean; snapshots?: boolean } = {}): FakeKube {
  const kube = new FakeKube();
  const good = kube.add(CM, configMap({ TIMEOUT: '5s', MODE: 'safe' }, T0));
  if (opts.snapshots !== false) kube.add(CM, snapshotObject(good, 'ConfigMap', T0, SNAPSHOT_KEY));
  // the bad edit, in place: same object, new content
  const live = kube.peek(CM, NS, 'app-config')!;
  live.data = { TIMEOUT: '50ms', FEATURE: 'on' };
  live.metadata.managedFields = [{ time: new Date(T1).toISOString() }];
  kube.put(CM, live);
  if (opts.snapshots !== false) kube.add(CM, snapshotObject(live, 'ConfigMap', T1, SNAPSHOT_KEY));
  const web = deployment('shop/web:1', 2, opts.paused ? { paused: true } : {});
  web.spec.template.spec.containers[0].envFrom = [{ configMapRef: { name: 'app-config' } }];
  kube.add(RESOURCES.deployments, web);
  kube.add(RESOURCES.deployments, { ...deployment('shop/api:1', 1), metadata: { ...deployment('shop/api:1', 1).metadata, name: 'api', uid: 'api-uid' } });
  kube.add(RESOURCES.statefulsets, {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'worker', namespace: NS, generation: 1 },
    spec: {
      replicas: 1,
      updateStrategy: { type: opts.onDelete ? 'OnDelete' : 'RollingUpdate' },
      template: { metadata: { labels: { app: 'worker' } }, spec: { containers: [{ name: 'w', image: 'shop/worker:1' }], volumes: [{ name: 'cfg', configMap: { name: 'app-config' } }] } },
    },
    status: { observedGeneration: 1, readyReplicas: 1, currentRevision: 'worker-1', updateRevision: 'worker-1', currentReplicas: 1 },
  });
  return kube;
}
const ref = { kind: 'ConfigMap' as const, namespace: NS, name: 'app-config' };

t.test('the content before the live one back, then every workload using it restarted', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const before = Date.now();
  const plan = await configMapAction.plan(ref, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? '');
  const snap = plan.writes![0]!.description.match(/snapshot (\S+)/)![1]!;
  t.match(plan.summary, new RegExp(`^restore ConfigMap ${NS}/app-config from snapshot ${snap} \\(its content since .*14:00.*, the one before the live content\\), then restart deployment web, statefulset worker$`));
  t.same(writtenObjects(plan), [
    { kind: 'ConfigMap', namespace: NS, name: 'app-config' },
    { kind: 'Deployment', namespace: NS, name: 'web' },
    { kind: 'StatefulSet', namespace: NS, name: 'worker' },
  ], 'the restore first; api does not use it and is left alone');
  t.equal(plan.writes![0]!.precondition, 'resource-version');
  t.equal(plan.writes![0]!.configBefore, undefined, "this kind's restore is the rollback itself: never written back if a restart after it does not land");
  t.match(plan.current, { createdAt: T1, what: /^the current content of ConfigMap shop\/app-config \(since / }, 'the recent-deploy guard measures the edit');
  t.equal(plan.current!.revision, undefined);

  const res = await configMapAction.execute(plan, ctx);
  t.equal(res.applied, true, res.message);
  t.equal(ctx.fenceCalls, 3, 'the fence is checked before each write');
  const live = kube.peek(CM, NS, 'app-config')!;
  t.same(live.data, { TIMEOUT: '5s', MODE: 'safe' }, 'the earlier content, byte for byte (FEATURE removed)');
  t.equal(live.metadata.annotations![RESTORED_FROM], snap);
  t.equal(live.metadata.annotations!['kubernetes.io/change-cause'], CAUSE);
  for (const [rt, name] of [[RESOURCES.deployments, 'web'], [RESOURCES.statefulsets, 'worker']] as const) {
    const at = kube.peek(rt, NS, name)!.spec.template.metadata.annotations[RESTARTED_AT] as string;
    t.match(at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, `${name}: restartedAt in kubectl's RFC 3339 form`);
    t.ok(Date.parse(at) >= Math.floor(before / 1000) * 1000, `${name}: restarted now`);
  }
  t.notOk(kube.peek(RESOURCES.deployments, NS, 'api')!.spec.template.metadata?.annotations?.[RESTARTED_AT], 'api untouched');

  // the controllers catch up: generation observed, replicas updated
  for (const rt of [RESOURCES.deployments, RESOURCES.statefulsets]) {
    const name = rt === RESOURCES.deployments ? 'web' : 'worker';
    const o = kube.peek(rt, NS, name)!;
    o.status = { ...o.status, observedGeneration: o.metadata.generation };
    kube.put(rt, o);
  }
  const v = await configMapAction.verify(plan, ctx, { timeoutMs: 2000, pollMs: 5, execution: res });
  t.equal(v.outcome, 'succeeded', v.message);
  t.match(v.message, new RegExp(`ConfigMap ${NS}/app-config holds the content of snapshot ${snap}; deployment "web" successfully rolled out; statefulset rolling update complete`));

  const again = await configMapAction.plan(ref, ctx);
  t.equal(again.refusal?.code, 'already_matches', 'a second alert does not go one content further back (that would put the bad content back)');
  t.match(again.refusal?.message, `already holds the content rollguard restored from snapshot ${snap}`);
});

t.test('refusals, each naming what to change; nothing written', async (t) => {
  const none = cluster({ snapshots: false });
  const p1 = await configMapAction.plan(ref, context(none));
  t.equal(p1.refusal?.code, 'no_history');
  t.match(p1.refusal?.message, /no snapshot of ConfigMap shop\/app-config: .*turn on CONFIG_SNAPSHOTS \(chart: configSnapshots.enabled\)/);

  const paused = cluster({ paused: true });
  const p2 = await configMapAction.plan(ref, context(paused));
  t.equal(p2.refusal?.code, 'paused');
  t.match(p2.refusal?.message, `deployments.apps "web" can't restart paused deployment (run rollout resume first); ConfigMap ${NS}/app-config was not restored either`);

  const onDelete = cluster({ onDelete: true });
  const p3 = await configMapAction.plan(ref, context(onDelete));
  t.equal(p3.refusal?.code, 'unsupported');
  t.match(p3.refusal?.message, 'statefulset "worker" uses the OnDelete update strategy: a restart would replace none of its pods');

  const p4 = await configMapAction.plan({ ...ref, name: 'nope' }, context(cluster()));
  t.same(p4.refusal, { code: 'not_found', message: 'configmaps "nope" not found' });
  for (const k of [none, paused, onDelete]) t.same(k.patches(), [], 'nothing written');

  const p5 = await configMapAction.plan(ref, context(null));
  t.equal(p5.refusal?.code, 'no_cluster');
});

t.test('restart: false restores only; the rule param and the options schema', async (t) => {
  const kube = cluster();
  const plan = await configMapAction.plan({ ...ref, options: { restart: false } }, context(kube));
  t.equal(plan.writes!.length, 1);
  t.match(plan.summary, /\(restart: false: its workloads are not restarted\)$/);
  t.same(parseOptions('ConfigMap', { restart: false }), { restart: false });
  t.throws(() => parseOptions('ConfigMap', { restart: 'no' }), /options\.restart/);
  t.throws(() => parseOptions('ConfigMap', { stable: 'x' }), /options\.stable: not an option of ConfigMap \(it takes restart\)/);

  const r = parseRuleFile('t.yaml', 'rules:\n  - name: bad-config\n    match: { alertname: ConfigBroken }\n    target: { kind: ConfigMap, namespace: shop, name: app-config, params: { restart: "false" } }\n    trigger: { kind: deployment_failed, for: 5m }\n    priority: P1\n');
  t.same(r.errors, []);
  t.same(resolveTargets(r.rules[0]!.targets, {}), [{ kind: 'ConfigMap', namespace: 'shop', name: 'app-config', options: { restart: false } }]);
  const bad = parseRuleFile('t.yaml', 'rules:\n  - name: t\n    match: { alertname: A }\n    target: { kind: ConfigMap, namespace: shop, name: x, params: { restart: "no" } }\n    trigger: { kind: deployment_failed, for: 5m }\n    priority: P1\n');
  t.same(bad.errors.map((e) => e.field), ['rules[0].target.params.restart']);
  t.match(bad.errors[0]!.message, /one of true, false/);
});

t.test('a conflict: re-planned from a fresh read, but an edit of the content since the plan writes nothing', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await configMapAction.plan(ref, ctx);
  // someone edits the ConfigMap between plan and execute
  const live = kube.peek(CM, NS, 'app-config')!;
  live.data = { TIMEOUT: '1s' };
  kube.put(CM, live);
  const res = await configMapAction.execute(plan, ctx);
  t.equal(res.applied, false);
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.match(res.message, `ConfigMap ${NS}/app-config was edited after the rollback was planned; not restoring over the new content automatically`);
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '1s' }, 'the new edit stays');

  // only its labels changed: the same content, so the fresh plan goes on
  const k2 = cluster();
  const c2 = context(k2);
  const p2 = await configMapAction.plan(ref, c2);
  const l2 = k2.peek(CM, NS, 'app-config')!;
  l2.metadata.labels = { team: 'shop' };
  k2.put(CM, l2);
  const r2 = await configMapAction.execute(p2, c2);
  t.equal(r2.applied, true, r2.message);
  t.equal(r2.attempts, 2);
  t.same(k2.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '5s', MODE: 'safe' });
});

t.test('verify: the restored content must stay, and each restart must finish', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await configMapAction.plan(ref, ctx);
  const res = await configMapAction.execute(plan, ctx);
  // the restarts are not observed yet
  const w = await configMapAction.verify(plan, ctx, { timeoutMs: 40, pollMs: 5, execution: res });
  t.equal(w.outcome, 'unverified');
  t.match(w.message, /restart of deployment web: .*Waiting for deployment spec update to be observed/);
  // someone writes the bad content back
  const live = kube.peek(CM, NS, 'app-config')!;
  live.data = { TIMEOUT: '50ms', FEATURE: 'on' };
  kube.put(CM, live);
  const f = await configMapAction.verify(plan, ctx, { timeoutMs: 40, pollMs: 5, execution: res });
  t.equal(f.outcome, 'failed');
  t.match(f.message, /no longer holds the content of snapshot .*: it changed again after the restore/);

  kube.failNext('get', new KubeApiError({ status: 403, reason: 'Forbidden', message: 'configmaps "app-config" is forbidden', operation: 'GET' }));
  const u = await configMapAction.verify(plan, ctx, { timeoutMs: 40, pollMs: 5, execution: res });
  t.equal(u.outcome, 'unverified');
  t.match(u.message, /cannot check ConfigMap shop\/app-config against snapshot .*forbidden/);
});

t.test('the restored content is known by its hash: pruning or deleting the snapshot does not let a second alert go further back', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await configMapAction.plan(ref, ctx);
  await configMapAction.execute(plan, ctx);
  const live = kube.peek(CM, NS, 'app-config')!;
  t.match(live.metadata.annotations![RESTORED_HASH], /^[0-9a-f]{64}$/);
  // every snapshot gone (pruned by CONFIG_SNAPSHOTS_MAX, or deleted by someone), then the watcher's snapshot of the restored content
  for (const [k, { obj }] of kube.objects) if (obj.metadata.labels?.['rollguard.io/snapshot-of']) kube.objects.delete(k);
  kube.add(CM, snapshotObject(live, 'ConfigMap', Date.now(), SNAPSHOT_KEY));
  const again = await configMapAction.plan(ref, ctx);
  t.equal(again.refusal?.code, 'already_matches');
  t.match(again.refusal?.message, /already holds the content rollguard restored from snapshot/);
});

t.test('the live content must be the newest snapshot: an edit the watcher did not see leaves "the one before" unknown', async (t) => {
  const kube = cluster();
  const live = kube.peek(CM, NS, 'app-config')!;
  live.data = { TIMEOUT: '9s' };
  kube.put(CM, live);
  const plan = await configMapAction.plan(ref, context(kube));
  t.equal(plan.refusal?.code, 'no_history');
  t.match(plan.refusal?.message, /the live content of ConfigMap shop\/app-config was never snapshotted \(the newest snapshot, app-config-snap-[0-9a-f]{10}, holds another content\)/);
});

t.test('a workload that starts using it between plan and write is not restarted unchecked', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await configMapAction.plan(ref, ctx);
  const late = deployment('shop/late:1', 1);
  late.metadata = { ...late.metadata, name: 'late', uid: 'late-uid' };
  late.spec.template.spec.volumes = [{ name: 'c', configMap: { name: 'app-config' } }];
  kube.add(RESOURCES.deployments, late);
  // a label change forces the conflict and the re-plan
  const live = kube.peek(CM, NS, 'app-config')!;
  live.metadata.labels = { team: 'shop' };
  kube.put(CM, live);
  const res = await configMapAction.execute(plan, ctx);
  t.equal(res.applied, false);
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.match(res.message, 'the workloads using ConfigMap shop/app-config changed after the rollback was planned (Deployment/shop/late)');
  t.same(kube.patches().filter((c) => !c.dryRun).length, 1, 'only the conflicting first attempt was sent (and refused by the API server)');
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '50ms', FEATURE: 'on' }, 'nothing restored');
});

t.test(`more than ${MAX_RESTARTS} workloads using it: a human's call`, async (t) => {
  const kube = cluster();
  for (let i = 0; i < MAX_RESTARTS; i++) {
    const d = deployment('shop/x:1', 1);
    d.metadata = { ...d.metadata, name: `user-${i}`, uid: `u-${i}` };
    d.spec.template.spec.containers[0].envFrom = [{ configMapRef: { name: 'app-config' } }];
    kube.add(RESOURCES.deployments, d);
  }
  const plan = await configMapAction.plan(ref, context(kube));
  t.equal(plan.refusal?.code, 'unsupported');
  t.match(plan.refusal?.message, `more than ${MAX_RESTARTS} workloads in shop use ConfigMap shop/app-config`);
  t.ok((await configMapAction.plan({ ...ref, options: { restart: false } }, context(kube))).writes, 'restart: false still restores');
});

t.test('a forged snapshot (labels, annotations and ownerReference copied, no valid signature) is never restored', async (t) => {
  const kube = cluster();
  const live = kube.peek(CM, NS, 'app-config')!;
  // whoever may create ConfigMaps writes a look-alike: newer than everything, their content
  const forged = snapshotObject({ ...live, data: { TIMEOUT: '1ms', BACKDOOR: 'on' } }, 'ConfigMap', Date.parse('2030-01-01T00:00:00Z'), 'attacker-key-0123456789abcdef-0123456789');
  kube.add(CM, forged);
  const unkeyed = await configMapAction.plan(ref, baseContext(kube));
  t.equal(unkeyed.refusal?.code, 'no_history', 'without the key (CONFIG_SNAPSHOTS off) no snapshot counts');
  const plan = await configMapAction.plan(ref, context(kube));
  t.notOk(plan.refusal, plan.refusal?.message ?? '');
  await configMapAction.execute(plan, context(kube));
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '5s', MODE: 'safe' }, 'the real previous content, not the forged one');
});

/** The restore written alone, as a replica that died before its restarts left it; returns the first plan. */
async function restoredOnly(kube: FakeKube, ctx: ReturnType<typeof context>) {
  const plan = await configMapAction.plan(ref, ctx);
  const res = await configMapAction.execute({ ...plan, writes: plan.writes!.slice(0, 1) }, ctx);
  if (!res.applied) throw new Error(res.message);
  return plan;
}

const restartedAt = (kube: FakeKube, rt: ResourceType, name: string) => kube.peek(rt, NS, name)!.spec.template.metadata?.annotations?.[RESTARTED_AT] as string | undefined;

t.test('cut off after the restore, before the restarts: its recovery goes on with the restarts not written yet; anything else is refused', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const recovering = baseContext(kube, { snapshotKey: SNAPSHOT_KEY, recovering: true });
  const first = await restoredOnly(kube, ctx);
  const snap = first.writes![0]!.description.match(/snapshot (\S+)/)![1]!;
  t.notOk(restartedAt(kube, RESOURCES.deployments, 'web'), 'web not restarted: the replica died there');

  t.equal((await configMapAction.plan(ref, ctx)).refusal?.code, 'already_matches', 'not recovering (a new alert, an approval, a manual rollback): refused as before');
  const other = await configMapAction.plan(ref, baseContext(kube, { snapshotKey: SNAPSHOT_KEY, recovering: true, changeCause: 'rollguard: rule x, alert y, rollback rb-other' }));
  t.equal(other.refusal?.code, 'already_matches', 'recovering another rollback (another change cause): refused');

  const resume = await configMapAction.plan(ref, recovering);
  t.notOk(resume.refusal, resume.refusal?.message ?? '');
  t.equal(resume.resumes, true);
  t.equal(resume.summary, `ConfigMap ${NS}/app-config already holds the content of snapshot ${snap}, restored by this rollback before it was cut off; go on: restart deployment web, statefulset worker`);
  t.same(writtenObjects(resume), writtenObjects(first), 'the objects of the first plan: the restore again (unchanged), then both restarts');

  // web was restarted before the cut: only worker is restarted now; web is written again unchanged
  await configMapAction.execute({ ...resume, writes: resume.writes!.slice(0, 2) }, recovering);
  t.ok(restartedAt(kube, RESOURCES.deployments, 'web'), 'web restarted');
  // ... some seconds before the recovery
  const cut = kube.peek(RESOURCES.deployments, NS, 'web')!;
  cut.spec.template.metadata.annotations[RESTARTED_AT] = '2026-11-20T14:05:00Z';
  kube.put(RESOURCES.deployments, cut);
  const web = kube.peek(RESOURCES.deployments, NS, 'web')!;
  const rest = await configMapAction.plan(ref, recovering);
  t.match(rest.summary, /go on: restart statefulset worker$/, 'a workload carrying this change cause and a restartedAt was restarted already');
  t.same(writtenObjects(rest), writtenObjects(first), 'still counted: cooldowns, locks and verification see it');
  const res = await configMapAction.execute(rest, recovering);
  t.equal(res.applied, true, res.message);
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '5s', MODE: 'safe' }, 'the restored content, unchanged');
  t.equal(kube.peek(CM, NS, 'app-config')!.metadata.annotations![RESTORED_FROM], snap);
  t.ok(restartedAt(kube, RESOURCES.statefulsets, 'worker'), 'worker restarted');
  const webAfter = kube.peek(RESOURCES.deployments, NS, 'web')!;
  t.equal(webAfter.metadata.generation, web.metadata.generation, 'web not restarted twice: no new generation');
  t.equal(restartedAt(kube, RESOURCES.deployments, 'web'), '2026-11-20T14:05:00Z', 'its restartedAt as the cut left it');
  t.equal((await configMapAction.plan(ref, recovering)).refusal?.code, 'already_matches', 'every restart done: nothing left to go on with');
});

/** A ConfigMap rollback record in progress whose replica died after the restore (the first plan's objects on it). */
async function cutOffAfterRestore(kube: FakeKube) {
  const { engine, store, metrics } = testEngine({
    kube,
    actions: { ConfigMap: configMapAction },
    env: { CONFIG_SNAPSHOTS: 'true', CONFIG_SNAPSHOTS_KEY: SNAPSHOT_KEY, VERIFY_TIMEOUT: '100ms' },
    owner: 'replica-b',
  });
  const now = Date.now();
  const rec: RollbackRecord = {
    id: 'rb-cm-crash',
    target: `ConfigMap/${NS}/app-config`,
    state: 'in_progress',
    owner: 'replica-dead',
    createdAt: now,
    updatedAt: now,
    ref,
    source: 'manual',
    requestedBy: 'oncall',
    reason: 'bad config edit',
    guards: [],
    dryRun: false,
    times: { startedAt: now },
    timeline: [],
  };
  const first = await restoredOnly(kube, baseContext(kube, { snapshotKey: SNAPSHOT_KEY, changeCause: changeCause(rec) }));
  rec.plan = summarisePlan(first);
  await store.putRecord(rec as never);
  return { engine, store, metrics, rec };
}

t.test('recovery of a ConfigMap rollback whose replica died after the restore: the restarts are written under their locks, not taken as done', async (t) => {
  const kube = cluster();
  const { engine, store, rec } = await cutOffAfterRestore(kube);
  t.notOk(restartedAt(kube, RESOURCES.deployments, 'web'));

  // another rollback holds web's lock: not yet
  const other = await store.acquireLock(lockName(`Deployment/${NS}/web`), 'replica-c', 60_000);
  await engine.recoverIfOrphaned(rec);
  await engine.idle();
  t.notOk(restartedAt(kube, RESOURCES.deployments, 'web'), 'nothing written while an object it writes is locked elsewhere');
  t.equal((await engine.records.get(rec.id))!.state, 'in_progress', 'left for a later tick');
  t.ok(await store.acquireLock(lockName(rec.target), 'probe', 1), "the target's lock was given back");
  await store.releaseLock(other!);
  await new Promise((r) => setTimeout(r, 5));

  await engine.recoverIfOrphaned(rec);
  await engine.idle();
  t.ok(restartedAt(kube, RESOURCES.deployments, 'web'), 'web restarted by the recovery');
  t.ok(restartedAt(kube, RESOURCES.statefulsets, 'worker'), 'worker restarted by the recovery');
  t.equal(kube.peek(RESOURCES.deployments, NS, 'web')!.metadata.annotations?.['kubernetes.io/change-cause'], changeCause(rec), "with this rollback's change cause");
  const after = (await engine.records.get(rec.id))!;
  t.ok(after.times.executedAt, 'recorded as executed once the rest was written');
  t.ok(after.timeline.some((e) => e.step === 'resumed' && /go on: restart deployment web, statefulset worker/.test(e.message)), after.timeline.map((e) => `${e.step}: ${e.message}`).join('\n'));
  t.not(after.state, 'interrupted');
});

t.test('recovery that would restart a workload its first plan did not write: escalated, nothing written', async (t) => {
  const kube = cluster();
  const { engine, rec } = await cutOffAfterRestore(kube);
  // a DaemonSet starts using the ConfigMap after the first plan (the guards never checked it)
  kube.add(RESOURCES.daemonsets, {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent', namespace: NS, generation: 1 },
    spec: { updateStrategy: { type: 'RollingUpdate' }, template: { metadata: { labels: { app: 'agent' } }, spec: { containers: [{ name: 'a', image: 'shop/agent:1', envFrom: [{ configMapRef: { name: 'app-config' } }] }] } } },
    status: { observedGeneration: 1, desiredNumberScheduled: 1, updatedNumberScheduled: 1, numberAvailable: 1 },
  });
  await engine.recoverIfOrphaned(rec);
  await engine.idle();
  const after = (await engine.records.get(rec.id))!;
  t.equal(after.state, 'interrupted');
  t.match(after.outcome?.message, /going on would write objects its plan did not \(DaemonSet\/shop\/agent\): not executed again; escalated/);
  t.notOk(restartedAt(kube, RESOURCES.deployments, 'web'), 'nothing restarted');
  t.notOk(restartedAt(kube, RESOURCES.daemonsets, 'agent'));
});
