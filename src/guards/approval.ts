import { driftApprovalReason } from '../config-deps/policy.js';
import { dryRunReason } from './dry-run.js';
import { allow, fmtDuration, type Guard } from './guard.js';

import { MIGRATION_ANNOTATION } from '../actions/action.js';

export { MIGRATION_ANNOTATION };

/** How the approval guard's verdict on a dry run that a rollback would ask approval for begins. */
export const WOULD_ASK = 'a dry run asks no one for approval; a rollback would wait for it';

/** Of a dry run's guard verdicts (a record's, a replay row's), the approval guard's saying a rollback would have asked. */
export function wouldAsk<G extends { guard: string; reason: string }>(guards: readonly G[]): G | undefined {
  return guards.find((g) => g.guard === 'approval' && g.reason.startsWith(WOULD_ASK));
}

/**
 * Rules that ask for approval, and rollbacks away from a revision that carried a schema migration
 * (rolling back code past a migration can lose data), wait as pending until a human approves,
 * rejects, or the request expires. A dry run asks no one: its verdict says it would have asked,
 * and why (approving it would roll nothing back, and a human paged for it during an incident
 * would take their approval for a rollback).
 */
export const approvalGuard: Guard = {
  name: 'approval',
  needsPlan: true,
  async check({ record, settings, plan, now, config }) {
    if (record.approval?.decision === 'approved') return allow(`approved by ${record.approval.by}`);
    const reasons: string[] = [];
    if (record.decision?.requiresApproval || settings.approval.required) reasons.push('the rule requires approval');
    const ann = plan?.current?.annotations ?? {};
    if (ann[MIGRATION_ANNOTATION] === 'true') reasons.push(`revision ${plan?.current?.revision} is annotated ${MIGRATION_ANNOTATION}: rolling back past a schema migration needs a human${plan?.migration ? ` (once approved, the migration rollback Job ${plan.migration.namespace}/${plan.migration.name} runs first)` : ''}`);
    const drift = driftApprovalReason(settings.configDrift, plan);
    if (drift) reasons.push(drift);
    if (reasons.length === 0) return allow('no approval needed');
    if (dryRunReason({ record, settings, config })) return allow(`${WOULD_ASK} (${reasons.join('; ')})`);
    const until = now + settings.approval.expiresAfter;
    return { verdict: 'wait', reason: `${reasons.join('; ')}; waiting for approval (expires in ${fmtDuration(settings.approval.expiresAfter)})`, until };
  },
};
