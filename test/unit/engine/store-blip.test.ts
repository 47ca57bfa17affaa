// A store failure on the way to a rollback, before anything is written to the cluster, never ends
// the alert: the record is left as the store has it (deciding), the event stays queued (the handler
// throws StoreUnavailableError, which the queue worker retries), and the scheduler decides the
// record again. A write whose answer is lost after it landed (in_progress) is never executed twice.
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError, type Store } from '../../../src/store/store.js';
import { firing, testEngine } from '../../support/engine.js';
import { aroundStore } from '../../support/store-proxy.js';

/** The memory store with chosen calls failing: 'before' (nothing done) or 'after' (done, the answer lost). */
function flaky(inner: Store) {
  const failing: { op: string; nth: number; how: 'before' | 'after' }[] = [];
  const calls = new Map<string, number>();
  const store = aroundStore(inner, async (op, _args, call) => {
    const n = (calls.get(op) ?? 0) + 1;
    calls.set(op, n);
    const i = failing.findIndex((f) => f.op === op && f.nth === n);
    const how = i >= 0 ? failing.splice(i, 1)[0]!.how : undefined;
    if (how === 'before') throw new StoreUnavailableError(`redis ${op}: Command timed out (injected)`);
    const r = await call();
    if (how === 'after') throw new StoreUnavailableError(`redis ${op}: Command timed out (injected, after it ran)`);
    return r;
  });
  /** the nth call of op from now on fails */
  const fail = (op: string, nth: number, how: 'before' | 'after' = 'before') => failing.push({ op, nth: (calls.get(op) ?? 0) + nth, how });
  return { store, fail };
}

function rig() {
  const mem = new MemoryStore();
  const f = flaky(mem);
  // the engine's clock runs, and can be put forward (past the wait before its own record is decided again)
  let ahead = 0;
  const e = testEngine({ store: f.store, now: () => Date.now() + ahead });
  return { ...e, mem, fail: f.fail, later: (ms: number) => (ahead += ms) };
}

t.test('a guard\'s store call fails once: the record stays deciding, the event is retried, the scheduler rolls back once', async (t) => {
  const r = rig();
  r.fail('acquireLock', 1);
  const alert = firing('HighErrorRate');
  await t.rejects(r.deliver(alert), StoreUnavailableError, 'the handler throws: the worker keeps the event queued');
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'deciding', 'not closed as an error');
  t.equal(r.action.executed.length, 0);
  await r.deliver(alert); // the redelivery finds the record: nothing twice
  t.equal(r.action.executed.length, 0, 'the redelivery does not decide it a second time');
  r.later(10 * 60_000);
  await r.engine.tick();
  await r.engine.idle();
  t.equal(r.action.executed.length, 1, 'decided again by the scheduler: rolled back once');
  const [after] = await r.engine.records.list({});
  t.ok(after?.timeline.some((s) => s.step === 'recovery'), 'its timeline says it was decided again');
  // (the fake Prometheus keeps the trigger up, so the rollback's own verification then says it failed)
  t.same(r.notifier.sent.map((n) => n.kind), ['rollback_started', 'rollback_failed'], 'nothing said before it was executed: started once, then its verification');
});

t.test('the in_progress write-ahead fails (nothing done): not recorded as a failed rollback; decided again and executed once', async (t) => {
  const r = rig();
  r.fail('putRecord', 2); // the write-ahead of the new record is the first, in_progress the second
  const alert = firing('HighErrorRate');
  await t.rejects(r.deliver(alert), StoreUnavailableError);
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'deciding', `the store holds it deciding (${rec?.state}: ${rec?.outcome?.message ?? ''})`);
  t.equal(r.action.executed.length, 0);
  t.same(r.notifier.sent.map((n) => n.kind), [], 'nothing was said: nothing happened');
  r.later(10 * 60_000);
  await r.engine.tick();
  await r.engine.idle();
  t.equal(r.action.executed.length, 1, 'rolled back once');
});

t.test('the in_progress write lands but its answer is lost: never executed, found by the scheduler, interrupted and escalated', async (t) => {
  const r = rig();
  r.fail('putRecord', 2, 'after');
  const alert = firing('HighErrorRate');
  await t.rejects(r.deliver(alert), StoreUnavailableError);
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'in_progress', 'the write landed');
  t.equal(r.action.executed.length, 0);
  r.later(10 * 60_000);
  await r.engine.tick();
  await r.engine.idle();
  const [after] = await r.engine.records.list({});
  t.equal(r.action.executed.length, 0, 'not executed: whether it was cannot be told from the record alone');
  t.equal(after?.state, 'interrupted', after?.outcome?.message ?? '');
});

t.test('a resolved alert never writes back the state it read: another replica\'s move stands, and the resolution still lands', async (t) => {
  const mem = new MemoryStore();
  let moveOnMark: (() => Promise<void>) | undefined;
  // the other replica's write lands between the resolution's read of the record and its write
  const store = aroundStore(mem, async (op, args, call) => {
    const r = await call();
    if (op === 'setValue' && String(args[0]).startsWith('resolved:') && moveOnMark) await moveOnMark();
    return r;
  });
  const e = testEngine({ store });
  const alert = firing('HighErrorRate');
  await e.deliver(alert);
  const [done] = await e.engine.records.list({});
  // the rollback as it stood mid-way (in_progress), and as the replica running it closes it
  const { resolvedAt: _r, ...times } = done!.times;
  await mem.putRecord({ ...done!, state: 'in_progress', times });
  moveOnMark = async () => {
    moveOnMark = undefined;
    await mem.putRecord({ ...done!, state: 'succeeded', times, outcome: { result: 'succeeded', message: 'closed by replica-b' } });
  };
  await e.deliver({ ...alert, status: 'resolved', endsAt: Date.now() });
  const after = await e.engine.records.get(done!.id);
  t.equal(after?.state, 'succeeded', 'the stale in_progress copy was not written over the close');
  t.equal(after?.outcome?.message, 'closed by replica-b');
  t.type(after?.times.resolvedAt, 'number', 'the resolution was written, to the record as it is now');
  t.ok(after?.timeline.some((s) => s.step === 'resolved'));
});

t.test('an ordered chain whose first target\'s close fails (the store) does not leave the rest blocked by an ending that did not happen', async (t) => {
  const { CHAIN_RULES, PerTargetDeploymentAction } = await import('../../support/engine.js');
  const mem = new MemoryStore();
  let failClose = true;
  // the first target's refusal is written closed: that write fails once
  const store = aroundStore(mem, async (op, args, call) => {
    const rec = args[0] as { ref?: { name?: string }; state?: string };
    if (op === 'putRecord' && failClose && rec.ref?.name === 'api' && rec.state === 'refused') {
      failClose = false;
      throw new StoreUnavailableError('redis putRecord: Command timed out (injected)');
    }
    return call();
  });
  const action = new PerTargetDeploymentAction();
  const plan = action.plan.bind(action);
  let refuseOnce = true;
  // the first plan of api is refused for a passing reason (the chain would stop there)
  action.plan = async (ref) => {
    const p = await plan(ref);
    if (ref.name === 'api' && refuseOnce) {
      refuseOnce = false;
      return { ...p, refusal: { code: 'paused', message: 'the Deployment is paused (kubectl rollout resume it first)' } };
    }
    return p;
  };
  let ahead = 0;
  const e = testEngine({ store, action, ruleText: CHAIN_RULES, now: () => Date.now() + ahead });
  const alert = firing('ReleaseErrors', 'api', { fingerprint: 'fp-chain-blip', labels: { alertname: 'ReleaseErrors', namespace: 'prod' } });
  await t.rejects(e.deliver(alert), StoreUnavailableError);
  const states = async () => Object.fromEntries((await e.engine.records.list({ limit: 10 })).map((r) => [r.ref.name, r.state]));
  t.same(await states(), { api: 'deciding' }, 'the close did not land: no later target was written blocked by it');
  for (let i = 0; i < 4; i++) {
    ahead += 10 * 60_000;
    await e.engine.tick();
    await e.engine.idle();
  }
  t.same(action.executed.map((x) => x.ref.name), ['api', 'auth', 'web'], 'decided again: the whole chain rolled back, in order');
});

t.test('the cooldown read beside the in_progress write fails, the write landed: the rollback goes on, executed once', async (t) => {
  const mem = new MemoryStore();
  const cooldownReads: string[] = [];
  let putsInProgress = 0;
  const store = aroundStore(mem, async (op, args, call) => {
    if (op === 'putRecord' && (args[0] as { state?: string }).state === 'in_progress') putsInProgress++;
    // the read issued together with the in_progress write-ahead (the guard's own read came before it)
    if (op === 'getValue' && String(args[0]).startsWith('cooldown:')) {
      cooldownReads.push(String(args[0]));
      if (putsInProgress === 1 && cooldownReads.length === 2) throw new StoreUnavailableError('redis getValue: Command timed out (injected)');
    }
    return call();
  });
  const e = testEngine({ store });
  await e.deliver(firing('HighErrorRate', 'checkout'));
  t.ok(cooldownReads.length >= 2, 'the read failed as planned');
  t.equal(e.action.executed.length, 1, 'rolled back');
  const [rec] = await e.engine.records.list({});
  t.notOk(['interrupted', 'deciding', 'error'].includes(rec?.state ?? ''), `${rec?.state}: ${rec?.outcome?.message ?? ''}`);
  t.notOk(e.notifier.sent.some((n) => n.kind === 'rollback_interrupted'));
});

t.test('an alert resolving while its held rollback is re-checked: the re-check took it up first, so the resolution is written to it and does not close it under the re-check', async (t) => {
  let ahead = 0;
  const e = testEngine({ now: () => Date.now() + ahead });
  const p = e.prometheus!;
  p.down = true;
  const alert = firing('SlowBurn');
  await e.deliver(alert);
  const [held] = await e.engine.records.list({});
  t.equal(held?.state, 'held');
  p.down = false;
  // the scheduler's confirmation waits at a gate while the resolved alert is handled
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let gated = false;
  const query = p.query.bind(p);
  const queryRange = p.queryRange.bind(p);
  p.query = async (...a: Parameters<typeof query>) => ((gated = true), await gate, query(...a));
  p.queryRange = async (...a: Parameters<typeof queryRange>) => ((gated = true), await gate, queryRange(...a));
  ahead += 2 * 60_000; // due (a minute after the hold), within HOLD_MAX_AGE
  const tick = e.engine.tick();
  for (let i = 0; i < 200 && !gated; i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(gated, 'the scheduler is confirming');
  await e.deliver({ ...alert, status: 'resolved', endsAt: Date.now(), receivedAt: Date.now() });
  const during = await e.engine.records.get(held!.id);
  t.equal(during?.state, 'deciding', 'taken up by the re-check: not closed under it');
  t.type(during?.times.resolvedAt, 'number', 'the resolution is written to it');
  release();
  await tick;
  await e.engine.idle();
  const after = await e.engine.records.get(held!.id);
  const ends = after!.timeline.filter((s) => s.step === 'ended' || s.step === 'verified').length;
  t.equal(ends, 1, `closed once (${after?.state}: ${after?.outcome?.message ?? ''})`);
  t.equal(await metricSum(e), 1, 'its outcome counted once');
});

/** rollguard_rollbacks_total over every label set. */
async function metricSum(e: ReturnType<typeof testEngine>): Promise<number> {
  const text = await e.metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith('rollguard_rollbacks_total{'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}
