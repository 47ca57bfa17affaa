// A record's claim on a real redis-server shared by two replicas (src/engine/claim.ts): the same new
// alert handled by both at once is evaluated exactly once, and the claim, given up once the record
// is written, does not outlive it: a resend after the record was pruned is evaluated afresh by
// whichever replica gets it.
import t from 'tap';
import { OPEN_STATES } from '../../src/engine/record.js';
import { RedisStore } from '../../src/store/redis.js';
import { firing, PerTargetDeploymentAction, testEngine } from '../support/engine.js';
import { startRedis } from '../support/redis.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());

async function replicas(prefix: string) {
  const action = new PerTargetDeploymentAction(); // the cluster both replicas act on: each target rolled back once
  const made = [];
  for (const owner of ['replica-a', 'replica-b']) {
    const store = new RedisStore({ url: redis.url, prefix });
    await store.waitReady(5000);
    t.teardown(() => store.close());
    const r = testEngine({ store, owner, action });
    await r.engine.heartbeat();
    r.prometheus!.value = 0.2;
    made.push(r);
  }
  return { a: made[0]!, b: made[1]!, action };
}

t.test('two replicas handling the same new alerts at once: each evaluated exactly once, its claim then given up', async (t) => {
  const { a, b, action } = await replicas('race');
  const alerts = Array.from({ length: 20 }, (_, i) => firing('HighErrorRate', `svc-${i}`));
  const results = await Promise.all(alerts.map((x) => Promise.allSettled([a.deliver(x), b.deliver(x)])));
  for (const r of results.flat()) if (r.status === 'rejected') t.match(String(r.reason), /being evaluated by another replica; the event stays queued/, 'a replica that lost the race leaves the event queued');
  // (the budget and concurrency guards block some of twenty rollbacks at once: what counts is that none runs twice)
  const rolledBack = action.executed.map((x) => x.ref.name);
  t.ok(rolledBack.length > 0);
  t.equal(new Set(rolledBack).size, rolledBack.length, 'no target rolled back twice');
  const recs = await a.engine.records.list({ limit: 100 });
  t.equal(recs.length, 20, 'one record per alert');
  t.ok(recs.every((r) => r.timeline.filter((x) => x.step === 'received').length === 1), 'each evaluated once');
  for (const rec of recs) t.match(await a.store.getValue(`claim:${rec.id}`), /^released:replica-[ab]$/, `${rec.target}: claim given up once written`);
  // the redeliveries of the events left queued find the records
  await Promise.all(alerts.flatMap((x) => [a.deliver(x), b.deliver(x)]));
  t.equal(action.executed.length, rolledBack.length, 'nothing more');
});

t.test('a resend of a still-firing alert whose record was pruned is evaluated afresh by the other replica', async (t) => {
  const { a, b, action } = await replicas('pruned');
  a.prometheus!.value = 0; // the first look: not confirmed, a record that changed nothing
  const alert = firing('HighErrorRate', 'checkout');
  await a.deliver(alert);
  const [first] = await a.engine.records.list({});
  t.equal(first?.state, 'not_confirmed');
  t.equal(await a.store.pruneRecords(Date.now() + 1, OPEN_STATES), 1, 'pruned (RECORD_RETENTION_NO_ACTION)');
  await b.deliver(alert);
  const [again] = await b.engine.records.list({});
  t.equal(again?.owner, 'replica-b', 'evaluated by replica-b, not refused as being evaluated by replica-a');
  t.ok(again?.times.executedAt, `rolled back (${again?.state})`);
  t.equal(action.executed.length, 1);
});
