// A rollback that ends before any cluster write gives back its lock with the closing record write
// (one round trip on Redis), and gives it back when that write fails too.
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store, StoredRecord } from '../../../src/store/store.js';
import { lockName } from '../../../src/guards/lock.js';
import { firing, testEngine } from '../../support/engine.js';

/**
 * The store of a replica whose closing record write (any state but the write-ahead's 'deciding')
 * waits for `open()`, or fails; `during` lists the store calls made while it waited.
 */
function gatedClose(inner: Store, o: { fail?: boolean } = {}) {
  const during: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let closing = false;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return async (...args: unknown[]) => {
        if (closing) during.push(prop);
        if (prop === 'putRecord' && (args[0] as StoredRecord).state !== 'deciding') {
          closing = true;
          await gate;
          if (o.fail) throw new Error('the store went away under the closing write');
        }
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, during, open };
}

const settle = () => new Promise((r) => setImmediate(r));

t.test('a dry run ends with its lock given back beside the closing write, not after it', async (t) => {
  const inner = new MemoryStore();
  const g = gatedClose(inner);
  const e = testEngine({ store: g.store, env: { DRY_RUN: 'true' } });
  const handled = e.deliver(firing('HighErrorRate'));
  for (let i = 0; i < 50 && !g.during.includes('releaseLock'); i++) await settle();
  t.ok(g.during.includes('releaseLock'), `the lock is given back while the closing write is in flight (calls meanwhile: ${g.during.join(', ')})`);
  t.equal(await inner.acquireLock(lockName('Deployment/prod/checkout'), 'replica-b', 1000).then((l) => l !== null), true, 'another replica can take the target\'s lock');
  g.open();
  await handled;
  const [rec] = await inner.listRecords({});
  t.equal(rec?.state, 'dry_run');
  t.equal(e.action.executed.length, 0, 'nothing was written to the cluster');
});

t.test('the lock is given back when the closing write fails, and the event stays to be retried', async (t) => {
  const inner = new MemoryStore();
  const g = gatedClose(inner, { fail: true });
  const e = testEngine({ store: g.store, env: { DRY_RUN: 'true' } });
  const handled = e.deliver(firing('HighErrorRate'));
  g.open();
  await t.rejects(handled, /went away/);
  t.ok(g.during.includes('releaseLock'), 'the lock was given back');
  t.not(await inner.acquireLock(lockName('Deployment/prod/checkout'), 'replica-b', 1000), null, 'another replica can take the target\'s lock');
});
