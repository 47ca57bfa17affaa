// A replica's heartbeat is rewritten on its own timer: a scheduler tick held up does not make a
// live replica look gone (its claims and records left deciding would be taken up twice).
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { capturingLogger } from '../../support/secret-template.js';
import { waitFor } from '../../support/ports.js';
import { FakePrometheus, firing, testEngine } from '../../support/engine.js';

/** A store whose record listing (the scheduler's tick) hangs while `held.value`, and whose writes fail while `down.value`. */
function slowStore(inner: Store, held: { value: boolean }, down: { value: boolean }) {
  const listings = { started: 0 };
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === 'listRecordsPage' && held.value) {
        return async (...a: unknown[]) => {
          listings.started++;
          await released;
          return (v as (...x: unknown[]) => unknown).apply(target, a);
        };
      }
      if (prop === 'setValue' && down.value) return async () => Promise.reject(new Error('store unavailable'));
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { store, listings, release };
}

/** A store on which every read of a heartbeat fails (a command timing out); writes go through. */
function failingHeartbeatReads(inner: Store): Store {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === 'getValue') return async (key: string) => (key.startsWith('replica:') ? Promise.reject(new Error('Command timed out')) : inner.getValue(key));
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** rollguard_heartbeat_failures_total{reason} */
async function failures(metrics: { registry: { getSingleMetricAsString(n: string): Promise<string> } }, reason: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString('rollguard_heartbeat_failures_total');
  return Number(new RegExp(`reason="${reason}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

/** Waits (up to 2 s) for `cond` to hold. */
const until = (cond: () => boolean | Promise<boolean>) => waitFor('the condition', async () => cond(), 2_000, 5);

t.test('the heartbeat is rewritten while a scheduler tick is held up', async (t) => {
  const held = { value: true };
  const s = slowStore(new MemoryStore(), held, { value: false });
  let clock = 1_000_000;
  const e = testEngine({ store: s.store, now: () => clock });
  const tick = e.engine.tick();
  await until(() => s.listings.started > 0);
  t.match(await e.store.getValue('replica:replica-a'), / 1000000$/, 'the tick wrote the heartbeat at its start');
  const stop = e.engine.keepAlive(10);
  t.teardown(stop);
  clock += 20_000;
  await until(async () => (await e.store.getValue('replica:replica-a'))?.endsWith(' 1020000') === true);
  t.pass('rewritten while the tick is still held up');
  let done = false;
  void tick.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(done, 'the tick was held up all along');
  s.release();
  await tick;
});

t.test('a failed heartbeat write is counted and logged, and the next one goes on', async (t) => {
  const down = { value: true };
  const s = slowStore(new MemoryStore(), { value: false }, down);
  const logs = capturingLogger();
  let clock = 5_000;
  const e = testEngine({ store: s.store, now: () => clock, logger: logs.logger });
  const stop = e.engine.keepAlive(10);
  t.teardown(stop);
  await until(async () => (await failures(e.metrics, 'store')) > 0);
  t.match(logs.text(), /"level":40.*could not write the replica heartbeat/, 'a warning says so');
  t.equal(await e.store.getValue('replica:replica-a'), null, 'nothing written while the store is down');
  down.value = false;
  clock = 7_000;
  await until(async () => (await e.store.getValue('replica:replica-a'))?.endsWith(' 7000') === true);
  stop();
  clock = 9_000;
  await new Promise((r) => setTimeout(r, 40));
  t.match(await e.store.getValue('replica:replica-a'), / 7000$/, 'no write after stop');
});

t.test('two live processes under one CONSUMER_NAME: each sees the other in the heartbeat, says so and counts it', async (t) => {
  const shared = new MemoryStore();
  const logs = capturingLogger();
  const a = testEngine({ store: shared, owner: 'same', logger: logs.logger });
  const b = testEngine({ store: shared, owner: 'same' });
  await a.engine.heartbeat();
  await b.engine.heartbeat();
  const stopA = a.engine.keepAlive(10);
  const stopB = b.engine.keepAlive(13);
  t.teardown(() => (stopA(), stopB()));
  await until(async () => (await failures(a.metrics, 'name_in_use')) > 0);
  t.match(logs.text(), /"level":50.*another live process writes the heartbeat of CONSUMER_NAME \\"same\\": give each replica its own CONSUMER_NAME/);
});

t.test('a process restarted under the name of a dead one takes its heartbeat over without a complaint', async (t) => {
  const shared = new MemoryStore();
  const dead = testEngine({ store: shared, owner: 'pod-0' });
  await dead.engine.heartbeat(); // then it died
  const logs = capturingLogger();
  const restarted = testEngine({ store: shared, owner: 'pod-0', logger: logs.logger });
  // no write of its own first: keepAlive's first turn finds the dead process's heartbeat
  const stop = restarted.engine.keepAlive(10);
  t.teardown(stop);
  await new Promise((r) => setTimeout(r, 60));
  t.equal(await failures(restarted.metrics, 'name_in_use'), 0);
  t.notMatch(logs.text(), /another live process/);
});

t.test('a failing read of the heartbeat never stops its write', async (t) => {
  const inner = new MemoryStore();
  const store = failingHeartbeatReads(inner);
  let clock = 1_000;
  const e = testEngine({ store, now: () => clock });
  await e.engine.heartbeat();
  const stop = e.engine.keepAlive(10);
  t.teardown(stop);
  clock = 2_000;
  await until(async () => (await inner.getValue('replica:replica-a'))?.endsWith(' 2000') === true);
  t.pass('rewritten although every read of it failed');
});

t.test('a replica that leaves (a clean shutdown) is gone at once to the others', async (t) => {
  const shared = new MemoryStore();
  const a = testEngine({ store: shared, owner: 'rg-a' });
  await a.engine.heartbeat();
  t.not(await shared.getValue('replica:rg-a'), null);
  t.equal(await a.engine.leave(), true);
  await new Promise((r) => setTimeout(r, 5));
  t.equal(await shared.getValue('replica:rg-a'), null);
});

t.test('leave() does not remove the heartbeat while an event is still being handled (one the worker gave up waiting for)', async (t) => {
  const shared = new MemoryStore();
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  const prometheus = new FakePrometheus();
  const query = prometheus.queryRange.bind(prometheus);
  let asked = false;
  prometheus.queryRange = async (...a: Parameters<typeof query>) => {
    asked = true;
    await released; // a slow confirmation, past the worker's deadline
    return query(...a);
  };
  const a = testEngine({ store: shared, owner: 'rg-a', prometheus });
  await a.engine.heartbeat();
  const handling = a.engine.handle({ id: 'ev-1', alert: firing('HighErrorRate'), deliveries: 1 });
  await until(() => asked);
  t.equal(await a.engine.leave(), false, 'not left: an event is still being handled');
  t.not(await shared.getValue('replica:rg-a'), null, 'the heartbeat is still there');
  release();
  await handling;
  await a.engine.idle();
  t.equal(await a.engine.leave(), true, 'left once nothing runs');
});

t.test('leave() removes only this process\'s own heartbeat, never that of another live process under the same name', async (t) => {
  const shared = new MemoryStore();
  const a = testEngine({ store: shared, owner: 'same' });
  const b = testEngine({ store: shared, owner: 'same' });
  await a.engine.heartbeat();
  await b.engine.heartbeat(); // the other process wrote last
  const theirs = await shared.getValue('replica:same');
  t.equal(await a.engine.leave(), false);
  t.equal(await shared.getValue('replica:same'), theirs, "the other process's heartbeat is kept");
});

t.test('a failed heartbeat read is counted and logged (the write goes on)', async (t) => {
  const inner = new MemoryStore();
  const store = failingHeartbeatReads(inner);
  const logs = capturingLogger();
  const e = testEngine({ store, logger: logs.logger });
  const stop = e.engine.keepAlive(10);
  t.teardown(stop);
  await until(async () => (await failures(e.metrics, 'store')) > 0);
  t.match(logs.text(), /"level":40.*could not read the replica heartbeat/);
});

t.test('a failed heartbeat write at the start of a tick does not stop the tick: its due work is done', async (t) => {
  const down = { value: false };
  const s = slowStore(new MemoryStore(), { value: false }, down);
  let clock = Date.now();
  const e = testEngine({ store: s.store, now: () => clock });
  await e.deliver(firing('HighLatency')); // a P1 rule that needs an approval within 10 minutes
  const [pending] = await e.store.listRecords({});
  t.equal(pending?.state, 'pending_approval');
  down.value = true; // every setValue fails: the heartbeat's among them
  clock += 11 * 60_000;
  await e.engine.tick();
  t.equal(await failures(e.metrics, 'store'), 1, 'the failed write was counted');
  const [after] = await e.store.listRecords({});
  t.equal(after?.state, 'expired', 'the tick went on and expired the approval');
});

t.test('both reasons are exported at 0 before any problem', async (t) => {
  const e = testEngine();
  const text = await e.metrics.registry.getSingleMetricAsString('rollguard_heartbeat_failures_total');
  t.match(text, /reason="store"\} 0/);
  t.match(text, /reason="name_in_use"\} 0/);
});
