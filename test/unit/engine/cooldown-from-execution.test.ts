// A rollback's cooldowns start before its write and are written again, from the execution, when it
// ends: the target's and every other object's it wrote. An execution may end long after the write
// began (`helm rollback --wait` returns once the release is ready, up to 5m); before 2026-12-07 only
// the target's was written again, and a Helm release's workloads left their cooldown that much
// before the release did, open to a Deployment rule's undo.
import t from 'tap';
import { RESOURCES } from '../../../src/kube/kube.js';
import { extendCooldown, readCooldown, writeCooldown } from '../../../src/guards/cooldown.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { firing, recoversOnWrite, testEngine } from '../../support/engine.js';

/**
 * An engine whose rollback of Deployment prod/checkout also writes Deployment prod/checkout-worker,
 * its execution returning 4 minutes after the write (`during` runs then), the service recovering.
 */
function writingTheWorker(during: (e: ReturnType<typeof testEngine>, now: number) => Promise<void> = async () => {}) {
  let clock = Date.now();
  const now = () => clock;
  const e = testEngine({ now, store: new MemoryStore(now) });
  recoversOnWrite(e);
  const plan = e.action.plan.bind(e.action);
  e.action.plan = async (ref) => ({ ...(await plan(ref)), changes: [{ resource: RESOURCES.deployments, namespace: 'prod', name: 'checkout-worker' }] });
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, ctx) => {
    const res = await execute(p, ctx);
    clock += 4 * 60_000; // the write, then a wait for the rollout, before the execution returns
    await during(e, clock);
    return res;
  };
  return e;
}

t.test("every object a rollback wrote stays in cooldown from its execution, as long as the target", async (t) => {
  const e = writingTheWorker();
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  const executedAt = rec!.times.executedAt!;
  const target = await readCooldown(e.store, 'Deployment/prod/checkout');
  const worker = await readCooldown(e.store, 'Deployment/prod/checkout-worker');
  t.match(target, { id: rec!.id, at: executedAt, outcome: 'succeeded' });
  t.match(worker, { id: rec!.id, at: executedAt }, "the other object's cooldown, from the execution too (before: from before the write)");
  t.equal(worker!.until, target!.until, 'it ends with the target\'s');
  t.equal(worker!.outcome, undefined, "the outcome is the target's alone (a step back reads it)");
});

t.test("another rollback's cooldown on a written object is never written over (a recovery holds none of their locks)", async (t) => {
  // meanwhile another rollback wrote the worker (as after this one's entry ran out)
  const e = writingTheWorker((e, at) => writeCooldown(e.store, 'Deployment/prod/checkout-worker', { id: 'rb-other', at, until: at + 60_000, outcome: 'failed' }, at));
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  t.match(await readCooldown(e.store, 'Deployment/prod/checkout-worker'), { id: 'rb-other', outcome: 'failed' }, "the other rollback's entry stands, with its outcome");
});

t.test('extendCooldown: over its own entry, or none while it lasts; never over another\'s, nor once over', async (t) => {
  const at = 1_000_000;
  const store = new MemoryStore(() => at);
  const mine = { id: 'rb-1', at, until: at + 60_000 };
  await extendCooldown(store, 'Deployment/prod/a', mine, at);
  t.same(await readCooldown(store, 'Deployment/prod/a'), mine, 'none there: written');
  await extendCooldown(store, 'Deployment/prod/b', { ...mine, until: at }, at);
  t.equal(await readCooldown(store, 'Deployment/prod/b'), null, 'already over: nothing written');
  await writeCooldown(store, 'Deployment/prod/c', { id: 'rb-1', at: at - 5, until: at + 5 }, at);
  await extendCooldown(store, 'Deployment/prod/c', mine, at);
  t.same(await readCooldown(store, 'Deployment/prod/c'), mine, 'its own: replaced');
  const theirs = { id: 'rb-2', at, until: at + 5 };
  await writeCooldown(store, 'Deployment/prod/d', theirs, at);
  await extendCooldown(store, 'Deployment/prod/d', mine, at);
  t.same(await readCooldown(store, 'Deployment/prod/d'), theirs, "another's: kept");
});
