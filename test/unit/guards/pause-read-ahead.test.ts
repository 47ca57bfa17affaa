// The pause guard's state read ahead (with the record's write-ahead, one round trip fewer) is its
// answer only while fresh: a guard that runs later reads again, so a pause set meanwhile stops it.
import t, { type Test } from 'tap';
import { loadConfig } from '../../../src/config.js';
import { DEFAULT_GUARDS } from '../../../src/engine/context.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { PAUSE_READ_AHEAD_MS, freshReadAhead, pauseGuard, readPauseAhead, writePause } from '../../../src/guards/pause.js';
import type { GuardContext } from '../../../src/guards/guard.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { FakePrometheus, firing, testEngine } from '../../support/engine.js';

/** A store counting its getValue calls (the pause guard's read). */
function counting(inner: Store) {
  const n = { reads: 0 };
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === 'getValue') return (...a: unknown[]) => (n.reads++, (v as (...x: unknown[]) => unknown).apply(target, a));
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { store, n };
}

const ctx = (store: Store, now: number, extra: Partial<GuardContext> = {}): GuardContext => ({
  record: { id: 'rb-1', target: 'Deployment/prod/api' } as RollbackRecord,
  settings: DEFAULT_GUARDS,
  config: loadConfig({}),
  store,
  now,
  owner: 'replica-a',
  ...extra,
});

/** A monotonic clock the test moves by hand. */
function manualClock(start = 5_000) {
  const c = { t: start, read: () => c.t };
  return c;
}

t.test('a fresh read ahead is the answer: no second read', async (t) => {
  const { store, n } = counting(new MemoryStore());
  const mono = manualClock();
  const ahead = readPauseAhead(store, mono.read);
  t.equal(n.reads, 1);
  mono.t += PAUSE_READ_AHEAD_MS;
  const r = await pauseGuard.check(ctx(store, 1_000, { pauseAhead: ahead }));
  t.equal(r.verdict, 'allow');
  t.equal(n.reads, 1, 'read once, ahead');
});

t.test('a stale read ahead is read again, and a pause set since it stops the rollback', async (t) => {
  const { store, n } = counting(new MemoryStore());
  const mono = manualClock();
  const ahead = readPauseAhead(store, mono.read);
  await writePause(store, { by: 'sre', at: 1_050, reason: 'freeze' });
  mono.t += PAUSE_READ_AHEAD_MS + 1;
  const r = await pauseGuard.check(ctx(store, 1_000, { pauseAhead: ahead }));
  t.equal(r.verdict, 'block');
  t.match(r.reason, /paused \(by sre/);
  t.equal(n.reads, 2, 'read again at the guard');
});

t.test('the age is taken on the monotonic clock, not the wall clock the guard is given', async (t) => {
  const { store, n } = counting(new MemoryStore());
  const mono = manualClock();
  const ahead = readPauseAhead(store, mono.read);
  await writePause(store, { by: 'sre', at: 1_050 });
  mono.t += 1_000;
  // the wall clock the guard sees says "no time has passed" (stepped back): the read is stale all the same
  const r = await pauseGuard.check(ctx(store, 0, { pauseAhead: ahead }));
  t.equal(r.verdict, 'block');
  t.equal(n.reads, 2);
});

t.test('a clock reading earlier than the issue (negative age) is not fresh', async (t) => {
  const { store, n } = counting(new MemoryStore());
  const mono = manualClock();
  const ahead = readPauseAhead(store, mono.read);
  await writePause(store, { by: 'sre', at: 1_050 });
  mono.t -= 1_000;
  t.notOk(freshReadAhead(ahead));
  const r = await pauseGuard.check(ctx(store, 1_000, { pauseAhead: ahead }));
  t.equal(r.verdict, 'block');
  t.equal(n.reads, 2);
});

t.test('the default clock is the process\'s monotonic clock', async (t) => {
  const ahead = readPauseAhead(new MemoryStore());
  t.ok(freshReadAhead(ahead), 'fresh when just issued');
  t.ok(Math.abs(ahead.issuedAt - performance.now()) < 1_000, 'issued on performance.now()');
  await new Promise((r) => setTimeout(r, PAUSE_READ_AHEAD_MS + 20));
  t.notOk(freshReadAhead(ahead), 'stale after the window in real time');
});

t.test('a read ahead that failed is read again', async (t) => {
  const { store } = counting(new MemoryStore());
  await writePause(store, { by: 'sre', at: 1_000 });
  const state = Promise.reject(new Error('store unavailable'));
  state.catch(() => undefined);
  const failed = { state, issuedAt: 0, clock: () => 10 };
  const r = await pauseGuard.check(ctx(store, 1_010, { pauseAhead: failed }));
  t.equal(r.verdict, 'block', 'the guard read the pause itself');
});

/** The engine's one record was blocked by the pause guard, and nothing was rolled back. */
async function blockedByPause(t: Test, e: ReturnType<typeof testEngine>): Promise<void> {
  const [rec] = await e.store.listRecords({});
  t.equal(rec?.state, 'blocked', JSON.stringify((rec as { outcome?: unknown } | undefined)?.outcome));
  t.match((rec as unknown as RollbackRecord).guards[0], { guard: 'pause', result: 'block' });
  t.equal(e.action.executed.length, 0, 'nothing was rolled back');
}

t.test('engine: a pause set while the trigger is being confirmed (slower than the read-ahead window) stops the rollback', async (t) => {
  const prometheus = new FakePrometheus();
  const e = testEngine({ prometheus });
  let paused = false;
  const query = prometheus.queryRange.bind(prometheus);
  prometheus.queryRange = async (...a: Parameters<typeof query>) => {
    await writePause(e.store, { by: 'sre', at: Date.now(), reason: 'paused during the confirmation' });
    paused = true;
    await new Promise((r) => setTimeout(r, PAUSE_READ_AHEAD_MS + 50));
    return query(...a);
  };
  await e.deliver(firing('HighErrorRate'));
  t.ok(paused, 'the pause was written during the confirmation');
  await blockedByPause(t, e);
});

t.test('engine: the wall clock stepped back during a slow confirmation does not make the read ahead fresh', async (t) => {
  const prometheus = new FakePrometheus();
  let offset = 0;
  const e = testEngine({ prometheus, now: () => Date.now() + offset });
  const query = prometheus.queryRange.bind(prometheus);
  let stepped = false;
  prometheus.queryRange = async (...a: Parameters<typeof query>) => {
    if (!stepped) {
      stepped = true;
      await writePause(e.store, { by: 'sre', at: Date.now(), reason: 'paused during the confirmation' });
      await new Promise((r) => setTimeout(r, 3 * PAUSE_READ_AHEAD_MS));
      offset -= 1_000; // an NTP step back: by the wall clock the read ahead was issued "in the future"
    }
    return query(...a);
  };
  await e.deliver(firing('HighErrorRate'));
  await blockedByPause(t, e);
});

t.test('a read ahead whose answer arrives after the window is read again: a pause set before the verdict stops it', async (t) => {
  const inner = new MemoryStore();
  const mono = manualClock();
  // the GET runs when issued; its answer reaches the guard after the window (a slow connection, a busy loop)
  let deliver: () => void = () => undefined;
  const arrived = new Promise<void>((r) => (deliver = r));
  const late = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === 'getValue') return async (key: string) => {
        const value = await inner.getValue(key);
        await arrived;
        return value;
      };
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Store;
  const ahead = readPauseAhead(late, mono.read);
  await writePause(inner, { by: 'sre', at: 1_050, reason: 'freeze' });
  mono.t += 10; // the guard starts within the window
  const verdict = pauseGuard.check(ctx(late, 1_000, { pauseAhead: ahead }));
  mono.t += PAUSE_READ_AHEAD_MS; // the answer arrives after it
  deliver();
  const r = await verdict;
  t.equal(r.verdict, 'block', 'the late "not paused" was not taken');
});
