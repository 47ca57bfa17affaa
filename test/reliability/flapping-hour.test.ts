// A flapping alert over hours of simulated time (issue 9): it fires, resolves and fires again
// every two minutes, each time with a new start, so each firing is a new alert asking for a
// rollback. The budget and the cooldown hold: never more rollbacks in any rolling hour than the
// rule's perTargetPerHour and BUDGET_CLUSTER_PER_HOUR allow. The engine runs on a simulated
// clock (EngineDeps.now); the memory store takes the same clock, and the Redis store (a real
// redis-server) keeps its budget windows on the timestamps it is given.
import t from 'tap';
import { pino } from 'pino';
import type { ActionContext, RollbackPlan, TargetRef } from '../../src/actions/action.js';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/pipeline.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications } from '../../src/notify/notifier.js';
import { MemoryStore } from '../../src/store/memory.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/store.js';
import { FakeDeploymentAction, firing, rules } from '../support/engine.js';
import { startRedis } from '../support/redis.js';
import { figures } from './figures.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

/** A Deployment that can always be rolled back again (a new bad revision each time), recently deployed. */
class FlappingDeployment extends FakeDeploymentAction {
  constructor(private readonly clock: () => number) {
    super();
  }
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    this.applied = false;
    this.createdAt = this.clock() - 5 * MIN;
    return super.plan(ref);
  }
  override async execute(plan: RollbackPlan, ctx: ActionContext) {
    const res = await super.execute(plan, ctx);
    return { ...res, at: this.clock() };
  }
}

function engineOn(store: Store, clock: { now: number }, ruleGuards: string, env: Record<string, string> = {}) {
  const config = loadConfig({ LOCK_TTL: '30s', SCHEDULER_INTERVAL: '5s', DRY_RUN: 'false', MAX_CONCURRENT_ROLLBACKS: '100', ...env });
  const metrics = createMetrics({ defaults: false });
  const logger = pino({ level: 'silent' });
  const now = () => clock.now;
  const action = new FlappingDeployment(now);
  const text = `
rules:
  - name: flappy
    match: ['alertname="Flapping"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
    guards: ${ruleGuards}
`;
  // no Prometheus: P0 with onPrometheusDown act trusts the alert, and recovery is 'unverified' at once
  const engine = new Engine({ config, store, metrics, logger, rules: { rules: rules(text) }, prometheus: null, kube: null, actions: { Deployment: action }, notifications: new Notifications([], logger, metrics), owner: 'flappy-replica', now });
  return { engine, action, config };
}

/** Flaps each target every `everyMs` for `durationMs`: fire, (tick), resolve. Returns the alerts sent. */
async function flap(engine: Engine, clock: { now: number }, targets: string[], everyMs: number, durationMs: number): Promise<number> {
  let sent = 0;
  let ev = 0;
  const end = clock.now + durationMs;
  while (clock.now < end) {
    for (const [i, d] of targets.entries()) {
      // staggered: target i fires i*10 s into each period
      const a = firing('Flapping', d, { fingerprint: `flap-${d}`, startsAt: clock.now + i * 10_000, receivedAt: clock.now + i * 10_000 });
      clock.now += 10_000;
      await engine.handle({ id: `ev-${++ev}`, alert: a, deliveries: 1 });
      await engine.idle();
      sent++;
      clock.now += 5_000;
      await engine.handle({ id: `ev-${++ev}`, alert: { ...a, status: 'resolved', endsAt: clock.now, receivedAt: clock.now }, deliveries: 1 });
    }
    await engine.tick();
    clock.now += Math.max(0, everyMs - targets.length * 15_000);
  }
  return sent;
}

/** The most executions in any rolling hour (windows starting at each execution). */
function maxPerRollingHour(times: number[]): number {
  const s = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0; i < s.length; i++) {
    let j = i;
    while (j < s.length && s[j]! < s[i]! + HOUR) j++;
    best = Math.max(best, j - i);
  }
  return best;
}

let alertsSent = 0;

t.test('one target flapping every 2 minutes for 2 hours, rule defaults (cooldown 30m, 1 per target per hour)', async (t) => {
  const clock = { now: Date.parse('2026-11-23T00:00:00Z') };
  const store = new MemoryStore(() => clock.now);
  const { engine, action } = engineOn(store, clock, '{}');
  const sent = await flap(engine, clock, ['checkout'], 2 * MIN, 2 * HOUR);
  alertsSent += sent;
  const recs = await engine.records.list({ limit: 1000 });
  const executed = recs.filter((r) => r.times.executedAt !== undefined).map((r) => r.times.executedAt!);
  t.equal(recs.length, sent, `one record per firing (${sent})`);
  t.equal(action.executed.length, executed.length, 'records and cluster writes agree');
  t.equal(maxPerRollingHour(executed), 1, 'never more than 1 rollback in any rolling hour');
  t.equal(executed.length, 2, 'two rollbacks in two hours: at the start and once the hour has passed');
  t.ok(executed[0]! - executed[1]! >= HOUR || executed[1]! - executed[0]! >= HOUR, 'an hour apart');
  const blocked = recs.filter((r) => r.state === 'blocked');
  t.equal(blocked.length, sent - 2, 'every other firing blocked');
  t.ok(blocked.every((r) => /blocked by (cooldown|budget)/.test(r.outcome?.message ?? '')), 'by the cooldown or the budget, with the reason');
  figures(t, 'flapping-defaults', { simulated_hours: 2, alerts_sent: sent, rollbacks: executed.length, max_per_rolling_hour: maxPerRollingHour(executed), budget_per_target_per_hour: 1 });
});

const redis = await startRedis();
t.teardown(() => redis.destroy());

for (const kind of ['memory', 'redis'] as const) {
  t.test(`${kind}: six targets flapping for 3 hours, the budget alone limiting (2 per target, 5 across the cluster per rolling hour)`, async (t) => {
    const clock = { now: Date.parse('2026-11-23T00:00:00Z') };
    const store: Store = kind === 'memory' ? new MemoryStore(() => clock.now) : new RedisStore({ url: redis.url, prefix: `flap-${Date.now()}` });
    if (store instanceof RedisStore) {
      await store.waitReady(10_000);
      t.teardown(() => store.close());
    }
    // a cooldown of 1 ms: only the budget stands between a flapping alert and a rollback storm
    const { engine, action } = engineOn(store, clock, '{ cooldown: 1ms, budget: { perTargetPerHour: 2 } }', { BUDGET_CLUSTER_PER_HOUR: '5' });
    const targets = ['cart', 'checkout', 'payments', 'search', 'shipping', 'users'];
    const sent = await flap(engine, clock, targets, 2 * MIN, 3 * HOUR);
    alertsSent += sent;
    const recs = await engine.records.list({ limit: 1000 });
    t.equal(recs.length, sent, `one record per firing (${sent})`);
    const all = recs.filter((r) => r.times.executedAt !== undefined).map((r) => r.times.executedAt!);
    t.equal(action.executed.length, all.length, 'records and cluster writes agree');
    const cluster = maxPerRollingHour(all);
    t.ok(cluster <= 5, `cluster: at most 5 in any rolling hour (${cluster})`);
    t.equal(cluster, 5, 'and the budget is used, not over-blocked');
    let worstTarget = 0;
    for (const d of targets) {
      const mine = recs.filter((r) => r.target === `Deployment/prod/${d}` && r.times.executedAt !== undefined).map((r) => r.times.executedAt!);
      worstTarget = Math.max(worstTarget, maxPerRollingHour(mine));
    }
    t.ok(worstTarget <= 2, `per target: at most 2 in any rolling hour (${worstTarget})`);
    t.ok(all.length >= 15 && all.length <= 3 * 5, `${all.length} rollbacks in 3 hours (at most 5 per hour)`);
    const blocked = recs.filter((r) => r.state === 'blocked');
    t.ok(blocked.length > 0 && blocked.every((r) => /blocked by budget/.test(r.outcome?.message ?? '')), `${blocked.length} blocked, each by the budget`);
    figures(t, `flapping-budget-${kind}`, { simulated_hours: 3, targets: targets.length, alerts_sent: sent, rollbacks: all.length, max_cluster_per_rolling_hour: cluster, max_target_per_rolling_hour: worstTarget, budget_cluster_per_hour: 5 });
  });
}

for (const kind of ['memory', 'redis'] as const) {
  t.test(`${kind}: two targets flapping for 3 hours, 2 per target per rolling hour`, async (t) => {
    const clock = { now: Date.parse('2026-11-23T00:00:00Z') };
    const store: Store = kind === 'memory' ? new MemoryStore(() => clock.now) : new RedisStore({ url: redis.url, prefix: `flap2-${Date.now()}` });
    if (store instanceof RedisStore) {
      await store.waitReady(10_000);
      t.teardown(() => store.close());
    }
    const { engine, action } = engineOn(store, clock, '{ cooldown: 1ms, budget: { perTargetPerHour: 2 } }', { BUDGET_CLUSTER_PER_HOUR: '5' });
    const targets = ['cart', 'checkout'];
    const sent = await flap(engine, clock, targets, 2 * MIN, 3 * HOUR);
    alertsSent += sent;
    const recs = await engine.records.list({ limit: 1000 });
    const all = recs.filter((r) => r.times.executedAt !== undefined).map((r) => r.times.executedAt!);
    t.equal(action.executed.length, all.length, 'records and cluster writes agree');
    const per = targets.map((d) => maxPerRollingHour(recs.filter((r) => r.target === `Deployment/prod/${d}` && r.times.executedAt !== undefined).map((r) => r.times.executedAt!)));
    t.same(per, [2, 2], 'each target: exactly its 2 per rolling hour, never more');
    t.ok(maxPerRollingHour(all) <= 5, 'cluster within 5');
    figures(t, `flapping-target-budget-${kind}`, { simulated_hours: 3, targets: 2, alerts_sent: sent, rollbacks: all.length, max_target_per_rolling_hour: Math.max(...per), budget_per_target_per_hour: 2 });
  });
}

t.test('figures', async (t) => {
  figures(t, 'flapping', { alerts_sent: alertsSent });
  t.pass();
});
