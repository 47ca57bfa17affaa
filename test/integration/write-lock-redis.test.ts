// The wait on a written object's lock (src/guards/lock.ts) on a real redis-server shared by two
// replicas, with the real flow on both sides: two canaries share one stable Deployment. Replica-a
// evaluates a P1 alert for one canary, whose rule asks for approval; while it holds the stable
// Deployment's lock, replica-b gets a P0 alert for the other canary, whose rollback writes it too.
// The P0 rollback waits (not closed blocked), rolls back once replica-a has asked for approval and
// given the lock back, and the P1 rollback, approved afterwards, is then blocked by the stable
// Deployment's cooldown: written by one rollback only.
import t from 'tap';
import { createActions } from '../../src/actions/index.js';
import { lockName } from '../../src/guards/lock.js';
import { RedisStore } from '../../src/store/redis.js';
import { CANARY_RULE, cluster, NS, patched } from '../support/canary.js';
import { firing, testEngine } from '../support/engine.js';
import { startRedis } from '../support/redis.js';
import { aroundStore } from '../support/store-proxy.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());

const STABLE = 'Deployment/prod/api-stable';
const rules = `${CANARY_RULE}
  - name: canary-p1
    match: ['alertname="CanaryLatency"']
    target: { kind: Canary, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}", params: { stable: "{{ $labels.stable }}" } }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    guards: { approval: { required: true, expiresAfter: 10m } }
`;
const canaryAlert = (alertname: string, deployment: string) => firing(alertname, deployment, { labels: { alertname, namespace: NS, deployment, stable: 'api-stable' } });

t.test("a canary's P0 alert behind a P1 evaluation of another canary of the same stable Deployment that asks for approval: waits, rolls back once, and the approved P1 rollback is then blocked by the cooldown", async (t) => {
  const kube = cluster({ 'api-canary': 1, 'web-canary': 1, 'api-stable': 3 });
  let ahead = 0;
  const now = () => Date.now() + ahead;
  const open = async () => {
    const s = new RedisStore({ url: redis.url, prefix: 'write-lock' });
    await s.waitReady(5000);
    t.teardown(() => s.close());
    return s;
  };
  const b = testEngine({ store: await open(), owner: 'replica-b', kube, actions: createActions(), ruleText: rules, env: { LOCK_TTL: '30s' }, now });
  let raced = false;
  const storeA = aroundStore(await open(), async (op, args, call) => {
    const r = await call();
    if (op === 'acquireLock' && args[0] === lockName(STABLE) && r !== null && !raced) {
      raced = true;
      await b.deliver(canaryAlert('CanaryErrors', 'api-canary')); // replica-b's worker, while replica-a holds the stable Deployment's lock
    }
    return r;
  });
  const a = testEngine({ store: storeA, owner: 'replica-a', kube, actions: createActions(), ruleText: rules, env: { LOCK_TTL: '30s' }, now });
  t.teardown(() => a.engine.stop());
  t.teardown(() => b.engine.stop());
  await a.engine.heartbeat();
  await b.engine.heartbeat();

  await a.deliver(canaryAlert('CanaryLatency', 'web-canary'));
  t.ok(raced, "the P0 alert was evaluated while the P1 evaluation held the stable Deployment's lock");
  const recs = await b.engine.records.list({});
  const p1 = recs.find((r) => r.rule === 'canary-p1')!;
  const canary = recs.find((r) => r.rule === 'canary-errors')!;
  t.equal(p1.state, 'pending_approval', 'the P1 rule asks for approval (the lock given back)');
  t.equal(canary.state, 'scheduled', `the P0 rollback waits, not closed blocked (${canary.outcome?.message ?? ''})`);
  t.match(canary.guards.find((g) => g.guard === 'lock')?.reason, new RegExp(`^Deployment/prod/api-stable's lock is held by a rollback that has not executed \\(${p1.id}, deciding, a rollback of Canary/prod/web-canary; it may yet end without writing\\)`));
  t.equal(patched(kube, 'api-stable'), 0, 'nothing written yet');

  ahead += 5_000;
  await b.engine.tick();
  await b.engine.idle();
  const done = (await b.engine.records.get(canary.id))!;
  t.ok(done.times.executedAt, `the P0 canary rolled back at its re-check (${done.state}: ${done.outcome?.message ?? ''})`);
  const writes = patched(kube, 'api-stable');
  t.ok(writes > 0, 'the stable Deployment scaled up');

  t.equal((await a.engine.approve(p1.id, 'sre')).kind, 'ok');
  await a.engine.idle();
  const approved = (await a.engine.records.get(p1.id))!;
  t.equal(approved.state, 'blocked', `the approved P1 rollback is not run on top of the P0 one (${approved.outcome?.message ?? ''})`);
  t.match(approved.outcome?.message, new RegExp(`blocked by cooldown: the rollback writes Deployment/prod/api-stable, rolled back by ${done.id} at `));
  t.equal(patched(kube, 'web-canary'), 0, 'the P1 canary untouched');
  t.equal(patched(kube, 'api-stable'), writes, 'the stable Deployment written by one rollback only');
});
