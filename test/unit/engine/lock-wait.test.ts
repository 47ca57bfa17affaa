import t, { type Test } from 'tap';
import { lockName, rollbackHolder } from '../../../src/guards/lock.js';
import type { RangeSeries } from '../../../src/prometheus/client.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Lock, Store } from '../../../src/store/store.js';
import { CHAIN_RULES, FakePrometheus, firing, orphanRecord, PerTargetDeploymentAction, RULES, testEngine } from '../../support/engine.js';
import { aroundStore } from '../../support/store-proxy.js';
import { metricValue } from '../../support/app.js';

const TARGET = 'Deployment/prod/checkout';
const SLO_RULES = `${RULES}
  - name: latency-slo
    match: ['alertname="LatencySlo"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    sloAtRisk: true
    recheckAfter: 10m
`;

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
  t.match(p0.guards.find((g) => g.guard === 'lock'), { result: 'later', reason: /^Deployment\/prod\/checkout's lock is held by a rollback that has not executed .* decided again in 5s, for at most 2 × LOCK_TTL \(1m\)/ });
  t.equal(p0.dueAt, clock + 5_000);
  t.equal((await metricValue(b.metrics, 'rollguard_guard_blocked_total', { guard: 'lock' })) ?? 0, 0, 'not counted as a block');
  t.equal(await metricValue(b.metrics, 'rollguard_guard_deferred_total', { guard: 'lock' }), 1, 'but as deferred');
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

/**
 * The target's lock held by another rollback still deciding on replica-b (alive): its record,
 * deciding (of another rule, and of this target unless `target` says otherwise: a Canary writing
 * this Deployment), and the lock, taken under its name (or `owner`: an earlier version took it
 * under the bare replica name). Returns a function that ends it (the
 * record waiting for approval, the lock given back).
 */
async function decidingElsewhere(store: Store, opts: { rule?: string; target?: string; owner?: (id: string) => string } = {}): Promise<() => Promise<void>> {
  const rule = opts.rule ?? 'latency-p1';
  await store.setValue('replica:replica-b', 'x', { ttlMs: 3_600_000 });
  const rec = { id: `rb-deciding-${rule}`, target: opts.target ?? TARGET, state: 'deciding', createdAt: 1, rule, owner: 'replica-b', updatedAt: Date.now() + 3_600_000 };
  await store.putRecord(rec);
  const lock = (await store.acquireLock(lockName(TARGET), (opts.owner ?? ((id) => rollbackHolder('replica-b', id)))(rec.id), 3_600_000))!;
  return async () => {
    await store.putRecord({ ...rec, state: 'pending_approval' });
    await store.releaseLock(lock);
  };
}

/** Scheduler ticks `every` ms apart until no record of `rule` is scheduled or held (at most `max`). */
async function tickUntilSettled(e: ReturnType<typeof testEngine>, advance: (ms: number) => void, rule: string, max = 40, every = 5_000): Promise<void> {
  for (let i = 0; i < max; i++) {
    advance(every);
    await e.engine.tick();
    const open = (await e.engine.records.list({ limit: 200 })).filter((r) => r.rule === rule && ['scheduled', 'held', 'deciding'].includes(r.state));
    if (open.length === 0) return;
  }
}

t.test('a holder that never executes nor gives the lock back: blocked after 2 × LOCK_TTL, saying so', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  await decidingElsewhere(e.store);
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'error-rate')!;
  t.equal(rec.state, 'scheduled');
  t.equal(await metricValue(e.metrics, 'rollguard_guard_deferred_total', { guard: 'lock' }), 1, 'counted as deferred');
  let ticks = 0;
  for (; ticks < 30; ticks++) {
    clock += 5_000;
    await e.engine.tick();
    await e.engine.idle();
    if ((await e.engine.records.get(rec.id))!.state === 'blocked') break;
  }
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'blocked');
  t.ok(ticks >= 11 && ticks <= 13, `re-checked for about 2 × LOCK_TTL (${ticks + 1} ticks of 5 s)`);
  t.match(after.outcome?.message, /blocked by lock: another rollback of Deployment\/prod\/checkout is in progress \(its lock is held\), still after 1m(\d+s)? of waiting for its holder to execute or give it back \(2 × LOCK_TTL\)/);
  t.equal(e.action.executed.length, 0);
});

// Found by review (the checks below, 2026-12-04): each failed on the first version of the wait.

t.test('a lock held by what is not a rollback (a drill\'s restore, which writes) blocks at once, naming it', async (t) => {
  const e = testEngine({ env: { LOCK_TTL: '30s' } });
  await e.store.acquireLock(lockName(TARGET), 'replica-b for drill dr-1', 60_000);
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'blocked', 'not left waiting on a holder that will write');
  t.match(rec!.outcome?.message, /Deployment\/prod\/checkout's lock is held by replica-b for drill dr-1, which is not a rollback being decided/);
  t.equal((await metricValue(e.metrics, 'rollguard_guard_deferred_total', { guard: 'lock' })) ?? 0, 0);
});

t.test('a lock held by another target\'s rollback still deciding (a Canary writing this Deployment, which then asks for approval) is waited for', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  const end = await decidingElsewhere(e.store, { target: 'Canary/prod/checkout-canary' });
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'error-rate')!;
  t.equal(rec.state, 'scheduled', `not blocked at once (${rec.outcome?.message ?? ''})`);
  t.match(rec.guards.at(-1)?.reason, /^Deployment\/prod\/checkout's lock is held by a rollback that has not executed \(rb-deciding-latency-p1, deciding, a rollback of Canary\/prod\/checkout-canary; it may yet end without writing\)/);
  await end();
  clock += 5_000;
  await e.engine.tick();
  t.teardown(() => e.engine.stop());
  t.equal(e.action.executed.length, 1);
});

t.test('a holder that gives the lock back between the failed take and the read of its holder: the lock is taken, not waited for', async (t) => {
  const mem = new MemoryStore();
  const end = await decidingElsewhere(mem);
  let ended = false;
  const store = aroundStore(mem, async (op, _args, call) => {
    if (op === 'lockOwner' && !ended) {
      ended = true;
      await end(); // it asked for approval: its record pending, the lock given back
    }
    return call();
  });
  const e = testEngine({ store, env: { LOCK_TTL: '30s' } });
  await e.deliver(firing('HighErrorRate'));
  t.teardown(() => e.engine.stop());
  t.ok(ended);
  t.equal(e.action.executed.length, 1, 'rolled back at once');
});

t.test('a rollback executing on another target but writing this one (its lock taken under its record) blocks at once, naming both', async (t) => {
  const e = testEngine();
  await e.store.putRecord({ id: 'rb-canary', target: 'Canary/prod/checkout-canary', state: 'in_progress', createdAt: 1 });
  await e.store.acquireLock(lockName(TARGET), rollbackHolder('replica-b', 'rb-canary'), 60_000);
  await e.deliver(firing('HighErrorRate'));
  const [rec] = (await e.engine.records.list({})).filter((r) => r.id !== 'rb-canary');
  t.equal(rec!.state, 'blocked');
  t.match(rec!.outcome?.message, /another rollback writing Deployment\/prod\/checkout \(a rollback of Canary\/prod\/checkout-canary\) is executing \(rb-canary; its lock is held\)/);
});

/**
 * An SLO-at-risk rule's alert (LatencySlo) whose re-check, 10 minutes on, meets the lock of
 * another rule's rollback still deciding: sent back (scheduled). Returns the engine, the record
 * id, the holder's end and the clock's advance.
 */
async function sloSentBackByLock(t: Test) {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock, ruleText: SLO_RULES });
  await e.deliver(firing('LatencySlo'));
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.decision?.decision, 'recheck_later');
  const end = await decidingElsewhere(e.store);
  clock += 10 * 60_000;
  await e.engine.tick();
  const waiting = (await e.engine.records.get(rec.id))!;
  t.equal(waiting.state, 'scheduled', 'sent back by the lock at its re-check');
  t.match(waiting.guards.at(-1), { guard: 'lock', result: 'later' }, 'still true on its re-check, sent back by the lock');
  return { e, rec, end, advance: (ms: number) => (clock += ms) };
}

t.test('an SLO-at-risk rule sent back by the lock at its re-check rolls back at the next look, not after another recheckAfter', async (t) => {
  const { e, rec, end, advance } = await sloSentBackByLock(t);
  await end();
  advance(5_000);
  await e.engine.tick();
  t.teardown(() => e.engine.stop());
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(e.action.executed.length, 1, `rolled back at the next look (${after.state}: ${after.decision?.reason})`);
  t.match(after.decision?.reason, /still true on re-check/);
});

t.test('a hold after a wait on the lock does not count against the next wait', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  await decidingElsewhere(e.store);
  await e.deliver(firing('SlowBurn'));
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'held-when-down')!;
  t.equal(rec.state, 'scheduled', 'waits on the lock');
  e.prometheus!.down = true;
  clock += 5_000;
  await e.engine.tick();
  t.equal((await e.engine.records.get(rec.id))!.state, 'held', 'then held: Prometheus down');
  e.prometheus!.down = false;
  clock += 120_000; // past 2 × LOCK_TTL since it first met the lock
  await e.engine.tick();
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'scheduled', `waits on the lock afresh, not blocked at once (${after.outcome?.message ?? ''})`);
  t.equal(after.lockWaitSince, clock);
});

t.test('an alert resolved while its rollback was in the guards is not rolled back at the re-check', async (t) => {
  let clock = Date.now();
  const mem = new MemoryStore();
  const alert = firing('HighErrorRate');
  let resolvedMeanwhile = false;
  let e: ReturnType<typeof testEngine> | undefined;
  // the moment the P0 evaluation finds the lock held, the alert's resolution arrives (another replica's worker)
  const other = testEngine({ store: mem, owner: 'replica-c', now: () => clock, env: { LOCK_TTL: '30s' } });
  const store = aroundStore(mem, async (op, args, call) => {
    const r = await call();
    if (op === 'acquireLock' && args[0] === lockName(TARGET) && r === null && !resolvedMeanwhile) {
      resolvedMeanwhile = true;
      await other.deliver({ ...alert, status: 'resolved', endsAt: clock });
    }
    return r;
  });
  e = testEngine({ store, now: () => clock, env: { LOCK_TTL: '30s' } });
  await decidingElsewhere(mem);
  await e.deliver(alert);
  t.ok(resolvedMeanwhile);
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'error-rate')!;
  t.ok(rec.times.resolvedAt, 'its resolution is on the record');
  clock += 5_000;
  await e.engine.tick();
  await e.engine.idle();
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'not_confirmed');
  t.match(after.outcome?.message, /the alert resolved before the scheduled re-check/);
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
});

t.test('a flood of one rule\'s alerts for a target behind the lock: each waits, the target is rolled back once, the others then blocked', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  const end = await decidingElsewhere(e.store);
  for (let i = 0; i < 20; i++) await e.deliver(firing('HighErrorRate'));
  const mine = (await e.engine.records.list({ limit: 100 })).filter((r) => r.rule === 'error-rate');
  t.equal(mine.filter((r) => r.state === 'scheduled').length, 20, 'each waits (none is closed for another alert)');
  await end();
  await tickUntilSettled(e, (ms) => (clock += ms), 'error-rate');
  t.teardown(() => e.engine.stop());
  const after = (await e.engine.records.list({ limit: 100 })).filter((r) => r.rule === 'error-rate');
  t.equal(e.action.executed.length, 1, 'rolled back once');
  t.equal(after.filter((r) => r.state === 'blocked').length, 19, `the others blocked (${[...new Set(after.map((r) => r.state))].join(', ')})`);
  t.ok(after.filter((r) => r.state === 'blocked').every((r) => /executing|cooldown/.test(r.outcome?.message ?? '')), 'by the rollback that ran, or its cooldown');
});

t.test('two alerts of one rule on two replicas at once behind the lock both wait; the target is rolled back once', async (t) => {
  const mem = new MemoryStore();
  let clock = Date.now();
  const end = await decidingElsewhere(mem);
  let arrived = 0;
  let open!: () => void;
  const both = new Promise<void>((r) => (open = r));
  // a barrier at the read of the lock's holder: both evaluations have found the lock held
  const store = aroundStore(mem, async (op, _args, call) => {
    if (op === 'lockOwner' && arrived < 2) {
      if (++arrived === 2) open();
      await both;
    }
    return call();
  });
  const a = testEngine({ store, owner: 'replica-a', now: () => clock, env: { LOCK_TTL: '30s' } });
  const c = testEngine({ store, owner: 'replica-c', now: () => clock, env: { LOCK_TTL: '30s' } });
  await a.engine.heartbeat();
  await c.engine.heartbeat();
  await Promise.all([a.deliver(firing('HighErrorRate')), c.deliver(firing('HighErrorRate'))]);
  const mine = (await a.engine.records.list({ limit: 100 })).filter((r) => r.rule === 'error-rate');
  t.same(mine.map((r) => r.state), ['scheduled', 'scheduled']);
  await end();
  await tickUntilSettled(a, (ms) => (clock += ms), 'error-rate');
  t.teardown(() => a.engine.stop());
  t.equal(a.action.executed.length + c.action.executed.length, 1, 'rolled back once');
});

t.test('two alerts of one rule whose labels make different trigger queries are each decided on their own query', async (t) => {
  let clock = Date.now();
  class PerRoute extends FakePrometheus {
    healthy = new Set<string>();
    override async queryRange(expr: string, s: number, e2: number, step: number): Promise<RangeSeries[]> {
      const r = await super.queryRange(expr, s, e2, step);
      return [...this.healthy].some((h) => expr.includes(`route="${h}"`)) ? r.map((x) => ({ ...x, samples: x.samples.map((p) => ({ ...p, v: 0 })) })) : r;
    }
    override async query(expr: string, tm: number) {
      const r = await super.query(expr, tm);
      return [...this.healthy].some((h) => expr.includes(`route="${h}"`)) ? r.map((x) => ({ ...x, v: 0 })) : r;
    }
  }
  const prom = new PerRoute();
  const ruleText = `${RULES}
  - name: route-errors
    match: ['alertname="RouteErrors"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}", route: "{{ $labels.route }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
`;
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock, ruleText, prometheus: prom });
  const end = await decidingElsewhere(e.store);
  const health = firing('RouteErrors');
  health.labels = { ...health.labels, route: 'health' };
  const pay = firing('RouteErrors');
  pay.labels = { ...pay.labels, route: 'pay' };
  await e.deliver(health);
  await e.deliver(pay);
  prom.healthy.add('health');
  await end();
  await tickUntilSettled(e, (ms) => (clock += ms), 'route-errors');
  t.teardown(() => e.engine.stop());
  const after = (await e.engine.records.list({})).filter((r) => r.rule === 'route-errors');
  t.equal(e.action.executed.length, 1, `route=pay, still bad, rolled back (${after.map((r) => `${r.alert?.labels.route}: ${r.state}`).join(' | ')})`);
  t.equal(after.find((r) => r.alert?.labels.route === 'health')?.state, 'not_confirmed');
});

t.test('a record alternating between a hold and a wait on the lock is closed within HOLD_MAX_AGE of its first hold', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s', HOLD_MAX_AGE: '10m' }, now: () => clock });
  await decidingElsewhere(e.store);
  await e.deliver(firing('SlowBurn'));
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'held-when-down')!;
  t.equal(rec.state, 'scheduled');
  const seen = new Set<string>();
  let ticks = 0;
  for (; ticks < 400; ticks++) {
    clock += 5_000;
    const now = (await e.engine.records.get(rec.id))!;
    if ((now.dueAt ?? 0) <= clock) e.prometheus!.down = now.state === 'scheduled'; // down at each wait's look, up at each hold's
    await e.engine.tick();
    const after = (await e.engine.records.get(rec.id))!;
    seen.add(after.state);
    if (!['scheduled', 'held', 'deciding'].includes(after.state)) break;
  }
  const after = (await e.engine.records.get(rec.id))!;
  t.ok(seen.has('held') && seen.has('scheduled'), `alternated (${[...seen].join(', ')})`);
  t.equal(after.state, 'expired', `closed after ${ticks + 1} ticks of 5 s`);
  t.match(after.outcome?.message, /held for over HOLD_MAX_AGE \(10m\)/);
  t.ok(ticks * 5_000 <= 12 * 60_000, 'within HOLD_MAX_AGE (and a hold retry) of its first hold');
});

t.test('a record left deciding whose alert resolved meanwhile is not rolled back when it is decided again', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  const plan = e.action.plan.bind(e.action);
  let fail = true;
  e.action.plan = async (ref) => {
    if (fail) {
      fail = false;
      throw Object.assign(new Error('503 etcd leader changed'), { name: 'KubeApiError', status: 503, retriable: true });
    }
    return plan(ref);
  };
  const alert = firing('HighErrorRate');
  await e.deliver(alert);
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'deciding', 'left deciding, retried shortly');
  await e.deliver({ ...alert, status: 'resolved', endsAt: clock });
  t.ok((await e.engine.records.get(rec.id))!.times.resolvedAt, 'resolution marked');
  clock += 2 * 30_000 + 1_000;
  await e.engine.tick();
  t.teardown(() => e.engine.stop());
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(e.action.executed.length, 0, `a resolved alert is not rolled back (${after.state})`);
  t.equal(after.state, 'not_confirmed');
  t.match(after.outcome?.message, /the alert is resolved/);
});

t.test('an SLO-at-risk rule past its first look, sent back by the lock and then held once, rolls back at the next good look', async (t) => {
  const { e, rec, end, advance } = await sloSentBackByLock(t);
  e.prometheus!.down = true;
  advance(5_000);
  await e.engine.tick();
  t.equal((await e.engine.records.get(rec.id))!.state, 'held', 'held: Prometheus down');
  e.prometheus!.down = false;
  await end();
  advance(60_000);
  await e.engine.tick();
  t.teardown(() => e.engine.stop());
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(e.action.executed.length, 1, `rolled back at the next good look (${after.state}: ${after.decision?.decision}: ${after.decision?.reason})`);
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
  await e.store.putRecord({ id: 'rb-running', target: TARGET, state: 'in_progress', createdAt: 1 });
  const lock = (await e.store.acquireLock(lockName(TARGET), rollbackHolder('replica-b', 'rb-running'), 60_000)) as Lock;
  t.ok(lock);
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-running')!;
  t.equal(rec.state, 'blocked');
  t.match(rec.outcome?.message, /another rollback of Deployment\/prod\/checkout is executing \(rb-running; its lock is held\)/);
});

// Found by a second review (2026-12-04); each case below but the scheduler's order failed before its fix.


// Q5, rolling upgrade: a replica of the previous version takes the target's lock under its bare
// name. A new replica reads that holder as "not a rollback (it writes)" and closes a P0 alert
// blocked at once, while the old replica's record is only deciding and then asks for approval:
// the P0 alert the lock wait was made for is lost for the whole upgrade window, with a message
// that says something else holds the lock.
t.test('rolling upgrade: a lock an old replica took under its bare name for a rollback still deciding is waited for, not blocked at once', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  const end = await decidingElsewhere(e.store, { owner: () => 'replica-b' }); // the previous version's owner: the replica alone
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'error-rate')!;
  t.equal(rec.state, 'scheduled', `waits, as for a new replica's lock (${rec.outcome?.message ?? ''})`);
  await end();
  clock += 5_000;
  await e.engine.tick();
  t.teardown(() => e.engine.stop());
  t.equal(e.action.executed.length, 1, 'rolled back once the old replica\'s P1 asked for approval');
});

// A third review found the closes of a resolved alert's rollback waiting for approval, and of
// one whose alert resolved during its guards, wrong (withdrawn): the resolution mark is the
// record's, and any alert of a coalesced burst, or of a chain, resolving set it.

// Coalescing (worker.ts, coalesce.ts) links a second alert B of the same rule and target to
// the records of A's evaluation. B's resolved notification marks A's record resolved
// (resolved:<id>), and resolve() now closes A's pending approval not_confirmed, though A is still
// firing. Before ccfe024 the record stayed pending_approval.
t.test('a coalesced alert resolving does not close the pending approval of another alert that still fires', async (t) => {
  const e = testEngine();
  t.teardown(() => e.engine.stop());
  const a = firing('HighLatency'); // P1: asks for approval
  const b = firing('HighLatency', 'checkout', { labels: { alertname: 'HighLatency', namespace: 'prod', deployment: 'checkout', pod: 'checkout-2' } });
  await e.deliver(a);
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'pending_approval');
  // B came in the same batch as A: coalesced into A's evaluation (linked to A's record)
  await e.engine.coalesced({ id: 'ev-b', alert: b, deliveries: 1 }, { id: 'ev-a', alert: a, deliveries: 1 });
  // B (one pod) clears; A still fires
  await e.deliver({ ...b, status: 'resolved', endsAt: Date.now() });
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'pending_approval', `A still fires: its approval stays open (${after.state}: ${after.outcome?.message ?? ''})`);
  const r = await e.engine.approve(rec.id, 'ops');
  t.equal(r.kind, 'ok', 'the approver can still approve');
});

// The same coalescing link, execute() path: B resolves while A's rollback is in its guards; the
// write-ahead merges B's mark into A's record, and execute() closes it not_confirmed: A (still
// firing, P0) is never rolled back, and its redelivery finds the closed record and does nothing.
t.test('a coalesced alert resolving while another alert\'s rollback is in its guards does not drop that rollback', async (t) => {
  const mem = new MemoryStore();
  const a = firing('HighErrorRate');
  const b = firing('HighErrorRate', 'checkout', { labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'checkout', pod: 'checkout-2' } });
  const other = testEngine({ store: mem, owner: 'replica-c' });
  let resolvedMeanwhile = false;
  const store = aroundStore(mem, async (op, args, call) => {
    const r = await call();
    if (op === 'acquireLock' && args[0] === lockName(TARGET) && r !== null && !resolvedMeanwhile) {
      resolvedMeanwhile = true;
      await other.deliver({ ...b, status: 'resolved', endsAt: Date.now() });
    }
    return r;
  });
  const e = testEngine({ store });
  t.teardown(() => e.engine.stop());
  await e.engine.coalesced({ id: 'ev-b', alert: b, deliveries: 1 }, { id: 'ev-a', alert: a, deliveries: 1 });
  await e.deliver(a);
  t.ok(resolvedMeanwhile);
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(e.action.executed.length, 1, `A still fires: rolled back (${rec.state}: ${rec.outcome?.message ?? ''})`);
});

// Alertmanager sends a resolved notification for an alert that still fires with the same
// startsAt (its endsAt lapsed while Prometheus could not reach it, resolve_timeout, a Prometheus
// restart keeping ActiveAt): the alert fires again with the same (fingerprint, startsAt), so the
// same record id: the firing redelivery is "already handled" and does nothing. Since ccfe024
// the record waiting for approval was closed by the resolution: the still-firing alert has no
// rollback left, nobody is asked again, and approving answers 409.
t.test('an alert firing again (same startsAt) after a resolved notification still has its approval to give', async (t) => {
  const e = testEngine();
  t.teardown(() => e.engine.stop());
  const alert = firing('HighLatency');
  await e.deliver(alert);
  const rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'pending_approval');
  await e.deliver({ ...alert, status: 'resolved', endsAt: Date.now(), receivedAt: Date.now() });
  await e.deliver({ ...alert, status: 'firing', receivedAt: Date.now() + 1 });
  const open = (await e.engine.records.list({})).filter((r) => ['deciding', 'held', 'scheduled', 'pending_approval', 'in_progress'].includes(r.state));
  t.equal(open.length, 1, `the still-firing alert has an open rollback (${(await e.engine.records.list({})).map((r) => `${r.id} ${r.state}`).join(', ')})`);
  const r = await e.engine.approve(rec.id, 'ops');
  t.equal(r.kind, 'ok', `approving it works (${JSON.stringify(r.kind === 'conflict' ? r.state : r.kind)})`);
});

// A chain's later target that waits for approval: execute() lets chained rollbacks go on after
// a resolution ("approved and chained ones go on"), but resolve() closes a chain target waiting
// for approval not_confirmed (and the chain stops: the rest are written blocked). The chain's
// first target fixing the service is exactly what resolves the alert.
t.test('a chain target waiting for approval is not closed by the alert resolving (the chain goes on)', async (t) => {
  const rulesText = CHAIN_RULES.replace('priority: P0', 'priority: P1\n    guards: { approval: { required: true, expiresAfter: 10m } }');
  const e = testEngine({ ruleText: rulesText, action: new PerTargetDeploymentAction() });
  t.teardown(() => e.engine.stop());
  const alert = firing('ReleaseErrors', 'api');
  await e.deliver(alert);
  const first = (await e.engine.records.list({}))[0]!;
  t.equal(first.state, 'pending_approval', 'the first target asks for approval');
  t.equal((await e.engine.approve(first.id, 'ops')).kind, 'ok');
  await e.engine.idle();
  await new Promise((r) => setTimeout(r, 200));
  await e.engine.idle();
  const second = (await e.engine.records.list({})).find((r) => r.chain?.index === 1);
  t.ok(second, `the second target was written (${(await e.engine.records.list({})).map((r) => `${r.target} ${r.state}`).join(', ')})`);
  t.equal(second?.state, 'pending_approval', 'and asks for approval');
  await e.deliver({ ...alert, status: 'resolved', endsAt: Date.now() });
  const after = (await e.engine.records.get(second!.id))!;
  t.equal(after.state, 'pending_approval', `a chain goes on after a resolution (${after.state}: ${after.outcome?.message ?? ''})`);
});

// Q6: the scheduler passes over a target's records while one of them is "busy" (eachAtMost), and
// a record that is not due yet is handed to the work (which returns at once) before the due check.
// Newer waiting records come first (newest first): one not due yet ahead of a due one of the same
// target takes the target's place for the pass. Under a stream of alerts meeting the lock (each a
// new record, due LOCK_TTL/6 later, listed first), the due re-checks of that target keep being
// passed over.
t.test('a due re-check is not passed over for a newer record of the same target that is not due yet', async (t) => {
  let clock = Date.now();
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock });
  const end = await decidingElsewhere(e.store);
  await e.deliver(firing('HighErrorRate'));
  const first = (await e.engine.records.list({})).find((r) => r.rule === 'error-rate')!;
  t.equal(first.state, 'scheduled');
  await end(); // the holder asked for approval: the lock is free
  clock += 5_000; // the first record is due now
  // another alert of the target met the lock a moment ago (its record due in 5 s): simulated by a newer scheduled record
  await e.store.putRecord({ ...first, id: 'rb-newer', createdAt: clock, updatedAt: clock, dueAt: clock + 5_000, lockWaitSince: clock, timeline: [] });
  await e.engine.tick();
  t.teardown(() => e.engine.stop()); // (its verification runs on in the background on the stopped clock: not waited for)
  const after = (await e.engine.records.get(first.id))!;
  t.not(after.state, 'scheduled', 'the due record was re-checked at this tick');
  t.equal(e.action.executed.length, 1, 'and rolled back');
});

// Q2, a holder that is this record's own id. The guard takes it for "an earlier attempt of this
// record, by a replica that stopped" and answers later, without reading the record. But the
// scheduler takes up a record left deciding by a replica whose heartbeat lapsed (a stall, a store
// partition) while that replica may still hold the lock it took in the guards; if it then goes on
// and writes its write-ahead (in_progress) before this replica's wait is saved, the save (no
// expectState) puts the record back to scheduled while the rollback executes. Its end (endOnce:
// only while in_progress) is then not written, and the re-checks close it blocked (or it is taken
// again once the lock is free): an executed rollback recorded as not executed.
t.test('a wait on a lock held under this record\'s own id does not write over the record executing elsewhere', async (t) => {
  let clock = Date.now();
  const mem = new MemoryStore();
  const base = orphanRecord('rb-own');
  const rec = { ...base, state: 'deciding' as const, owner: 'replica-a', createdAt: clock - 60_000, updatedAt: clock - 60_000, times: {}, timeline: [] };
  delete (rec as { lockToken?: number }).lockToken;
  await mem.putRecord(rec);
  // replica-a (its heartbeat lapsed: stalled) took the lock in its guards and is about to go on
  await mem.acquireLock(lockName(TARGET), rollbackHolder('replica-a', rec.id), 30_000);
  let wroteAhead = false;
  const store = aroundStore(mem, async (op, args, call) => {
    if (op === 'lockOwner' && !wroteAhead) {
      wroteAhead = true;
      // replica-a wakes up and writes its write-ahead: it executes now
      await mem.putRecord({ ...rec, state: 'in_progress', owner: 'replica-a', lockToken: 1, updatedAt: clock, times: { startedAt: clock } });
    }
    return call();
  });
  const b = testEngine({ store, owner: 'replica-b', now: () => clock, env: { LOCK_TTL: '30s' } });
  await b.engine.tick();
  t.teardown(() => b.engine.stop());
  t.ok(wroteAhead, 'replica-b took the record up and met the lock held under its own id');
  const after = (await mem.getRecord(rec.id)) as { state: string; timeline?: { step: string }[] };
  t.equal(after.state, 'in_progress', `the record executing on replica-a stays in_progress (${after.state}: ${(after.timeline ?? []).map((s) => s.step).join(', ')})`);
});

t.test('a step back chosen before a wait on the lock is chosen again at the re-check, not kept', async (t) => {
  let clock = Date.now();
  const ruleText = `${RULES}
  - name: step-back
    match: ['alertname="StepBack"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { allowStepBack: true, maxStepBack: 2 }
`;
  const e = testEngine({ env: { LOCK_TTL: '30s' }, now: () => clock, ruleText });
  // the last rollback restored revision 5 and did not recover
  await e.store.putRecord({ id: 'rb-prev', target: TARGET, state: 'failed', createdAt: 1, plan: { toRevision: 5 } } as never);
  await e.store.setValue(`cooldown:${TARGET}`, JSON.stringify({ id: 'rb-prev', at: clock - 60_000, until: clock + 3_600_000, outcome: 'failed' }), { ttlMs: 3_600_000 });
  await decidingElsewhere(e.store);
  await e.deliver(firing('StepBack'));
  const rec = (await e.engine.records.list({})).find((r) => r.rule === 'step-back')!;
  t.ok(rec.timeline.some((s) => s.step === 'step_back'), `a step back was chosen (${rec.timeline.map((s) => s.step).join(', ')})`);
  t.equal(rec.state, 'scheduled', 'then sent back by the lock');
  t.equal(rec.ref.toRevision, undefined, 'its revision is not kept for the re-check');
});
