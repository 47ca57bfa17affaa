// A store failure after the guards took the target lock (here: the concurrency guard's call, after
// the plan), with the store still down while the failed attempt gives its locks back: the record
// is left deciding and the lock stays held by this replica until LOCK_TTL. The scheduler's next
// re-decision of that record by the same replica gives that lock back first (fenced by its token)
// and goes on at once: it is neither blocked (closed `blocked`: the alert ended by its own lock)
// nor made to wait out LOCK_TTL; it never runs twice, and it never frees a lock another replica
// took meanwhile.
import t, { type Test } from 'tap';
import { lockName } from '../../../src/guards/lock.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError, type Store } from '../../../src/store/store.js';
import { firing, testEngine } from '../../support/engine.js';
import { aroundStore } from '../../support/store-proxy.js';

const TARGET = 'Deployment/prod/checkout';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The store goes down at the concurrency guard's first call (after the plan) and stays down until `up()` (or again after `down()`). */
function rig(env: Record<string, string> = {}) {
  const mem = new MemoryStore();
  let down = false;
  let tripped = false;
  const store = aroundStore(mem, async (op, _args, call) => {
    if (op === 'acquireSlot' && !tripped) tripped = down = true;
    if (down) throw new StoreUnavailableError(`redis ${op}: connection lost (injected)`);
    return call();
  });
  let ahead = 0;
  const e = testEngine({ store, env: { LOCK_TTL: '30s', ...env }, now: () => Date.now() + ahead });
  return { ...e, mem, up: () => (down = false), down: () => (down = true), later: (ms: number) => (ahead += ms) };
}

/** Whether `owner` can take the target lock now (given back at once). */
async function lockFree(store: Store): Promise<boolean> {
  const l = await store.acquireLock(lockName(TARGET), 'probe', 60_000);
  if (l) await store.releaseLock(l);
  return l !== null;
}

async function failOnce(r: ReturnType<typeof rig>, t: Test) {
  const alert = firing('HighErrorRate');
  await t.rejects(r.deliver(alert), StoreUnavailableError, 'the handler throws: the event stays queued');
  r.up();
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'deciding', 'left deciding');
  t.notOk(await lockFree(r.mem), 'the failed attempt could not give its target lock back (the store was down)');
  return alert;
}

t.test("the next tick re-decides at once: the attempt's own lock is given back first, not waited out", async (t) => {
  const r = rig();
  await failOnce(r, t);
  await r.engine.tick();
  await r.engine.idle();
  const [rec] = await r.engine.records.list({});
  t.equal(r.action.executed.length, 1, `rolled back at the first tick (${rec?.state}: ${rec?.outcome?.message ?? ''})`);
  t.not(rec?.state, 'blocked');
});

t.test('re-decided once the age wait has passed, the lock still held: not blocked by its own lock', async (t) => {
  // (the wait is counted from the record's last write, which a failed attempt does not refresh)
  const r = rig();
  await failOnce(r, t);
  r.later(10 * 60_000);
  await r.engine.tick();
  await r.engine.idle();
  const [rec] = await r.engine.records.list({});
  t.not(rec?.state, 'blocked', `${rec?.state}: ${rec?.outcome?.message ?? ''}`);
  t.equal(r.action.executed.length, 1, 'rolled back once');
});

t.test('never twice: ticks at once and a redelivery re-decide it once', async (t) => {
  const r = rig();
  const alert = await failOnce(r, t);
  r.action.executeDelayMs = 200;
  await Promise.all([r.engine.tick(), r.engine.tick(), r.deliver(alert)]);
  await r.engine.tick();
  await r.engine.idle();
  t.equal(r.action.executed.length, 1, 'executed once');
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.timeline.filter((s) => s.step === 'recovery').length, 1, 'taken up again once');
});

t.test('the lock expired and another replica took it meanwhile: the give-back does not free it', async (t) => {
  const r = rig({ LOCK_TTL: '300ms' });
  await failOnce(r, t);
  await sleep(400);
  const theirs = await r.mem.acquireLock(lockName(TARGET), 'replica-b', 60_000);
  t.ok(theirs, 'replica-b took the expired lock');
  await r.engine.tick();
  await r.engine.idle();
  t.ok(await r.mem.renewLock(theirs!, 60_000), "replica-b's lock is still its own");
  t.equal(r.action.executed.length, 0, 'not executed under another replica\'s lock');
});

t.test('the store still down at the next tick: nothing decided, nothing lost; decided at the tick after', async (t) => {
  const r = rig();
  await failOnce(r, t);
  r.down();
  await t.rejects(r.engine.tick(), StoreUnavailableError, 'the tick cannot list the records');
  r.up();
  // the store answers the listing and the due claim, not the give-back
  const releaseLock = r.mem.releaseLock.bind(r.mem);
  let refused = 0;
  r.mem.releaseLock = async (l) => {
    if (l.name === lockName(TARGET) && refused++ === 0) throw new StoreUnavailableError('redis releaseLock: connection lost (injected)');
    return releaseLock(l);
  };
  await r.engine.tick();
  await r.engine.idle();
  t.equal(refused, 1, 'the give-back was tried');
  t.equal(r.action.executed.length, 0, 'not decided while what the attempt held could not be given back');
  t.equal((await r.engine.records.list({}))[0]?.state, 'deciding', 'still deciding');
  await r.engine.tick();
  await r.engine.idle();
  t.equal(r.action.executed.length, 1, 'decided again once the give-back went through: rolled back once');
});
