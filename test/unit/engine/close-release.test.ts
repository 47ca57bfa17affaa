// What a rollback's guards took (the target's lock, a concurrency slot, a budget reservation) is
// given back with the closing record write when the rollback ends before any cluster write (one
// round trip on Redis, not one after the other), still when that write fails, and before the
// record says pending_approval (an approval may start a new run at once). A dry run takes none.
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store, StoredRecord } from '../../../src/store/store.js';
import { lockName } from '../../../src/guards/lock.js';
import { firing, testEngine } from '../../support/engine.js';

const GIVE_BACK = ['releaseLock', 'releaseSlot', 'releaseEvents'];

/**
 * The store of a replica whose record writes in state `gated` wait for `open()` (then fail, with
 * `fail`); `calls` is every store call in the order made, a record write as putRecord:<state>, and
 * `during` the calls made while a gated write waited.
 */
function gatedWrites(inner: Store, gated: (state: string) => boolean, o: { fail?: boolean } = {}) {
  const calls: string[] = [];
  const during: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let waiting = false;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return async (...args: unknown[]) => {
        const state = prop === 'putRecord' ? (args[0] as StoredRecord).state : undefined;
        calls.push(state ? `${prop}:${state}` : prop);
        if (waiting) during.push(prop);
        if (state && gated(state)) {
          waiting = true;
          await gate;
          if (o.fail) throw new Error('the store went away under the closing write');
        }
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, calls, during, open };
}

const settle = () => new Promise((r) => setImmediate(r));
const closing = (state: string) => state !== 'deciding';

// A dry run takes no lock, no slot and no budget (docs/guards.md, "A dry run holds nothing"): it has nothing to give back.
t.test('a dry run ends having taken no lock, slot or budget: the target is free while its closing write is in flight', async (t) => {
  const inner = new MemoryStore();
  const g = gatedWrites(inner, closing);
  const e = testEngine({ store: g.store, env: { DRY_RUN: 'true' } });
  const handled = e.deliver(firing('HighErrorRate'));
  for (let i = 0; i < 50 && !g.calls.includes('putRecord:dry_run'); i++) await settle();
  t.ok(g.calls.includes('putRecord:dry_run'), `the closing write is in flight (calls: ${g.calls.join(', ')})`);
  for (const c of ['acquireLock', 'acquireSlot', 'reserveEvents', ...GIVE_BACK]) t.notOk(g.calls.includes(c), `no ${c} (calls: ${g.calls.join(', ')})`);
  t.not(await inner.acquireLock(lockName('Deployment/prod/checkout'), 'replica-b', 1000), null, "another replica can take the target's lock");
  g.open();
  await handled;
  const [rec] = await inner.listRecords({});
  t.equal(rec?.state, 'dry_run');
  t.equal(e.action.executed.length, 0, 'nothing was written to the cluster');
});

t.test('a blocked rollback gives the lock back beside its closing write', async (t) => {
  const inner = new MemoryStore();
  const g = gatedWrites(inner, closing);
  // the cluster budget is spent: the budget guard blocks after the lock was taken
  const e = testEngine({ store: g.store, env: { BUDGET_CLUSTER_PER_HOUR: '0' } });
  const handled = e.deliver(firing('HighErrorRate'));
  for (let i = 0; i < 50 && !g.during.includes('releaseLock'); i++) await settle();
  t.ok(g.during.includes('releaseLock'), `the lock is given back while the closing write is in flight (calls meanwhile: ${g.during.join(', ')})`);
  g.open();
  await handled;
  const [rec] = await inner.listRecords({});
  t.equal(rec?.state, 'blocked', JSON.stringify((rec as { outcome?: unknown } | undefined)?.outcome));
});

// This held before the give-back went beside the write too (rollback()'s finally); kept as a guard.
t.test('the lock is given back when the closing write fails, and the event stays to be retried', async (t) => {
  const inner = new MemoryStore();
  const g = gatedWrites(inner, closing, { fail: true });
  // the cluster budget is spent: the budget guard blocks after the lock was taken
  const e = testEngine({ store: g.store, env: { BUDGET_CLUSTER_PER_HOUR: '0' } });
  const handled = e.deliver(firing('HighErrorRate'));
  g.open();
  await t.rejects(handled, /went away/);
  t.ok(g.during.includes('releaseLock'), 'the lock was given back');
  t.not(await inner.acquireLock(lockName('Deployment/prod/checkout'), 'replica-b', 1000), null, "another replica can take the target's lock");
});

t.test('a rollback waiting for approval gives back what its guards took before its record says pending_approval', async (t) => {
  const inner = new MemoryStore();
  const g = gatedWrites(inner, () => false);
  const e = testEngine({ store: g.store });
  await e.deliver(firing('HighLatency')); // the rule requires an approval
  const [rec] = await inner.listRecords({});
  t.equal(rec?.state, 'pending_approval');
  const pending = g.calls.indexOf('putRecord:pending_approval');
  t.ok(pending > 0, g.calls.join(', '));
  for (const c of GIVE_BACK) {
    const at = g.calls.lastIndexOf(c);
    t.ok(at >= 0 && at < pending, `${c} before the pending_approval write (${g.calls.join(', ')})`);
  }
});
