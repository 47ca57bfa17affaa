// The lock of an object a rollback writes besides its target (a Canary's stable Deployment) is
// judged as the target's is (src/guards/lock.ts heldElsewhere): held by a rollback still deciding,
// which may yet end without writing, an alert's rollback is decided again later instead of closed
// `blocked`; held by one executing, or by a drill's restore, it is blocked at once, naming it.
// Before, any held written-object lock blocked at once, and a Canary's P0 alert behind a rollback
// of its stable Deployment that then asked for approval was closed for good.
import t, { type Test } from 'tap';
import { createActions } from '../../../src/actions/index.js';
import { lockName, rollbackHolder } from '../../../src/guards/lock.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { metricValue } from '../../support/app.js';
import { firing, orphanRecord, testEngine } from '../../support/engine.js';
import { CANARY_RULE, cluster, NS, patched } from '../../support/canary.js';
import { aroundStore } from '../../support/store-proxy.js';

const STABLE = 'Deployment/prod/api-stable';
const CANARY = 'Canary/prod/api-canary';
const canaryAlert = () => firing('CanaryErrors', 'api-canary', { labels: { alertname: 'CanaryErrors', namespace: NS, deployment: 'api-canary', stable: 'api-stable' } });

/**
 * A rollback on replica-b (alive) holding `key`'s lock under its record, in `state`, its target
 * `key`. Returns a function that ends it: the record waiting for approval, the lock given back.
 */
async function heldBy(store: Store, key: string, state = 'deciding', id = 'rb-holder'): Promise<() => Promise<void>> {
  await store.setValue('replica:replica-b', 'x', { ttlMs: 3_600_000 });
  const rec = { id, target: key, state, createdAt: 1, rule: 'other-rule', owner: 'replica-b', updatedAt: Date.now() + 3_600_000 };
  await store.putRecord(rec);
  const lock = (await store.acquireLock(lockName(key), rollbackHolder('replica-b', id), 3_600_000))!;
  return async () => {
    await store.putRecord({ ...rec, state: 'pending_approval' });
    await store.releaseLock(lock);
  };
}

/** The engine on a clock the test moves (`advance`), or on the real one (`realClock`: a rollback delivered is verified before deliver returns). */
function rig(opts: { store?: Store; realClock?: boolean } = {}) {
  let clock = Date.now();
  const kube = cluster({ 'api-canary': 1, 'api-stable': 3 });
  const e = testEngine({ kube, actions: createActions(), ruleText: CANARY_RULE, env: { LOCK_TTL: '30s' }, ...(opts.realClock ? {} : { now: () => clock }), ...(opts.store ? { store: opts.store } : {}) });
  const stableWrites = () => patched(kube, 'api-stable');
  return { e, kube, stableWrites, advance: (ms: number) => (clock += ms), now: () => clock };
}

const only = async (e: ReturnType<typeof testEngine>) => (await e.engine.records.list({})).filter((r) => r.target === CANARY);

/** The stable Deployment's lock held by `hold`; the Canary's alert then: closed blocked at once, for `reason`. */
async function blockedAtOnce(t: Test, hold: (store: Store) => Promise<unknown>, reason: RegExp) {
  const r = rig();
  await hold(r.e.store);
  await r.e.deliver(canaryAlert());
  const [rec] = await only(r.e);
  t.equal(rec!.state, 'blocked');
  t.match(rec!.outcome?.message, reason);
  return r;
}

t.test("a Canary's alert behind a rollback of its stable Deployment still deciding (which then asks for approval) waits, and rolls back once it is given back", async (t) => {
  const r = rig();
  const end = await heldBy(r.e.store, STABLE);
  await r.e.deliver(canaryAlert());
  const [rec] = await only(r.e);
  t.equal(rec!.state, 'scheduled', `not closed blocked (${rec!.outcome?.message ?? ''})`);
  const lock = rec!.guards.find((g) => g.guard === 'lock')!;
  t.equal(lock.result, 'later');
  t.match(lock.reason, /^Deployment\/prod\/api-stable's lock is held by a rollback that has not executed \(rb-holder, deciding; it may yet end without writing\): decided again in 5s, for at most 2 × LOCK_TTL \(1m\)/);
  t.equal(rec!.writeLockWaitSince, r.now(), 'the wait on the written objects starts');
  t.equal(rec!.lockWaitSince, undefined, 'not the one on the target');
  t.equal(rec!.dueAt, r.now() + 5_000);
  t.equal(await metricValue(r.e.metrics, 'rollguard_guard_deferred_total', { guard: 'lock' }), 1);
  t.equal((await metricValue(r.e.metrics, 'rollguard_guard_blocked_total', { guard: 'lock' })) ?? 0, 0, 'not counted as a block');
  t.equal(r.kube.patches().length, 0, 'nothing written');
  for (const key of [CANARY, 'Deployment/prod/api-canary']) {
    const probe = await r.e.store.acquireLock(lockName(key), 'probe', 1000);
    t.ok(probe, `${key}'s lock given back while it waits (the target's, and the written one taken before the held one)`);
    await r.e.store.releaseLock(probe!);
  }

  await end();
  r.advance(5_000);
  await r.e.engine.tick();
  // (its verification runs on in the background, on this test's stopped clock: not waited for)
  t.teardown(() => r.e.engine.stop());
  const after = (await r.e.engine.records.get(rec!.id))!;
  t.ok(after.times.executedAt, `rolled back at the re-check (${after.state}: ${after.outcome?.message ?? ''})`);
  t.ok(r.stableWrites() > 0, 'the stable Deployment written');
  t.equal(after.writeLockWaitSince, undefined, 'the wait is over once every lock is taken');
  t.match(after.guards.find((g) => g.guard === 'lock')!.reason, /locks of Deployment\/prod\/api-canary, Deployment\/prod\/api-stable taken too/);
});

t.test('a rollback of the stable Deployment executing stands for it: blocked at once, naming it', async (t) => {
  const r = await blockedAtOnce(t, (store) => heldBy(store, STABLE, 'in_progress', 'rb-stable'), /blocked by lock: another rollback writing Deployment\/prod\/api-stable is executing \(rb-stable; its lock is held\)/);
  t.equal((await metricValue(r.e.metrics, 'rollguard_guard_deferred_total', { guard: 'lock' })) ?? 0, 0);
  t.equal(r.kube.patches().length, 0);
});

t.test("another Canary's rollback executing writes the shared stable Deployment: blocked at once, naming that rollback's target", async (t) => {
  const hold = async (store: Store) => {
    await store.putRecord({ id: 'rb-other-canary', target: 'Canary/prod/web-canary', state: 'in_progress', createdAt: 1 });
    await store.acquireLock(lockName(STABLE), rollbackHolder('replica-b', 'rb-other-canary'), 60_000);
  };
  await blockedAtOnce(t, hold, /another rollback writing Deployment\/prod\/api-stable \(a rollback of Canary\/prod\/web-canary\) is executing \(rb-other-canary; its lock is held\)/);
});

t.test("a drill's restore holding the stable Deployment's lock blocks at once, naming it", async (t) => {
  await blockedAtOnce(t, (store) => store.acquireLock(lockName(STABLE), 'replica-b for drill dr-1', 60_000), /Deployment\/prod\/api-stable's lock is held by replica-b for drill dr-1, which is not a rollback being decided \(it writes\)/);
});

t.test('a holder of the stable Deployment that never executes nor gives it back: blocked after 2 × LOCK_TTL, saying so', async (t) => {
  const r = rig();
  await heldBy(r.e.store, STABLE);
  await r.e.deliver(canaryAlert());
  const [rec] = await only(r.e);
  let ticks = 0;
  for (; ticks < 30; ticks++) {
    r.advance(5_000);
    await r.e.engine.tick();
    if ((await r.e.engine.records.get(rec!.id))!.state === 'blocked') break;
  }
  const after = (await r.e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'blocked');
  t.ok(ticks >= 11 && ticks <= 13, `re-checked for about 2 × LOCK_TTL (${ticks + 1} ticks of 5 s)`);
  t.match(after.outcome?.message, /another rollback writing Deployment\/prod\/api-stable is in progress \(its lock is held\), still after 1m(\d+s)? of waiting for the rollbacks holding the objects it writes to execute or give their locks back \(2 × LOCK_TTL\)/);
  t.equal(r.kube.patches().length, 0);
});

// Found by review: with one bound for both, a long wait on the target's lock left none for the
// stable Deployment's held by a rollback just begun, and the alert was closed at once behind it.
t.test("a long wait on the target's lock does not shorten the one on the stable Deployment's behind it", async (t) => {
  const r = rig();
  const endTarget = await heldBy(r.e.store, CANARY, 'deciding', 'rb-canary-holder');
  await r.e.deliver(canaryAlert());
  const [rec] = (await only(r.e)).filter((x) => x.id !== 'rb-canary-holder');
  t.equal(rec!.state, 'scheduled');
  t.match(rec!.guards.find((g) => g.guard === 'lock')!.reason, /^Canary\/prod\/api-canary's lock is held by a rollback that has not executed \(rb-canary-holder, deciding;/);
  t.equal(rec!.lockWaitSince, r.now());
  r.advance(55_000);
  await endTarget();
  await heldBy(r.e.store, STABLE); // a rollback of the stable Deployment begins
  r.advance(5_000);
  const t1 = r.now();
  await r.e.engine.tick();
  const mid = (await r.e.engine.records.get(rec!.id))!;
  t.equal(mid.state, 'scheduled', `the target taken 60 s after its wait began, the stable Deployment held: waits (${mid.outcome?.message ?? ''})`);
  t.match(mid.guards.find((g) => g.guard === 'lock')!.reason, /^Deployment\/prod\/api-stable's lock is held by a rollback that has not executed/);
  t.equal(mid.lockWaitSince, undefined, "the target's wait is over");
  t.equal(mid.writeLockWaitSince, t1, "the stable Deployment's starts");
  for (let i = 0; i < 20 && (await r.e.engine.records.get(rec!.id))!.state !== 'blocked'; i++) {
    r.advance(5_000);
    await r.e.engine.tick();
  }
  const after = (await r.e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'blocked');
  t.ok(r.now() - t1 >= 60_000 && r.now() - t1 <= 65_000, `blocked 2 × LOCK_TTL after the stable Deployment's wait began (${(r.now() - t1) / 1000} s)`);
});

t.test("a wait on the stable Deployment's lock is not reset by a wait on the target's in between", async (t) => {
  const r = rig();
  const endStable = await heldBy(r.e.store, STABLE);
  await r.e.deliver(canaryAlert());
  const [rec] = await only(r.e);
  const t0 = r.now();
  t.equal(rec!.writeLockWaitSince, t0);
  const endTarget = await heldBy(r.e.store, CANARY, 'deciding', 'rb-canary-holder');
  r.advance(5_000);
  await r.e.engine.tick();
  const mid = (await r.e.engine.records.get(rec!.id))!;
  t.match(mid.guards.find((g) => g.guard === 'lock')!.reason, /^Canary\/prod\/api-canary's lock is held by a rollback that has not executed/);
  t.equal(mid.writeLockWaitSince, t0, 'kept while it waits on the target');
  await endTarget();
  r.advance(55_000);
  await r.e.engine.tick();
  const after = (await r.e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'blocked', 'the stable Deployment still held 2 × LOCK_TTL after its wait began');
  t.match(after.outcome?.message, /writing Deployment\/prod\/api-stable is in progress \(its lock is held\), still after 1m of waiting/);
  await endStable();
});

t.test("a hold after a wait on the stable Deployment's lock does not count against the next wait", async (t) => {
  let clock = Date.now();
  const kube = cluster({ 'api-canary': 1, 'api-stable': 3 });
  const rules = CANARY_RULE.replace("name: canary-errors", "name: canary-held").replace('priority: P0', 'priority: P1');
  const e = testEngine({ kube, actions: createActions(), ruleText: rules, env: { LOCK_TTL: '30s' }, now: () => clock });
  await heldBy(e.store, STABLE);
  await e.deliver(canaryAlert());
  const [rec] = await only(e);
  t.equal(rec!.state, 'scheduled', 'waits on the stable Deployment');
  t.equal(rec!.writeLockWaitSince, clock);
  e.prometheus!.down = true;
  clock += 5_000;
  await e.engine.tick();
  const held = (await e.engine.records.get(rec!.id))!;
  t.equal(held.state, 'held', 'then held: Prometheus down');
  t.equal(held.writeLockWaitSince, undefined);
  e.prometheus!.down = false;
  clock += 120_000; // past 2 × LOCK_TTL since it first met the lock
  await e.engine.tick();
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'scheduled', `waits on the lock afresh, not blocked at once (${after.outcome?.message ?? ''})`);
  t.equal(after.writeLockWaitSince, clock);
});

t.test('a written object locked under a bare replica name (an earlier version, which does not say what for) blocks at once', async (t) => {
  await blockedAtOnce(t, (store) => store.acquireLock(lockName(STABLE), 'replica-old', 60_000), /another rollback writing Deployment\/prod\/api-stable is in progress \(its lock is held\) \(taken by replica-old, an earlier version, which does not say what for\)/);
});

t.test('an approved Canary rollback is blocked at once by a held stable Deployment', async (t) => {
  const r = rig();
  await heldBy(r.e.store, STABLE);
  await r.e.deliver(canaryAlert());
  const [rec] = await only(r.e);
  t.equal(rec!.state, 'scheduled');
  await r.e.store.putRecord({ ...rec!, state: 'pending_approval', approval: undefined });
  const answer = await r.e.engine.approve(rec!.id, 'sre');
  t.equal(answer.kind, 'ok');
  await r.e.engine.idle(); // the approved rollback runs in the background
  const after = (await r.e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'blocked', `${after.outcome?.message ?? ''}`);
  t.match(after.outcome?.message, /another rollback writing Deployment\/prod\/api-stable is in progress \(its lock is held\)$/);
});

t.test("the stable Deployment's lock given back between the failed take and the read of its holder is taken, not waited for", async (t) => {
  const mem = new MemoryStore();
  const end = await heldBy(mem, STABLE);
  let ended = false;
  const store = aroundStore(mem, async (op, args, call) => {
    if (op === 'lockOwner' && args[0] === lockName(STABLE) && !ended) {
      ended = true;
      await end();
    }
    return call();
  });
  const r = rig({ store, realClock: true });
  await r.e.deliver(canaryAlert());
  t.teardown(() => r.e.engine.stop());
  t.ok(ended);
  const [rec] = await only(r.e);
  t.ok(rec!.times.executedAt, `rolled back at once (${rec!.state}: ${rec!.outcome?.message ?? ''})`);
  t.ok(r.stableWrites() > 0);
});

t.test('a manual Canary rollback is still blocked at once by a held stable Deployment, whatever holds it', async (t) => {
  const r = rig();
  await heldBy(r.e.store, STABLE);
  const m = await r.e.engine.manual({ ref: { kind: 'Canary', namespace: NS, name: 'api', options: { stable: 'api-stable' } }, reason: 'bad canary', requestedBy: 'sre' });
  await r.e.engine.idle();
  const rec = (await r.e.engine.records.get(m.id))!;
  t.equal(rec.state, 'blocked');
  t.match(rec.outcome?.message, /another rollback writing Deployment\/prod\/api-stable is in progress \(its lock is held\)$/);
});

// A retry after a retriable API server error while planning is decided again 2 × LOCK_TTL on: a
// wait on the written objects' locks before it must not be carried over, or the retry would be
// blocked at once by a lock then held.
t.test("a retry after a retriable API server error waits on a written object's lock afresh", async (t) => {
  const r = rig();
  const end = await heldBy(r.e.store, STABLE);
  await r.e.deliver(canaryAlert());
  const [rec] = await only(r.e);
  t.equal(rec!.writeLockWaitSince, r.now());
  await end();
  r.kube.failNext('get', new KubeApiError({ status: 503, reason: 'ServiceUnavailable', message: 'etcdserver: leader changed', operation: 'GET apps/v1 deployments prod/api-canary' }));
  r.advance(5_000);
  await r.e.engine.tick();
  const retrying = (await r.e.engine.records.get(rec!.id))!;
  t.equal(retrying.state, 'deciding', `left deciding by the 503 (${retrying.outcome?.message ?? ''})`);
  t.equal(retrying.kubeRetries, 1);
  t.equal(retrying.writeLockWaitSince, undefined, 'the wait before the retry is not carried over');
  await heldBy(r.e.store, STABLE, 'deciding', 'rb-holder-2');
  r.advance(10 * 60_000);
  await r.e.engine.tick();
  const after = (await r.e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'scheduled', `waits on the lock afresh (${after.outcome?.message ?? ''})`);
  t.equal(after.writeLockWaitSince, r.now());
});

// Found by the second review: a record left deciding (its replica stopped, or a store call failed)
// is decided again some time on, and kept the wait starts it had: its first look then blocked
// behind a holder just begun.
t.test('a record left deciding and taken up again waits on a held lock afresh', async (t) => {
  let clock = Date.now();
  const e = testEngine({ owner: 'replica-c', env: { LOCK_TTL: '30s' }, now: () => clock });
  const rec = { ...orphanRecord('rb-left'), state: 'deciding' as const, owner: 'replica-gone', createdAt: clock - 180_000, updatedAt: clock - 180_000, times: {}, timeline: [], lockWaitSince: clock - 170_000, writeLockWaitSince: clock - 170_000 };
  delete (rec as { lockToken?: number }).lockToken;
  await e.store.putRecord(rec);
  await heldBy(e.store, 'Deployment/prod/checkout');
  await e.engine.tick();
  const after = (await e.engine.records.get(rec.id))!;
  t.ok(after.timeline.some((s) => s.step === 'recovery'), 'taken up');
  t.equal(after.state, 'scheduled', `waits on the lock, not blocked at once (${after.outcome?.message ?? ''})`);
  t.equal(after.lockWaitSince, clock);
  t.equal(after.writeLockWaitSince, undefined);
});

t.test("a lock still held by this record's own earlier attempt is waited for, and the reason says so", async (t) => {
  let clock = Date.now();
  const e = testEngine({ owner: 'replica-c', env: { LOCK_TTL: '30s' }, now: () => clock });
  const rec = { ...orphanRecord('rb-left'), state: 'deciding' as const, owner: 'replica-gone', createdAt: clock - 180_000, updatedAt: clock - 180_000, times: {}, timeline: [] };
  delete (rec as { lockToken?: number }).lockToken;
  await e.store.putRecord(rec);
  await e.store.acquireLock(lockName('Deployment/prod/checkout'), rollbackHolder('replica-gone', rec.id), 30_000);
  await e.engine.tick();
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'scheduled');
  t.match(after.guards.find((g) => g.guard === 'lock')?.reason, /^Deployment\/prod\/checkout's lock is held by an earlier attempt of this rollback \(replica-gone for rb-left; its lock expires within LOCK_TTL\): decided again in 5s/);
});
