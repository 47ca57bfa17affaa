import type { RollbackRecord } from '../engine/record.js';
import type { EventLimit, HoldersWanted, Reservation } from '../store/store.js';
import { dryRunReason } from './dry-run.js';
import { GIVE_BACK_READ, untilGivenBack, type Attempt } from './give-back.js';
import { allow, block, type Guard, type GuardContext, type GuardResult } from './guard.js';

const HOUR = 3_600_000;

export const budgetKeys = (target: string, rule?: string) => ({
  target: `budget:target:${target}`,
  rule: rule ? `budget:rule:${rule}` : undefined,
  cluster: 'budget:cluster',
});

/** A reservation the budget guard made: given back (store.releaseEvents) if the rollback does not execute. */
export interface BudgetHold {
  keys: string[];
  member: string;
}

function limits({ record, settings, config }: Pick<GuardContext, 'record' | 'settings' | 'config'>): EventLimit[] {
  const keys = budgetKeys(record.target, record.rule);
  const perRule = settings.budget.perRulePerHour;
  return [
    { key: keys.target, limit: settings.budget.perTargetPerHour },
    ...(keys.rule && perRule !== undefined ? [{ key: keys.rule, limit: perRule }] : []),
    { key: keys.cluster, limit: config.BUDGET_CLUSTER_PER_HOUR },
  ];
}

function refusal(record: RollbackRecord, l: EventLimit, count: number, keys: ReturnType<typeof budgetKeys>): string {
  if (l.key === keys.target) return `${record.target} was rolled back ${count} time(s) in the last hour; budget perTargetPerHour is ${l.limit}`;
  if (l.key === keys.rule) return `rule ${record.rule} rolled back ${count} target(s) in the last hour; budget perRulePerHour is ${l.limit}`;
  return `${count} rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is ${l.limit}`;
}

/**
 * At most N rollbacks per target, per rule and across the cluster per rolling hour: no rollback
 * storms. The check is the spend: one unit of every budget is reserved in one atomic store step
 * (store.reserveEvents), so replicas deciding at once never pass a budget together; the rollback
 * gives it back if it does not execute (a later guard blocks or waits, the plan is refused, the
 * write is not applied). A drill's rollback and a dry run are checked, and spend nothing. Refused
 * while rollbacks that have not executed hold units (they may give them back within moments), it
 * tries again for a short while (give-back.ts).
 */
export const budgetGuard: Guard = {
  name: 'budget',
  needsPlan: true,
  async check(ctx) {
    const { store, record, now } = ctx;
    const keys = budgetKeys(record.target, record.rule);
    const want = limits(ctx);
    // the holders a refusal names, read with it in one atomic step (read after it, one that gave its
    // unit back in between would be missing, and the refusal would stand for a unit that is free): the
    // units reserved lately, newest first (a rollback still deciding, which may give its unit back,
    // reserved it moments ago, within its decision: the last 2 × LOCK_TTL are read)
    const holders = (at: number): HoldersWanted => ({ since: Math.max(at - HOUR, at - 2 * ctx.config.LOCK_TTL), limit: GIVE_BACK_READ + 1 });
    const refused = (r: Extract<Reservation, { reserved: false }>): Attempt<GuardResult> => {
      const l = want.find((w) => w.key === r.key)!;
      return {
        refused: (waited) => block(refusal(record, l, r.count, keys) + waited),
        holders: r.holders ?? [],
        held: r.count,
        limit: l.limit,
      };
    };
    const spendsNone = record.source === 'drill' ? 'a drill' : dryRunReason(ctx) ? 'a dry run' : undefined;
    if (spendsNone) {
      // checked against what rollbacks spent and hold, and spending none of it: a dry run's
      // reservation would refuse a real rollback, or another dry run, for a rollback never made
      return untilGivenBack(store, record.id, now, ctx.renewLocks, async (elapsed) => {
        const at = now + elapsed;
        const r = await store.checkEvents(want, record.id, at, HOUR, holders(at));
        if (!r.reserved) return refused(r);
        return { passed: allow(`within every budget this hour; ${spendsNone} spends none of it`) };
      });
    }
    return untilGivenBack(store, record.id, now, ctx.renewLocks, async (elapsed) => {
      const at = now + elapsed;
      const r = await store.reserveEvents(want, record.id, at, HOUR, holders(at));
      if (!r.reserved) return refused(r);
      const hold: BudgetHold = { keys: want.map((l) => l.key), member: record.id };
      return { passed: { verdict: 'allow', reason: `reserved one rollback of each budget this hour (${want.map((l) => `${l.key.replace(/^budget:/, '')} at most ${l.limit}`).join(', ')}); given back if it does not execute`, produced: { budget: hold } } };
    });
  },
};
