// A rollback taken up after its replica died counts toward MAX_CONCURRENT_ROLLBACKS when a slot is
// free, as the one its replica ran did: the slot that replica leased lapsed with its locks, so
// without one the recovery would write (or verify) uncounted and new rollbacks would not wait for
// it. It is never held back for one: it has begun, and waiting would let go of the target's lock.
import t, { type Test } from 'tap';
import { CONCURRENCY_POOL, concurrencyGuard } from '../../../src/guards/concurrency.js';
import type { GuardContext } from '../../../src/guards/guard.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { FakeDeploymentAction, FakePrometheus, firing, orphanRecord, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { leftMidMigration, migrationRules } from '../../support/migrations.js';
import { aroundStore } from '../../support/store-proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LIMIT = { MAX_CONCURRENT_ROLLBACKS: '1', LOCK_TTL: '1s' };

/** Who holds the pool's slots now: a probe tries to take one more of `max` and gives it back. */
async function holders(store: Store, max = 1): Promise<string[]> {
  const r = await store.acquireSlot(CONCURRENCY_POOL, 'probe', max, 60_000);
  if (r.acquired) {
    await store.releaseSlot(CONCURRENCY_POOL, 'probe');
    return [];
  }
  return r.holders;
}

const RULE = migrationRules({ key: 'rollback.yaml', deadline: '5s', logLines: 3 });

/** A rollback whose replica went away while its migration Job ran: the record left in_progress, the Job done meanwhile, and a second replica on the same store and cluster. */
async function leftMidJob(t: Test) {
  const kube = new FakeKube();
  // the Job hangs until the test completes it; the approving replica goes away while it runs
  const { a, left } = await leftMidMigration(kube, RULE, LIMIT);
  const pending = left;
  t.equal(left.state, 'in_progress', JSON.stringify(left.timeline.slice(-2)));
  t.same(await holders(a.store), [], 'the replica that went away gave its slot back');
  await sleep(1100); // past LOCK_TTL
  const b = testEngine({ kube, store: a.store, ruleText: RULE, owner: 'replica-b', action: a.action, env: LIMIT });
  b.prometheus!.value = 0.001;
  const job = kube.peek(RESOURCES.jobs, 'prod', left.migration!.job)!;
  kube.put(RESOURCES.jobs, { ...job, status: { conditions: [{ type: 'Complete', status: 'True' }] } });
  // who holds the pool while the workload's rollout is verified (after its write)
  const during: string[][] = [];
  const verify = a.action.verify.bind(a.action);
  a.action.verify = async (plan, ctx) => {
    during.push(await holders(a.store));
    return verify(plan, ctx);
  };
  return { a, b, id: pending.id, during };
}

t.test('a recovery that goes on with writes takes a free slot, holds it to the end of its verification, and gives it back', async (t) => {
  const { a, b, id, during } = await leftMidJob(t);
  await b.engine.tick();
  await b.engine.idle();
  const done = (await b.engine.records.get(id))!;
  t.equal(done.state, 'succeeded', JSON.stringify(done.timeline.slice(-4)));
  t.equal(a.action.executed.length, 1, 'the workload rolled back once');
  t.match(during, [[new RegExp(`^${id} taken up by replica-b #\\d+$`)]], 'the slot was the recovered rollback\'s, under the recovering replica\'s name and lock, while it went on');
  t.equal(during[0]?.length, 1);
  t.same(await holders(a.store), [], 'given back at the end');
});

t.test('with the pool full, a recovery that goes on with writes is not held back: it keeps the target\'s lock and finishes, uncounted', async (t) => {
  const { a, b, id, during } = await leftMidJob(t);
  // another rollback is in flight: the one slot MAX_CONCURRENT_ROLLBACKS allows is taken
  t.ok((await a.store.acquireSlot(CONCURRENCY_POOL, 'rb-other', 1, 60_000)).acquired);
  await b.engine.tick();
  await b.engine.idle();
  const done = (await b.engine.records.get(id))!;
  t.equal(done.state, 'succeeded', `finished, not left half done: ${JSON.stringify(done.timeline.slice(-4))}`);
  t.ok(done.timeline.some((s) => s.step === 'resumed'), 'resumed');
  t.equal(a.action.executed.length, 1, 'the workload rolled back once');
  t.same(during, [['rb-other']], 'without a slot of its own while the other held the pool');
  t.same(await holders(a.store), ['rb-other'], 'the other rollback\'s slot untouched');
});

t.test('a recovery of an applied rollback holds a slot while it verifies, and verifies even when the pool is full', async (t) => {
  for (const full of [false, true]) {
    const action = new FakeDeploymentAction();
    action.verifyDelayMs = { checkout: 600 };
    const prometheus = new FakePrometheus();
    prometheus.value = 0.001;
    const e = testEngine({ action, prometheus, env: LIMIT });
    await e.store.putRecord(orphanRecord('rb-orphan'));
    if (full) t.ok((await e.store.acquireSlot(CONCURRENCY_POOL, 'rb-other', 1, 60_000)).acquired);
    const ticking = e.engine.tick();
    await sleep(300);
    t.match(await holders(e.store), [full ? 'rb-other' : /^rb-orphan taken up by replica-a #\d+$/], full ? 'the pool full: verified without one' : 'the slot is the recovered rollback\'s while it verifies');
    await ticking;
    await e.engine.idle();
    t.equal((await e.engine.records.get('rb-orphan'))!.state, 'succeeded', `verified and closed (${full ? 'pool full' : 'slot taken'})`);
    t.same(await holders(e.store), full ? ['rb-other'] : [], 'its slot given back at the end; another\'s untouched');
    t.equal(action.executed.length, 0, 'nothing executed again');
  }
});

t.test('a replica that had only stalled gives its own slot back when it wakes, not the slot of the recovery that took its rollback up', async (t) => {
  // replica-a executes, then stalls after its write: its lock and slot renewals find them gone
  let stalled = false;
  const store = new MemoryStore();
  const storeOfA = aroundStore(store, async (op, _args, call) => (stalled && (op === 'renewLock' || op === 'renewSlot') ? false : call()));
  const action = new FakeDeploymentAction();
  const gates: Record<'a' | 'b', () => void> = { a: () => undefined, b: () => undefined };
  const verify = action.verify.bind(action);
  let calls = 0;
  action.verify = async (plan, ctx) => {
    // the executor's verification, then the recovery's, each held until the test lets it end
    const who = ++calls === 1 ? 'a' : 'b';
    await new Promise<void>((r) => (gates[who] = r));
    return verify(plan, ctx);
  };
  const prometheus = new FakePrometheus();
  const a = testEngine({ store: storeOfA, action, prometheus, owner: 'replica-a', env: LIMIT });
  const b = testEngine({ store, action, prometheus, owner: 'replica-b', env: LIMIT });
  prometheus.value = 0.2;
  const delivering = a.deliver(firing('HighErrorRate'));
  for (let i = 0; i < 500 && calls === 0; i++) await sleep(10);
  t.equal(action.executed.length, 1, 'replica-a rolled the workload back and verifies');
  const [rec] = await a.engine.records.list({});
  t.same(await holders(store), [rec!.id], 'its slot, named by the record');
  stalled = true;
  prometheus.value = 0.001;
  await sleep(1300); // past LOCK_TTL: replica-a's lock and slot lapsed unrenewed
  await b.engine.tick();
  for (let i = 0; i < 500 && calls < 2; i++) await sleep(10);
  t.equal(calls, 2, 'replica-b took the rollback up and verifies it');
  const [mine] = await holders(store);
  t.match(mine, new RegExp(`^${rec!.id} taken up by replica-b #\\d+$`), 'the recovery holds the one slot, under its own name');
  // replica-a wakes: its verification ends, it finds its lock gone, and gives back what it held
  gates.a();
  await delivering;
  await a.engine.idle();
  t.same(await holders(store), [mine], 'the recovery\'s slot is still held after replica-a gave its own back');
  // a new rollback's concurrency guard is refused, and names the target the recovery rolls back
  const check = await concurrencyGuard.check({ store, config: b.config, record: { id: 'rb-new' }, settings: {} } as unknown as GuardContext);
  t.match(check, { verdict: 'block', reason: /^1 rollback\(s\) already in flight \(Deployment\/prod\/checkout\); MAX_CONCURRENT_ROLLBACKS is 1$/ }, 'a new rollback waits for it, told which target is in flight');
  gates.b();
  await b.engine.idle();
  t.equal((await b.engine.records.get(rec!.id))!.state, 'succeeded', 'closed by the recovery');
  t.same(await holders(store), [], 'given back by the recovery at its end');
  t.equal(action.executed.length, 1, 'rolled back once');
});

t.test('a recovery that stalled in turn, taken up again by its own replica: its release on waking leaves the later recovery\'s slot held', async (t) => {
  let stalled = false;
  const store = aroundStore(new MemoryStore(), async (op, _args, call) => (stalled && (op === 'renewLock' || op === 'renewSlot') ? false : call()));
  const action = new FakeDeploymentAction();
  const gates: (() => void)[] = [];
  const verify = action.verify.bind(action);
  action.verify = async (plan, ctx) => {
    await new Promise<void>((r) => gates.push(r));
    return verify(plan, ctx);
  };
  const prometheus = new FakePrometheus();
  prometheus.value = 0.001;
  const e = testEngine({ store, action, prometheus, env: LIMIT });
  await store.putRecord(orphanRecord('rb-orphan'));
  await e.engine.tick();
  for (let i = 0; i < 300 && gates.length === 0; i++) await sleep(10);
  const [first] = await holders(store);
  t.match(first, /^rb-orphan taken up by replica-a #\d+$/, 'the first recovery\'s slot');
  stalled = true; // its renewals fail: the lock and the slot lapse
  await sleep(1300);
  stalled = false;
  await e.engine.tick(); // the same replica takes the record up again, under a new lock
  for (let i = 0; i < 300 && gates.length < 2; i++) await sleep(10);
  t.equal(gates.length, 2, 'a second recovery verifies');
  const [second] = await holders(store);
  t.match(second, /^rb-orphan taken up by replica-a #\d+$/);
  t.not(second, first, 'under a name of its own (its lock\'s token)');
  gates[0]!(); // the first wakes: its lock is gone, it gives back what it held
  for (let i = 0; i < 20; i++) await sleep(10);
  t.same(await holders(store), [second], 'the second recovery\'s slot is still held');
  gates[1]!();
  await e.engine.idle();
  t.equal((await e.engine.records.get('rb-orphan'))!.state, 'succeeded', 'closed once, by the second');
  t.same(await holders(store), [], 'given back at the end');
});
