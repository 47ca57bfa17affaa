// A rollback left in_progress by a dead replica, taken up by the scheduler of one of two replicas
// sharing a store, with a verification (2.5 s) longer than LOCK_TTL (1 s). The recovering replica
// renews the target lock while it verifies, in the background: the other replica never finds the
// lock free, so the record is verified, closed, notified and counted once; the tick (or the
// redelivered event) does not wait for the verification; the target is in cooldown meanwhile, so a
// new alert cannot roll it back a second time; and a replica that lost its lock does not close.
import t from 'tap';
import type { Alert } from '../../../src/alertmanager/alert.js';
import { readCooldown } from '../../../src/guards/cooldown.js';
import { lockName } from '../../../src/guards/lock.js';
import { alertRecordId, type RollbackRecord } from '../../../src/engine/record.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { metricValue } from '../../support/app.js';
import { FakeDeploymentAction, FakePrometheus, firing, orphanRecord, testEngine } from '../../support/engine.js';
import { aroundStore } from '../../support/store-proxy.js';

const TARGET = 'Deployment/prod/checkout';
const VERIFY_MS = 2500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two replicas on one store, one cluster (the action double, its verification slow) and one recovered service. */
function twoReplicas(o: { storeOfA?: (s: Store) => Store } = {}) {
  const store = new MemoryStore();
  const action = new FakeDeploymentAction();
  action.verifyDelayMs = { checkout: VERIFY_MS };
  const verifications: { started: number; ended?: number }[] = [];
  const verify = action.verify.bind(action);
  action.verify = async (plan, ctx) => {
    const v: { started: number; ended?: number } = { started: Date.now() };
    verifications.push(v);
    try {
      return await verify(plan, ctx);
    } finally {
      v.ended = Date.now();
    }
  };
  const prometheus = new FakePrometheus();
  prometheus.value = 0.001; // the service recovered
  const env = { LOCK_TTL: '1s' };
  const a = testEngine({ store: o.storeOfA ? o.storeOfA(store) : store, action, prometheus, owner: 'replica-a', env });
  const b = testEngine({ store, action, prometheus, owner: 'replica-b', env });
  return { store, action, prometheus, verifications, a, b };
}


/** Whether the target lock is free now (taken and given back at once). */
async function lockFree(store: Store): Promise<boolean> {
  const l = await store.acquireLock(lockName(TARGET), 'probe', 60_000);
  if (l) await store.releaseLock(l);
  return l !== null;
}

/** Closing notifications (rollback … done, did not recover, unverified) sent by either replica. */
async function closings(...es: ReturnType<typeof testEngine>[]): Promise<number> {
  let n = 0;
  for (const e of es) {
    await e.notifications.flush();
    n += e.notifier.sent.filter((x) => ['rollback_succeeded', 'rollback_failed', 'rollback_unverified'].includes(x.kind)).length;
  }
  return n;
}

async function closedCount(...es: ReturnType<typeof testEngine>[]): Promise<number> {
  let n = 0;
  for (const e of es) n += (await metricValue(e.metrics, 'rollguard_rollbacks_total', { rule: 'error-rate', outcome: 'succeeded' })) ?? 0;
  return n;
}

t.test('verified longer than LOCK_TTL: the lock is renewed, the other replica never takes the record up; verified, closed and counted once; the tick does not wait', async (t) => {
  const { store, verifications, a, b } = twoReplicas();
  await store.putRecord(orphanRecord('rb-orphan'));
  let tickReturned = 0;
  const ticking = a.engine.tick().then(() => (tickReturned = Date.now()));
  // the other replica's scheduler ticks all along, well past LOCK_TTL, while a probe tries the lock
  const free: boolean[] = [];
  const start = Date.now();
  while (Date.now() - start < VERIFY_MS - 300) {
    await sleep(200);
    free.push(await lockFree(store));
    await b.engine.tick();
  }
  await ticking;
  t.ok(tickReturned > 0 && tickReturned < (verifications[0]?.ended ?? Infinity), `the tick returned before the verification ended (after ${tickReturned - start} ms)`);
  t.same(free, free.map(() => false), 'the target lock is held (renewed) all through the verification');
  await Promise.all([a.engine.idle(), b.engine.idle()]);
  t.equal(verifications.length, 1, 'verified once');
  const rec = (await a.engine.records.get('rb-orphan'))!;
  t.equal(rec.state, 'succeeded', `${rec.state}: ${rec.outcome?.message}`);
  t.equal(await closings(a, b), 1, 'one closing notification');
  t.equal(await closedCount(a, b), 1, 'the outcome counted once');
  // not a regression check of the old code (which released it too): the renewals stop and the lock goes back
  t.ok(await lockFree(store), 'the lock is free once the verification ended');
});

t.test('the target is in cooldown while its recovery verifies: a new alert does not roll it back again', async (t) => {
  const { store, action, prometheus, a, b } = twoReplicas();
  // the dead replica's cooldown is gone (it expired, or the store lost it); the new alert's plan finds a revision to go back to
  await store.putRecord(orphanRecord('rb-orphan'));
  const ticking = a.engine.tick();
  await sleep(100);
  t.equal((await readCooldown(store, TARGET))?.id, 'rb-orphan', 'the cooldown is written when the record is taken up');
  await sleep(1400); // past LOCK_TTL
  prometheus.value = 0.2; // confirmed: the errors are back (a new bad deploy)
  await b.deliver(firing('HighErrorRate'));
  prometheus.value = 0.001;
  t.equal(action.executed.length, 0, 'no second rollback of the target');
  const second = (await b.engine.records.list({ target: TARGET })).find((r) => r.id !== 'rb-orphan')!;
  t.equal(second.state, 'blocked', `${second.state}: ${second.outcome?.message}`);
  await ticking;
  await a.engine.idle();
  t.equal((await a.engine.records.get('rb-orphan'))!.state, 'succeeded', 'the recovered rollback is closed by its recovery');
});

t.test('a redelivered event of a record in_progress does not wait for its recovery to verify', async (t) => {
  const { store, verifications, a, b } = twoReplicas();
  const alert = firing('HighErrorRate');
  const id = alertRecordId('error-rate', TARGET, alert.fingerprint, alert.startsAt);
  await store.putRecord(orphanRecord(id, alert));
  const start = Date.now();
  let handled = 0;
  const handling = a.engine.handle({ id: 'ev-1', alert, deliveries: 2 }).then(() => (handled = Date.now()));
  await sleep(1500); // past LOCK_TTL
  await b.engine.tick();
  await handling;
  t.ok(handled < (verifications[0]?.ended ?? Infinity), `the handler returned before the verification ended (after ${handled - start} ms)`);
  await Promise.all([a.engine.idle(), b.engine.idle()]);
  t.equal(verifications.length, 1, 'verified once');
  t.equal(await closings(a, b), 1, 'one closing notification');
});

t.test('a recovery whose lock is lost mid-verification does not close the record: the replica that took it up does, once', async (t) => {
  // replica-a's renewals find the lock gone (a stalled process, the store out of reach)
  const lossy = (s: Store): Store => aroundStore(s, async (op, _args, call) => (op === 'renewLock' ? false : call()));
  const { store, verifications, a, b } = twoReplicas({ storeOfA: lossy });
  await store.putRecord(orphanRecord('rb-orphan'));
  const ticking = a.engine.tick();
  await sleep(1300); // a's lock expired unrenewed
  await b.engine.tick();
  await ticking;
  t.equal(verifications.length, 2, 'the lock expired, so the other replica took the record up (expected: the renewals failed)');
  await Promise.all([a.engine.idle(), b.engine.idle()]);
  const rec = (await b.engine.records.get('rb-orphan'))!;
  t.equal(rec.state, 'succeeded', `${rec.state}: ${rec.outcome?.message}`);
  t.equal(await closings(a), 0, 'the replica that lost its lock sent no closing notification');
  t.equal(await closings(a, b), 1, 'one closing notification in all');
  t.equal(await closedCount(a, b), 1, 'the outcome counted once');
});

t.test('the executing replica\'s lock lapses and a recovery closes the record first: the executor\'s own close changes nothing and says nothing', async (t) => {
  // replica-a's renewals find the lock gone once it has written (a stall after the patch)
  let lose = false;
  const lossy = (s: Store): Store => aroundStore(s, async (op, _args, call) => (op === 'renewLock' && lose ? false : call()));
  const { action, prometheus, verifications, a, b } = twoReplicas({ storeOfA: lossy });
  // the executor's verification is the slow one: the recovery's ends first
  const verify = action.verify.bind(action);
  let calls = 0;
  action.verify = async (plan, ctx) => {
    if (++calls === 1) await sleep(2000);
    return verify(plan, ctx);
  };
  prometheus.value = 0.2; // the alert is confirmed...
  const delivering = a.deliver(firing('HighErrorRate'));
  for (let i = 0; i < 500 && action.executed.length === 0; i++) await sleep(10);
  t.equal(action.executed.length, 1, `executed (${JSON.stringify((await a.engine.records.list({})).map((r) => [r.state, r.outcome?.message]))})`);
  lose = true;
  prometheus.value = 0.001; // ...and the service recovers once rolled back
  await sleep(1300); // a's lock expired unrenewed; the record is in_progress
  await b.engine.tick();
  await b.engine.idle();
  const [closedByB] = await b.engine.records.list({ target: TARGET });
  t.equal(closedByB?.state, 'succeeded', 'the recovery closed it');
  await delivering;
  await a.engine.idle();
  t.equal(verifications.length, 2, 'both verified (the lock lapsed)');
  t.equal(await closings(a), 0, 'the executor sent no closing notification');
  t.equal(await closings(a, b), 1, 'one closing notification in all');
  t.equal(await closedCount(a, b), 1, 'the outcome counted once');
  const [rec] = await a.engine.records.list({ target: TARGET });
  t.equal(rec?.outcome?.message, closedByB?.outcome?.message, "the recovery's outcome stands");
});
