import t from 'tap';
import { lockName } from '../../../src/guards/lock.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Lock } from '../../../src/store/store.js';
import { firing, testEngine } from '../../support/engine.js';
import { aroundStore } from '../../support/store-proxy.js';
import { metricValue } from '../../support/app.js';

const TARGET = 'Deployment/prod/checkout';

// Found by review: the lock guard closed an alert `blocked` whenever the target's lock was held,
// also by a rollback still deciding, which may then end without writing anything. A P0 alert
// behind a P1 rule's evaluation that asks for approval was so closed for good, and nothing rolled
// the target back until a human answered the approval.
t.test('a P0 alert meeting the lock of a P1 evaluation that then asks for approval is rolled back, not blocked', async (t) => {
  const mem = new MemoryStore();
  let clock = Date.now();
  const now = () => clock;
  const b = testEngine({ store: mem, owner: 'replica-b', now, env: { LOCK_TTL: '30s' } });
  let raced = false;
  // replica-a evaluates the P1 alert; the moment it holds the target's lock, replica-b gets the P0 alert
  const store = aroundStore(mem, async (op, args, call) => {
    const r = await call();
    if (op === 'acquireLock' && args[0] === lockName(TARGET) && r !== null && !raced) {
      raced = true;
      await b.deliver(firing('HighErrorRate'));
    }
    return r;
  });
  const a = testEngine({ store, owner: 'replica-a', now, env: { LOCK_TTL: '30s' } });
  await a.engine.heartbeat();
  await b.engine.heartbeat();
  await a.deliver(firing('HighLatency'));
  t.ok(raced, 'the P0 alert was evaluated while the P1 evaluation held the lock');
  const records = await b.engine.records.list({});
  const p1 = records.find((r) => r.rule === 'latency-p1')!;
  const p0 = records.find((r) => r.rule === 'error-rate')!;
  t.equal(p1.state, 'pending_approval', 'the P1 rule asks for approval (its lock given back)');
  t.equal(p0.state, 'scheduled', 'the P0 alert is decided again later, not closed blocked');
  t.equal(p0.lockWaitSince, p0.updatedAt);
  t.match(p0.guards.find((g) => g.guard === 'lock'), { result: 'later', reason: /in progress \(its lock is held\) by a rollback that has not executed .* decided again in 5s, for at most 2 × LOCK_TTL \(1m\)/ });
  t.equal(p0.dueAt, clock + 5_000);
  t.equal((await metricValue(b.metrics, 'rollguard_guard_blocked_total', { guard: 'lock' })) ?? 0, 0, 'not counted as a block');
  t.equal(b.action.executed.length, 0);
  clock += 5_000;
  await b.engine.tick();
  // (its verification runs on in the background, on this test's stopped clock: not waited for)
  t.teardown(() => b.engine.stop());
  t.equal(b.action.executed.length, 1, 'rolled back at the re-check, from its trigger again');
  const after = (await b.engine.records.get(p0.id))!;
  t.ok(after.times.executedAt, `executed (${after.state})`);
  t.ok(after.timeline.some((s) => s.step === 'due'), 'through the scheduled re-check');
  t.equal(after.lockWaitSince, undefined, 'the wait is over once the lock is taken');
});

t.test('a holder that never executes nor gives the lock back: blocked after 2 × LOCK_TTL, saying so', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  await e.store.acquireLock(lockName(TARGET), 'replica-b', 3_600_000);
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'scheduled');
  let ticks = 0;
  for (; ticks < 30; ticks++) {
    clock += 5_000;
    await e.engine.tick();
    await e.engine.idle();
    if ((await e.engine.records.get(rec!.id))!.state === 'blocked') break;
  }
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'blocked');
  t.ok(ticks >= 11 && ticks <= 13, `re-checked for about 2 × LOCK_TTL (${ticks + 1} ticks of 5 s)`);
  t.match(after.outcome?.message, /blocked by lock: another rollback of Deployment\/prod\/checkout is in progress \(its lock is held\), still after 1m(\d+s)? of waiting for its holder to execute or give it back \(2 × LOCK_TTL\)/);
  t.equal(e.action.executed.length, 0);
});

t.test('manual rollbacks are blocked at once by a held lock, as before', async (t) => {
  const e = testEngine();
  await e.store.acquireLock(lockName(TARGET), 'replica-b', 60_000);
  const rec = await e.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, reason: 'bad deploy', requestedBy: 'ops' });
  await e.engine.idle();
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'blocked');
  t.match(after.outcome?.message, /another rollback of Deployment\/prod\/checkout is in progress \(its lock is held\)$/);
});

t.test('a rollback executing (in_progress) stands for the alert: blocked at once, naming it', async (t) => {
  const e = testEngine();
  const lock = (await e.store.acquireLock(lockName(TARGET), 'replica-b', 60_000)) as Lock;
  t.ok(lock);
  await e.store.putRecord({ id: 'rb-running', target: TARGET, state: 'in_progress', createdAt: 1 });
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-running')!;
  t.equal(rec.state, 'blocked');
  t.match(rec.outcome?.message, /another rollback of Deployment\/prod\/checkout is executing \(rb-running; its lock is held\)/);
});
