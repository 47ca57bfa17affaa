import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { firing, testEngine } from '../../support/engine.js';

/** A replica that dies right after its claim: its store fails every record write. */
function dyingAfterClaim(shared: Store): Store {
  return new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'putRecord') return async () => Promise.reject(new Error('replica killed between the claim and the write-ahead record'));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function claimedByA(aliveA: boolean) {
  const shared = new MemoryStore();
  const a = testEngine({ store: dyingAfterClaim(shared), owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  if (aliveA) await a.engine.heartbeat();
  await b.engine.heartbeat();
  a.prometheus!.value = 0.2;
  b.prometheus!.value = 0.2;
  const alert = firing('HighErrorRate', 'checkout');
  const first = await a.deliver(alert).then(() => undefined, (err: Error) => err);
  return { shared, a, b, alert, first };
}

t.test("a claim whose owner's heartbeat is gone is taken over by another replica", async (t) => {
  const { shared, b, alert, first } = await claimedByA(false);
  t.ok(first, 'replica-a failed after its claim');
  t.same(await shared.listRecords({}), [], 'and wrote no record');
  await b.deliver(alert);
  const recs = await b.engine.records.list({});
  t.equal(recs.length, 1, 'replica-b evaluated the alert');
  t.equal(recs[0]!.owner, 'replica-b');
  t.ok(recs[0]!.times.executedAt, `rolled back (${recs[0]!.state}: ${recs[0]!.outcome?.message ?? ''})`);
  t.equal(b.action.executed.length, 1, 'once');
  t.equal(await shared.getValue(`claim:${recs[0]!.id}`), 'replica-b', 'the claim is now replica-b\'s');
});

t.test('a claim whose owner is alive is left to it: the event stays queued', async (t) => {
  const { shared, b, alert, first } = await claimedByA(true);
  t.ok(first, 'replica-a failed after its claim');
  await t.rejects(b.deliver(alert), /being evaluated by another replica/);
  t.same(await shared.listRecords({}), [], 'nothing evaluated by replica-b');
  t.equal(b.action.executed.length, 0);
});

t.test('compare-and-set: only the first of two replicas taking over the same dead claim wins', async (t) => {
  const s = new MemoryStore();
  await s.setValue('claim:x', 'dead', { ttlMs: 60_000 });
  const [one, two] = await Promise.all([s.compareAndSetValue('claim:x', 'dead', 'b'), s.compareAndSetValue('claim:x', 'dead', 'c')]);
  t.same([one, two], [true, false]);
  t.equal(await s.getValue('claim:x'), 'b');
});
