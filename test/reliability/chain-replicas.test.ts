// A rule with an ordered list of three targets, two replicas (Engine instances with their queue
// workers) on one real Redis, and a first rollout slower than QUEUE_CLAIM_IDLE: the other replica
// must not take the event over and stop the chain; all three targets are rolled back, in order,
// once each. And when the replica verifying the first target shuts down, the other recovers it and
// carries the chain to its end.
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { QueueWorker } from '../../src/engine/worker.js';
import { RedisStore } from '../../src/store/redis.js';
import { CHAIN_RULES as RULES, FakePrometheus, firing, PerTargetDeploymentAction, testEngine } from '../support/engine.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());

const CLAIM_IDLE = 300;
let prefix = 0;

/** Two replicas sharing a Redis store, one cluster (the action double) and one Prometheus. */
async function twoReplicas(t: Test, slowMs: number) {
  const p = `chain${++prefix}`;
  const action = new PerTargetDeploymentAction();
  action.verifyDelayMs = { api: slowMs };
  const prometheus = new FakePrometheus();
  prometheus.value = 0.2;
  // the service recovers once the last target is rolled back
  const execute = action.execute.bind(action);
  action.execute = async (plan, ctx) => {
    const r = await execute(plan, ctx);
    if (plan.target.name === 'web') prometheus.value = 0.001;
    return r;
  };
  const replicas = [];
  for (const owner of ['replica-a', 'replica-b']) {
    const store = new RedisStore({ url: redis.url, prefix: p });
    t.teardown(() => store.close());
    await store.waitReady(5000);
    const e = testEngine({ store, action, prometheus, owner, ruleText: RULES, env: { QUEUE_CLAIM_IDLE: String(CLAIM_IDLE), EVENT_DEADLINE: String(CLAIM_IDLE) } });
    const worker = new QueueWorker({ store, metrics: e.metrics, logger: pino({ level: 'silent' }), consumer: owner, claimIdleMs: CLAIM_IDLE, deadlineMs: CLAIM_IDLE, maxDeliveries: 5, handler: (ev) => e.engine.handle(ev), blockMs: 50 });
    replicas.push({ ...e, worker });
  }
  return { replicas, action, prometheus, store: replicas[0]!.store };
}

const states = async (e: ReturnType<typeof testEngine>) => {
  const recs = await e.engine.records.list({ limit: 10 });
  return Object.fromEntries(recs.map((r) => [r.ref.name, r]));
};

t.test('a 3-target rule with a slow first rollout completes all three with 2 replicas', async (t) => {
  const { replicas, action, store } = await twoReplicas(t, 2000);
  for (const r of replicas) r.worker.start();
  t.teardown(async () => {
    for (const r of replicas) await r.worker.stop();
  });
  await store.intake([{ key: 'release-1', alert: firing('ReleaseErrors', 'api', { fingerprint: 'fp-release-1', labels: { alertname: 'ReleaseErrors', namespace: 'prod' } }) }], 60_000);
  const done = await waitFor(
    'all three targets closed',
    async () => {
      const s = await states(replicas[0]!);
      return ['api', 'auth', 'web'].every((n) => s[n] && !['deciding', 'in_progress'].includes(s[n]!.state)) ? s : undefined;
    },
    30_000,
    100,
  );
  for (const r of replicas) await r.engine.idle();
  for (const n of ['api', 'auth', 'web']) t.equal(done[n]!.state, 'succeeded', `${n}: ${done[n]!.outcome?.message}`);
  t.same(action.executed.map((x) => x.ref.name), ['api', 'auth', 'web'], 'each rolled back once, in order');
  t.ok(done.auth!.createdAt >= done.api!.times.completedAt!, 'auth started after api was verified');
  t.ok(done.web!.createdAt >= done.auth!.times.completedAt!, 'web after auth');
  t.match(done.api!.outcome!.message, /target 1 of 3 of an ordered chain: the trigger is re-checked after the last/);
  t.match(done.web!.outcome!.message, /the trigger cleared/, 'the trigger is re-checked after the last target');
  t.equal(await store.queueDepth(), 0, 'the event was handled and acked, not left to the other replica');
});

t.test('the replica verifying the first target shuts down: the other recovers it and carries the chain on', async (t) => {
  const { replicas, action } = await twoReplicas(t, 60_000);
  const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
  await a.engine.handle({ id: 'ev-1', alert: firing('ReleaseErrors', 'api', { fingerprint: 'fp-release-2', labels: { alertname: 'ReleaseErrors', namespace: 'prod' } }), deliveries: 1 });
  t.same(action.executed.map((x) => x.ref.name), ['api'], 'the handler returns once the first target is changed');
  a.engine.stop(); // shutting down mid-verification: the record stays in_progress for the next replica
  await a.engine.idle();
  const left = await states(a);
  t.equal(left.api!.state, 'in_progress');
  t.notOk(left.auth, 'the next target is not started by the replica that stopped');
  action.verifyDelayMs = {};
  await b.engine.tick(); // recovery of a rollback in_progress whose lock is free
  await b.engine.idle();
  const s = await states(b);
  for (const n of ['api', 'auth', 'web']) t.equal(s[n]?.state, 'succeeded', `${n}: ${s[n]?.outcome?.message}`);
  t.ok(s.api!.timeline.some((e) => e.step === 'handover') && s.api!.timeline.some((e) => e.step === 'recovery'), 'handed over, then recovered');
  t.equal(s.auth!.owner, 'replica-b');
  t.equal(s.web!.owner, 'replica-b');
  t.same(action.executed.map((x) => x.ref.name), ['api', 'auth', 'web'], 'api executed once, by the first replica; the rest by the second');
});
