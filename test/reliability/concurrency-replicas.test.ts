// Three replicas on one real Redis, many alerts at once on distinct targets: never more than
// MAX_CONCURRENT_ROLLBACKS rollbacks in flight (from the write to the end of verification) across
// the replicas. The concurrency guard leases a slot in one atomic Redis step (a Lua script) and the
// rollback gives it back when it ends; a replica that dies holding one loses it after LOCK_TTL.
import t from 'tap';
import type { ActionContext, ExecuteResult, RollbackPlan, VerifyResult } from '../../src/actions/action.js';
import { CONCURRENCY_POOL } from '../../src/guards/concurrency.js';
import { firing, PerTargetDeploymentAction } from '../support/engine.js';
import { startRedis } from '../support/redis.js';
import { redisReplicas } from './support.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());

/** The Deployment double, counting the rollbacks between their write and the end of their verification. */
class CountingAction extends PerTargetDeploymentAction {
  inFlight = 0;
  maxInFlight = 0;
  override async execute(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return super.execute(plan, ctx);
  }
  override async verify(plan: RollbackPlan, ctx: ActionContext): Promise<VerifyResult> {
    try {
      return await super.verify(plan, ctx);
    } finally {
      this.inFlight--;
    }
  }
}

const replicas = (n: number, env: Record<string, string>) => redisReplicas(t, redis.url, n, env, new CountingAction(), 50);

t.test('three replicas, thirty alerts on thirty targets at once: never more than MAX_CONCURRENT_ROLLBACKS in flight', async (t) => {
  const { engines, action } = await replicas(3, { MAX_CONCURRENT_ROLLBACKS: '2', BUDGET_CLUSTER_PER_HOUR: '1000' });
  for (let i = 0; i < 30; i++) action.verifyDelayMs[`svc-${i}`] = 150; // rollouts that take a while
  const alerts = Array.from({ length: 30 }, (_, i) => firing('HighErrorRate', `svc-${i}`));
  await Promise.all(alerts.map((a, i) => engines[i % 3]!.engine.handle({ id: `ev-${i}`, alert: a, deliveries: 1 })));
  await Promise.all(engines.map((e) => e.engine.idle()));
  t.ok(action.maxInFlight <= 2, `at most 2 in flight at once (saw ${action.maxInFlight})`);
  t.ok(action.executed.length >= 2, `the limit is used, not refused outright (${action.executed.length} executed)`);
  const recs = await engines[0]!.engine.records.list({ limit: 100 });
  t.equal(recs.length, 30);
  const blocked = recs.filter((r) => r.state === 'blocked');
  t.equal(blocked.length + action.executed.length, 30, 'every other one blocked');
  t.ok(blocked.length > 0 && blocked.every((r) => /rollback\(s\) already in flight \(Deployment\/prod\/svc-\d+, Deployment\/prod\/svc-\d+\); MAX_CONCURRENT_ROLLBACKS is 2/.test(r.outcome?.message ?? '')), 'each blocked by the concurrency limit, naming the two in flight');
  const store = engines[0]!.store;
  t.same(await store.acquireSlot(CONCURRENCY_POOL, 'probe-a', 2, 1000), { acquired: true }, 'every slot given back once the rollbacks ended');
  t.same(await store.acquireSlot(CONCURRENCY_POOL, 'probe-b', 2, 1000), { acquired: true });
});

t.test("a replica that dies holding a slot: the slot comes back after LOCK_TTL, and meanwhile it counts", async (t) => {
  const { engines, action } = await replicas(1, { MAX_CONCURRENT_ROLLBACKS: '1', LOCK_TTL: '1s' });
  const e = engines[0]!;
  // what a replica that died mid-rollback leaves: a lease it will never renew nor give back
  t.same(await e.store.acquireSlot(CONCURRENCY_POOL, 'rb-of-a-dead-replica', 1, 1000), { acquired: true });
  await e.deliver(firing('HighErrorRate', 'first'));
  const first = (await e.engine.records.list({ target: 'Deployment/prod/first' }))[0]!;
  t.equal(first.state, 'blocked', 'the dead replica still holds the one slot');
  t.match(first.outcome?.message, /1 rollback\(s\) already in flight \(rb-of-a-dead-replica\); MAX_CONCURRENT_ROLLBACKS is 1/);
  await new Promise((r) => setTimeout(r, 1200));
  await e.deliver(firing('HighErrorRate', 'second'));
  t.same(action.executed.map((x) => x.ref.name), ['second'], 'its lease ran out: the next rollback runs');
});

t.test('a rollback that does not execute gives its slot back (waiting for approval), and a dry run takes none', async (t) => {
  const { engines } = await replicas(1, { MAX_CONCURRENT_ROLLBACKS: '1' });
  const e = engines[0]!;
  await e.deliver(firing('HighLatency', 'needs-approval')); // its rule requires approval
  t.equal((await e.engine.records.list({}))[0]!.state, 'pending_approval');
  const dry = await e.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'dry' }, reason: 'try', requestedBy: 'sre', dryRun: true });
  await e.engine.idle();
  t.equal((await e.engine.records.get(dry.id))!.state, 'dry_run');
  await e.deliver(firing('HighErrorRate', 'runs'));
  t.same(e.action.executed.map((x) => x.ref.name), ['runs'], 'the one slot was free for it');
  t.same(await e.store.acquireSlot(CONCURRENCY_POOL, 'probe', 1, 1000), { acquired: true }, 'and given back once it ended');
});
