import { allow, block, type Guard } from './guard.js';

const HOUR = 3_600_000;
export const budgetKeys = (target: string, rule?: string) => ({
  target: `budget:target:${target}`,
  rule: rule ? `budget:rule:${rule}` : undefined,
  cluster: 'budget:cluster',
});

/** At most N rollbacks per target, per rule and across the cluster per rolling hour: no rollback storms. */
export const budgetGuard: Guard = {
  name: 'budget',
  needsPlan: true,
  async check({ store, record, settings, config, now }) {
    const keys = budgetKeys(record.target, record.rule);
    const since = now - HOUR;
    const perTarget = await store.countEvents(keys.target, since);
    if (perTarget >= settings.budget.perTargetPerHour) {
      return block(`${record.target} was rolled back ${perTarget} time(s) in the last hour; budget perTargetPerHour is ${settings.budget.perTargetPerHour}`);
    }
    const perRule = settings.budget.perRulePerHour;
    if (keys.rule && perRule !== undefined) {
      const n = await store.countEvents(keys.rule, since);
      if (n >= perRule) return block(`rule ${record.rule} rolled back ${n} target(s) in the last hour; budget perRulePerHour is ${perRule}`);
    }
    const cluster = await store.countEvents(keys.cluster, since);
    if (cluster >= config.BUDGET_CLUSTER_PER_HOUR) {
      return block(`${cluster} rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is ${config.BUDGET_CLUSTER_PER_HOUR}`);
    }
    return allow(`budget left: target ${settings.budget.perTargetPerHour - perTarget}, cluster ${config.BUDGET_CLUSTER_PER_HOUR - cluster} this hour`);
  },
};

/** Spends one unit of every budget (called when a rollback is executed). */
export async function spendBudget(store: import('../store/store.js').Store, target: string, rule: string | undefined, now: number): Promise<void> {
  const keys = budgetKeys(target, rule);
  await store.addEvent(keys.target, now, HOUR);
  if (keys.rule) await store.addEvent(keys.rule, now, HOUR);
  await store.addEvent(keys.cluster, now, HOUR);
}
