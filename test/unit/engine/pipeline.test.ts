import t from 'tap';
import { writePause } from '../../../src/guards/pause.js';
import { lockName, rollbackHolder } from '../../../src/guards/lock.js';
import { CONCURRENCY_POOL } from '../../../src/guards/concurrency.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { metricValue } from '../../support/app.js';
import { FakeDeploymentAction, firing, testEngine } from '../../support/engine.js';

t.test('a confirmed P0 alert rolls back once, verified, with the whole timeline recorded', async (t) => {
  const e = testEngine();
  const alert = firing('HighErrorRate');
  e.prometheus!.value = 0.2;
  // Recovery: the error rate falls once the rollback has executed.
  const origExecute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await origExecute(p, c);
    e.prometheus!.value = 0.001;
    return r;
  };
  await e.deliver(alert);
  t.equal(e.action.executed.length, 1);
  t.match(e.action.executed[0]!.changeCause, /rollguard: rule error-rate, alert HighErrorRate \(fingerprint fp-HighErrorRate-checkout-\d+\), rollback rb-/);
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded');
  t.equal(rec!.target, 'Deployment/prod/checkout');
  t.same(rec!.guards.map((g) => `${g.guard}:${g.result}`), ['pause:allow', 'scope:allow', 'lock:allow', 'recent-deploy:allow', 'cooldown:allow', 'budget:allow', 'concurrency:allow', 'approval:allow', 'dry-run:allow']);
  const steps = rec!.timeline.map((s) => s.step);
  for (const s of ['alert_started', 'received', 'confirmed', 'decided', 'planned', 'started', 'executed', 'rollout', 'verified']) t.ok(steps.includes(s), `timeline has ${s}`);
  t.ok(rec!.times.decidedAt! <= rec!.times.startedAt! && rec!.times.startedAt! <= rec!.times.completedAt!);
  t.equal(await metricValue(e.metrics, 'rollguard_rollbacks_total', { rule: 'error-rate', outcome: 'succeeded', kind: 'Deployment', namespace: 'prod' }), 1);
  for (const h of ['rollguard_time_to_detect_seconds_count', 'rollguard_time_to_decide_seconds_count', 'rollguard_time_to_rollback_seconds_count', 'rollguard_time_to_recover_seconds_count']) {
    t.equal(await metricValue(e.metrics, h), 1, h);
  }
  await e.notifications.flush();
  t.same(e.notifier.sent.map((n) => n.kind), ['rollback_started', 'rollback_succeeded']);
  t.match(e.notifier.sent[0]!.lines.join('\n'), /Service: Deployment\/prod\/checkout[\s\S]*Reason: HighErrorRate \(error rate 20.00%, limit 5.00%\)[\s\S]*Impact: HighErrorRate on checkout[\s\S]*ETA: rollout within 10m/);
  t.match(e.notifier.sent[1]!.lines.join('\n'), /Error rate: 0.10% \(limit 5.00%\)[\s\S]*Health: rollout complete/);

  await e.deliver(alert);
  t.equal(e.action.executed.length, 1, 'a redelivered event finds the same record and does nothing');
  t.equal((await e.engine.records.list({})).length, 1);
});

t.test('two replicas sharing a store and handling the same alert at once: one rollback', async (t) => {
  const store = new MemoryStore();
  const action = new FakeDeploymentAction();
  action.executeDelayMs = 50;
  const a = testEngine({ store, action, owner: 'a' });
  const b = testEngine({ store, action, owner: 'b' });
  // both alive, as main.ts makes them before their workers start (a claim of a replica without a heartbeat is taken over)
  await a.engine.heartbeat();
  await b.engine.heartbeat();
  const alert = firing('HighErrorRate');
  const results = await Promise.allSettled([a.deliver(alert), b.deliver(alert)]);
  t.equal(action.executed.length, 1);
  const rejected = results.filter((r) => r.status === 'rejected');
  t.equal(rejected.length, 1, 'the second replica leaves the event queued');
  t.match(String((rejected[0] as PromiseRejectedResult).reason), /being evaluated by another replica; the event stays queued/);
  await b.deliver(alert);
  t.equal(action.executed.length, 1, 'its redelivery finds the record and does nothing');
  t.equal((await a.engine.records.list({})).length, 1);
});

t.test('a record left deciding by a dead replica is decided again by a live one', async (t) => {
  const store = new MemoryStore();
  const dead = testEngine({ store, owner: 'dead' });
  const live = testEngine({ store, owner: 'live' });
  const alert = firing('HighErrorRate');
  // The dead replica wrote the record (write-ahead), then died before deciding.
  dead.prometheus!.down = true;
  dead.prometheus!.queryRange = async () => {
    throw new Error('process killed');
  };
  await t.rejects(dead.deliver(alert));
  const [rec] = await store.listRecords({});
  t.equal(rec!.state, 'deciding');
  await live.engine.tick();
  t.equal((await store.getRecord(rec!.id))!.state, 'deciding', 'not while the record is fresh');
  await store.putRecord({ ...rec!, updatedAt: Date.now() - 60_000 });
  await dead.engine.heartbeat();
  await live.engine.tick();
  t.equal((await store.getRecord(rec!.id))!.state, 'deciding', 'not while its owner is alive');
  await store.deleteValue('replica:dead');
  await live.engine.tick();
  await live.engine.idle();
  const done = (await live.engine.records.get(rec!.id))!;
  t.equal(done.state, 'failed', done.outcome?.message ?? ''); // decided, executed, and (the fake error rate stays high) escalated
  t.ok(done.timeline.some((s) => s.step === 'recovery'));
  t.equal(live.action.executed.length, 1, 'executed once, by the live replica');
  t.equal(dead.action.executed.length, 0);
});

t.test('not confirmed by Prometheus (a dip in the window): nothing rolls back', async (t) => {
  const e = testEngine();
  e.prometheus!.value = 0.01;
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 0);
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'not_confirmed');
  t.match(rec!.outcome!.message, /not confirmed/);
});

t.test('P2 only notifies (hotfix forward)', async (t) => {
  const e = testEngine();
  await e.deliver(firing('MinorBug'));
  t.equal(e.action.executed.length, 0);
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'notified');
  await e.notifications.flush();
  t.same(e.notifier.sent.map((n) => n.kind), ['notify_only']);
});

t.test('Prometheus down: P0 trusts the alert, P1 holds and acts when Prometheus is back', async (t) => {
  const e = testEngine();
  e.prometheus!.down = true;
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 1, 'P0 acts (onPrometheusDown: act)');
  const p0 = (await e.engine.records.list({}))[0]!;
  t.equal(p0.confirmation!.outcome, 'prometheus_down');
  t.equal(p0.state, 'unverified', 'recovery cannot be verified while Prometheus is down');

  const held = testEngine();
  held.prometheus!.down = true;
  await held.deliver(firing('SlowBurn'));
  t.equal(held.action.executed.length, 0, 'P1 holds');
  const rec = (await held.engine.records.list({}))[0]!;
  t.equal(rec.state, 'held');
  t.ok(rec.dueAt! > Date.now());
  await held.engine.tick();
  t.equal(held.action.executed.length, 0, 'not before it is due');
  await held.store.putRecord({ ...rec, dueAt: Date.now() - 1 });
  held.prometheus!.down = false;
  await held.engine.tick();
  t.equal(held.action.executed.length, 1, 'acts on the re-check once Prometheus confirms');
});

t.test('one tick takes up every due held record, past the first page of the state (the oldest are not starved)', async (t) => {
  const e = testEngine();
  e.prometheus!.down = true;
  await e.deliver(firing('SlowBurn'));
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'held');
  // 250 held records, all due, created oldest first, each of its own target (one target's due work
  // is taken up one record at a time: each.ts); their rule is gone, so each is closed as expired.
  for (let i = 0; i < 250; i++) {
    const ref = { ...rec.ref, name: `svc-${i}` };
    await e.store.putRecord({ ...rec, id: `rb-held-${i}`, ref, target: `Deployment/${ref.namespace}/${ref.name}`, rule: 'no-longer-loaded', createdAt: rec.createdAt - 250_000 + i * 1000, dueAt: Date.now() - 1 });
  }
  await e.engine.tick();
  const left = await e.engine.records.list({ state: 'held', limit: 1000 });
  t.same(left.map((r) => r.id), [rec.id], 'only the record that is not yet due is still held');
  const expired = await e.engine.records.list({ state: 'expired', limit: 1000 });
  t.equal(expired.length, 250, 'every due record was taken up, the oldest included');
});

t.test('each guard blocks, with its reason in the record and the metric', async (t) => {
  const cases: { guard: string; setup: (e: ReturnType<typeof testEngine>) => Promise<void> | void; reason: RegExp; env?: Record<string, string>; state?: string }[] = [
    { guard: 'pause', setup: (e) => writePause(e.store, { by: 'sre', at: Date.now(), reason: 'incident freeze' }), reason: /paused \(by sre .*incident freeze/ },
    { guard: 'scope', env: { SCOPE_DENY_NAMESPACES: 'prod' }, setup: () => {}, reason: /namespace prod is denied/ },
    { guard: 'scope', env: { SCOPE_NAMESPACES: 'staging,dev' }, setup: () => {}, reason: /outside the allowed namespaces/ },
    { guard: 'scope', env: { SCOPE_DENY_TARGETS: 'Deployment/prod/check*' }, setup: () => {}, reason: /denied by Deployment\/prod\/check\*/ },
    {
      guard: 'lock',
      setup: async (e) => void (await e.store.acquireLock(lockName('Deployment/prod/checkout'), rollbackHolder('other-replica', 'rb-executing'), 60_000), await e.store.putRecord({ id: 'rb-executing', target: 'Deployment/prod/checkout', state: 'in_progress', createdAt: 1 })),
      reason: /another rollback of Deployment\/prod\/checkout is executing \(rb-executing; its lock is held\)/,
    },
    { guard: 'recent-deploy', setup: (e) => void (e.action.createdAt = Date.now() - 7 * 86_400_000), reason: /deployed 6d23h5\dm before the alert started, more than onlyIfDeployedWithin 1d: it is not a recent deploy/ },
    { guard: 'recent-deploy', setup: (e) => void (e.action.createdAt = Date.now() + 5 * 60_000), reason: /deployed [78]m after the alert started \(.*\): it is not the alert's cause but what was done about it meanwhile/ },
    { guard: 'concurrency', env: { MAX_CONCURRENT_ROLLBACKS: '1' }, setup: async (e) => void (await e.store.putRecord({ id: 'rb-other', target: 'Deployment/prod/other', state: 'in_progress', createdAt: 1 }), await e.store.acquireSlot(CONCURRENCY_POOL, 'rb-other', 1, 60_000)), reason: /1 rollback\(s\) already in flight \(Deployment\/prod\/other\)/ },
    { guard: 'dry-run', env: { DRY_RUN: 'true' }, setup: () => {}, reason: /dry-run is on for rollguard/, state: 'dry_run' },
  ];
  for (const c of cases) {
    const e = testEngine({ env: c.env ?? {} });
    await c.setup(e);
    await e.deliver(firing('HighErrorRate'));
    const rec = (await e.engine.records.list({})).find((r) => r.target === 'Deployment/prod/checkout')!;
    t.equal(e.action.executed.length, 0, `${c.guard}: nothing executed`);
    t.equal(rec.state, c.state ?? 'blocked', `${c.guard}: state`);
    const verdict = rec.guards.find((g) => g.result === 'block');
    t.equal(verdict?.guard, c.guard);
    t.match(verdict?.reason, c.reason, `${c.guard}: ${verdict?.reason}`);
    t.equal(await metricValue(e.metrics, 'rollguard_guard_blocked_total', { guard: c.guard }), 1, `${c.guard}: counted`);
  }
});

t.test('cooldown and budget: the same target again within the hour is blocked (no rollback storm)', async (t) => {
  const e = testEngine();
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 1);
  e.action.applied = false; // a new bad deploy of the same target
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 1, 'second alert blocked');
  const second = (await e.engine.records.list({}))[0]!;
  t.equal(second.guards.at(-1)!.guard, 'cooldown');
  t.match(second.guards.at(-1)!.reason, /was rolled back by rb-.* cooldown 30m until/);

  const noCooldown = `
rules:
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: prod, name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: prod }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { cooldown: 1ms, budget: { perTargetPerHour: 1 } }
`;
  const b = testEngine({ ruleText: noCooldown, env: { BUDGET_CLUSTER_PER_HOUR: '2' } });
  await b.deliver(firing('HighErrorRate'));
  await new Promise((r) => setTimeout(r, 5));
  b.action.applied = false;
  await b.deliver(firing('HighErrorRate'));
  const rec = (await b.engine.records.list({}))[0]!;
  t.equal(rec.guards.at(-1)!.guard, 'budget');
  t.match(rec.guards.at(-1)!.reason, /rolled back 1 time\(s\) in the last hour; budget perTargetPerHour is 1/);
  await b.deliver(firing('HighErrorRate', 'payments'));
  b.action.applied = false;
  await b.deliver(firing('HighErrorRate', 'search'));
  const cluster = (await b.engine.records.list({ target: 'Deployment/prod/search' }))[0]!;
  t.match(cluster.guards.at(-1)!.reason, /2 rollback\(s\) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 2/);
  t.equal(b.action.executed.length, 2);
});

t.test('approval: a P1 rule asking for it waits; approve runs it, reject ends it; expiry', async (t) => {
  const e = testEngine({ env: {} });
  await e.deliver(firing('HighLatency'));
  let rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'pending_approval');
  t.equal(rec.guards.at(-1)!.guard, 'approval');
  t.match(rec.guards.at(-1)!.reason, /the rule requires approval; waiting for approval \(expires in 10m\)/);
  t.equal(await metricValue(e.metrics, 'rollguard_guard_blocked_total', { guard: 'approval' }), 1);
  t.equal(e.action.executed.length, 0);
  const asked = e.notifier.sent.find((n) => n.kind === 'approval_requested');
  t.equal(asked?.lines.at(-1), `Answer: rollguard rollbacks approve ${rec.id} (or reject ${rec.id}) [--comment TEXT], or POST /v1/rollbacks/${rec.id}/approve (/reject) with the admin token`, 'the notification names the CLI and the API');
  const res = await e.engine.approve(rec.id, 'alice', 'go');
  t.equal(res.kind, 'ok');
  await e.engine.idle();
  t.equal(e.action.executed.length, 1);
  rec = (await e.engine.records.get(rec.id))!;
  t.equal(rec.approval!.by, 'alice');
  t.notOk(rec.state === 'pending_approval');

  const r = testEngine();
  await r.deliver(firing('HighLatency'));
  const pending = (await r.engine.records.list({}))[0]!;
  await r.engine.reject(pending.id, 'bob', 'hotfix instead');
  t.equal((await r.engine.records.get(pending.id))!.state, 'rejected');
  const again = await r.engine.approve(pending.id, 'alice');
  t.same(again, { kind: 'conflict', state: 'rejected' });

  const x = testEngine();
  await x.deliver(firing('HighLatency'));
  const p = (await x.engine.records.list({}))[0]!;
  await x.store.putRecord({ ...p, dueAt: Date.now() - 1 });
  await x.engine.tick();
  t.equal((await x.engine.records.get(p.id))!.state, 'expired');
  t.equal(x.action.executed.length, 0);
});

t.test('a revision annotated as carrying a schema migration waits for approval even on P0', async (t) => {
  const e = testEngine();
  e.action.annotations = { 'rollguard.io/schema-migration': 'true' };
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'pending_approval');
  t.match(rec.guards.at(-1)!.reason, /annotated rollguard.io\/schema-migration/);
});

t.test('a rollback that does not recover: failed, escalated once, no second rollback', async (t) => {
  const e = testEngine();
  e.prometheus!.value = 0.3; // stays bad after the rollback
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'failed');
  t.match(rec.outcome!.message, /trigger still holds/);
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'rollback_failed' }), 1);
  await e.notifications.flush();
  t.equal(e.notifier.sent.filter((n) => n.kind === 'rollback_failed').length, 1);
  e.action.applied = false;
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 1, 'the next alert is stopped by the cooldown');
});

t.test('a rollback left in progress by a dead replica: completed if applied, else interrupted; never executed twice', async (t) => {
  const e = testEngine();
  const base = { target: 'Deployment/prod/checkout', createdAt: Date.now(), updatedAt: Date.now(), ref: { kind: 'Deployment' as const, namespace: 'prod', name: 'checkout' }, source: 'alert' as const, rule: 'error-rate', guards: [], dryRun: false, timeline: [], owner: 'dead-replica', lockToken: 1, alert: { fingerprint: 'f', status: 'firing', labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'checkout' }, annotations: {}, startsAt: Date.now() - 60_000, receivedAt: Date.now(), generatorURL: '' } };
  await e.store.putRecord({ ...base, id: 'rb-applied', state: 'in_progress', times: { startedAt: Date.now(), executedAt: Date.now() } });
  e.prometheus!.value = 0.001;
  e.action.applied = true;
  await e.engine.tick();
  await e.engine.idle(); // the recovery verifies in the background
  const done = (await e.engine.records.get('rb-applied'))!;
  t.equal(done.state, 'succeeded', JSON.stringify(done.timeline.slice(-3)));
  t.ok(done.timeline.some((s) => s.step === 'recovery'));
  t.equal(e.action.executed.length, 0, 'verified, not executed');

  const f = testEngine();
  await f.store.putRecord({ ...base, id: 'rb-not-applied', state: 'in_progress', times: { startedAt: Date.now() } });
  f.action.applied = false;
  await f.engine.tick();
  const intr = (await f.engine.records.get('rb-not-applied'))!;
  t.equal(intr.state, 'interrupted');
  t.equal(f.action.executed.length, 0, 'not executed by the recovering replica');
  t.equal(await metricValue(f.metrics, 'rollguard_escalations_total', { reason: 'interrupted' }), 1);

  const alive = testEngine();
  await alive.store.putRecord({ ...base, id: 'rb-owner-alive', state: 'in_progress', times: { startedAt: Date.now() } });
  await alive.store.acquireLock(lockName('Deployment/prod/checkout'), 'dead-replica', 60_000);
  await alive.engine.tick();
  t.equal((await alive.engine.records.get('rb-owner-alive'))!.state, 'in_progress', 'left alone while its owner holds the lock');
});

t.test('a resolved alert closes the clock on its records', async (t) => {
  const e = testEngine();
  const a = firing('HighErrorRate');
  e.prometheus!.value = 0.001;
  await e.deliver(firing('MinorBug'));
  await e.deliver(a);
  await e.deliver({ ...a, status: 'resolved', endsAt: Date.now() });
  const rec = (await e.engine.records.list({ target: 'Deployment/prod/checkout' })).find((r) => r.rule === 'error-rate')!;
  t.type(rec.times.resolvedAt, 'number');
  t.ok(rec.timeline.some((s) => s.step === 'resolved'));
});

t.test('a label that is not a Kubernetes name is recorded as an error and touches nothing', async (t) => {
  const e = testEngine();
  await e.deliver(firing('HighErrorRate', 'checkout,payments'));
  await e.deliver(firing('HighErrorRate', '.*'));
  t.equal(e.action.executed.length, 0);
  const recs = await e.engine.records.list({});
  t.equal(recs.length, 2);
  for (const r of recs) {
    t.equal(r.state, 'error');
    t.match(r.outcome!.message, /target could not be resolved.*target\.name: resolved to/);
  }
});

t.test('a baseline relative to the rollout start is read at the current revision\'s creation', async (t) => {
  const ruleText = `
rules:
  - name: p95-2x
    match: ['alertname="SlowP95"']
    target: { kind: Deployment, namespace: prod, name: "{{ $labels.deployment }}" }
    trigger:
      kind: latency
      quantile: 0.95
      selector: { namespace: prod }
      threshold: 2
      baseline: { relativeTo: rollout_start, window: 10m }
      for: 2m
      step: 15s
    priority: P0
`;
  const e = testEngine({ ruleText });
  e.action.createdAt = Date.now() - 30 * 60_000;
  e.prometheus!.value = 0.5; // flat: the current p95 equals the baseline, 1x < 2x
  await e.deliver(firing('SlowP95'));
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'not_confirmed', rec.confirmation?.reason ?? '');
  t.ok(
    e.prometheus!.instantTimes.some((at) => Math.abs(at - e.action.createdAt) < 5000),
    `the baseline was evaluated just before the rollout began (${e.prometheus!.instantTimes.join(',')} vs ${e.action.createdAt})`,
  );
  t.equal(e.action.executed.length, 0);
});

t.test('closed records older than RECORD_RETENTION are pruned; open ones stay', async (t) => {
  const e = testEngine({ env: { RECORD_RETENTION: '1d' } });
  const old = Date.now() - 2 * 86_400_000;
  const base = { target: 'Deployment/prod/x', updatedAt: old, ref: { kind: 'Deployment' as const, namespace: 'prod', name: 'x' }, source: 'alert' as const, guards: [], dryRun: false, times: {}, timeline: [] };
  await e.store.putRecord({ ...base, id: 'rb-old-closed', state: 'succeeded', createdAt: old });
  await e.store.putRecord({ ...base, id: 'rb-old-pending', state: 'pending_approval', createdAt: old, dueAt: Date.now() + 60_000 });
  await e.store.putRecord({ ...base, id: 'rb-new-closed', state: 'failed', createdAt: Date.now() });
  await e.engine.tick();
  t.same((await e.engine.records.list({})).map((r) => r.id).sort(), ['rb-new-closed', 'rb-old-pending']);
});

t.test('closed records that changed nothing go after RECORD_RETENTION_NO_ACTION; records of rollbacks done stay for RECORD_RETENTION', async (t) => {
  const e = testEngine({ env: { RECORD_RETENTION: '30d', RECORD_RETENTION_NO_ACTION: '3d' } });
  const old = Date.now() - 4 * 86_400_000;
  const base = { target: 'Deployment/prod/x', updatedAt: old, ref: { kind: 'Deployment' as const, namespace: 'prod', name: 'x' }, source: 'alert' as const, guards: [], dryRun: false, times: {}, timeline: [] };
  for (const state of ['not_confirmed', 'blocked', 'refused', 'error', 'dry_run'] as const) await e.store.putRecord({ ...base, id: `rb-old-${state}`, state, createdAt: old });
  await e.store.putRecord({ ...base, id: 'rb-old-succeeded', state: 'succeeded', createdAt: old });
  await e.store.putRecord({ ...base, id: 'rb-old-failed', state: 'failed', createdAt: old });
  await e.store.putRecord({ ...base, id: 'rb-old-held', state: 'held', createdAt: old, dueAt: Date.now() + 60_000 });
  await e.store.putRecord({ ...base, id: 'rb-new-blocked', state: 'blocked', createdAt: Date.now() });
  await e.engine.tick();
  t.same((await e.engine.records.list({})).map((r) => r.id).sort(), ['rb-new-blocked', 'rb-old-failed', 'rb-old-held', 'rb-old-succeeded']);
});
