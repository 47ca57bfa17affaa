// A replica's heartbeat is rewritten on its own timer: a scheduler tick held up does not make a
// live replica look gone (its claims and records left deciding would be taken up twice).
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { capturingLogger } from '../../support/secret-template.js';
import { testEngine } from '../../support/engine.js';

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

const until = async (cond: () => boolean | Promise<boolean>, ms = 2_000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

t.test('the heartbeat is rewritten while a scheduler tick is held up', async (t) => {
  const held = { value: true };
  const s = slowStore(new MemoryStore(), held, { value: false });
  let clock = 1_000_000;
  const e = testEngine({ store: s.store, now: () => clock });
  const tick = e.engine.tick();
  await until(() => s.listings.started > 0);
  t.equal(await e.store.getValue('replica:replica-a'), '1000000', 'the tick wrote the heartbeat at its start');
  const stop = e.engine.keepAlive(10);
  t.teardown(stop);
  clock += 20_000;
  await until(async () => (await e.store.getValue('replica:replica-a')) === '1020000');
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
  await until(async () => ((await e.metrics.registry.getSingleMetricAsString('rollguard_heartbeat_failures_total')).match(/_total (\d+)/)?.[1] ?? '0') !== '0');
  t.match(logs.text(), /"level":40.*could not write the replica heartbeat/, 'a warning says so');
  t.equal(await e.store.getValue('replica:replica-a'), null, 'nothing written while the store is down');
  down.value = false;
  clock = 7_000;
  await until(async () => (await e.store.getValue('replica:replica-a')) === '7000');
  stop();
  clock = 9_000;
  await new Promise((r) => setTimeout(r, 40));
  t.equal(await e.store.getValue('replica:replica-a'), '7000', 'no write after stop');
});
