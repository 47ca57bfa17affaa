// Two replicas on one real Redis: a dry run takes no lock (docs/guards.md, "A dry run holds
// nothing"). Before 2026-12-07 a dry run held its target's lock while it planned, and a live
// alert's rollback of that target on the other replica was sent back for LOCK_TTL/6.
import t from 'tap';
import { lockName } from '../../src/guards/lock.js';
import { firing, PerTargetDeploymentAction } from '../support/engine.js';
import { startRedis } from '../support/redis.js';
import { redisReplicas } from './support.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());

t.test("two replicas: a dry run planning a target on one, a live alert for it on the other: the live one rolls back at once", async (t) => {
  const { engines, action } = await redisReplicas(t, redis.url, 2, { LOCK_TTL: '30s' }, new PerTargetDeploymentAction(), 0);
  const [a, b] = [engines[0]!, engines[1]!];
  t.teardown(() => engines.forEach((e) => e.engine.stop()));
  // the dry run's plan waits until the live rollback has ended
  let open!: () => void;
  let planning!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const planned = new Promise<void>((r) => (planning = r));
  const plan = action.plan.bind(action);
  let first = true;
  action.plan = async (ref) => {
    if (first) {
      first = false;
      planning();
      await gate;
    }
    return plan(ref);
  };
  const execute = action.execute.bind(action);
  action.execute = async (p, c) => {
    const r = await execute(p, c);
    for (const e of engines) e.prometheus!.value = 0.001;
    return r;
  };
  const dry = a.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, reason: 'try it', requestedBy: 'sre', dryRun: true });
  await planned;
  t.equal(await a.store.lockOwner(lockName('Deployment/prod/checkout')), null, 'the dry run, planning, holds no lock on Redis');
  await b.deliver(firing('HighErrorRate', 'checkout'));
  const live = (await b.engine.records.list({ target: 'Deployment/prod/checkout' })).find((r) => r.rule !== undefined)!;
  t.equal(live.state, 'succeeded', `rolled back at once: ${live.guards.filter((g) => g.result !== 'allow').map((g) => `${g.guard}: ${g.reason}`).join('; ')}`);
  t.same(action.executed.map((x) => x.ref.name), ['checkout'], 'written once, by the live rollback');
  open();
  const dryRec = await dry;
  await a.engine.idle();
  const after = (await a.engine.records.get(dryRec.id))!;
  t.notOk(after.times.executedAt, 'the dry run wrote nothing');
  // it planned once the live rollback had written: it reads the target as rolled back already
  t.equal(after.state, 'refused', after.outcome?.message ?? '');
  t.match(after.outcome?.message, /current template already matches revision 1/);
});
