import { driftApprovalReason } from '../config-deps/policy.js';
import { dryRunReason } from './dry-run.js';
import type { RollbackPlan } from '../actions/action.js';
import type { ApprovedRevisions, RollbackRecord } from '../engine/record.js';
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
    const approved = record.approval?.decision === 'approved' ? record.approval : undefined;
    const changed = approved ? planChanged(approved, plan) : undefined;
    if (approved && !changed) return allow(`approved by ${approved.by}`);
    const needs: string[] = [];
    if (record.decision?.requiresApproval || settings.approval.required) needs.push('the rule requires approval');
    const ann = plan?.current?.annotations ?? {};
    if (ann[MIGRATION_ANNOTATION] === 'true') needs.push(`revision ${plan?.current?.revision} is annotated ${MIGRATION_ANNOTATION}: rolling back past a schema migration needs a human${plan?.migration ? ` (once approved, the migration rollback Job ${plan.migration.namespace}/${plan.migration.name} runs first)` : ''}`);
    const drift = driftApprovalReason(settings.configDrift, plan);
    if (drift) needs.push(drift);
    if (needs.length === 0) return allow('no approval needed');
    // approved for another plan (a release deployed meanwhile, another revision to go back to): asked again
    const reasons = changed ? [changed, ...needs] : needs;
    if (dryRunReason({ record, settings, config })) return allow(`${WOULD_ASK} (${reasons.join('; ')})`);
    const until = now + settings.approval.expiresAfter;
    return { verdict: 'wait', reason: `${reasons.join('; ')}; waiting for approval (expires in ${fmtDuration(settings.approval.expiresAfter)})`, until };
  },
};

/** The revisions of the plan a record pending approval shows (the one its approval was asked on), if it has any. */
export function approvedRevisions(rec: Pick<RollbackRecord, 'plan'>): ApprovedRevisions | undefined {
  const p = rec.plan;
  if (p?.fromRevision === undefined && p?.toRevision === undefined) return undefined;
  return { ...(p.fromRevision !== undefined ? { fromRevision: p.fromRevision } : {}), ...(p.toRevision !== undefined ? { toRevision: p.toRevision } : {}) };
}

const revs = (r: ApprovedRevisions) => `revision ${r.fromRevision ?? '?'} -> ${r.toRevision ?? '?'}`;

/**
 * Why an approval does not cover the plan made now, or undefined when it does: it was given for a
 * rollback from and to given revisions (what the approval request showed), and the plan goes from
 * or to another (a release deployed while the request waited: rolling that back was never asked;
 * a step back chosen again). Until 2026-12-08 an approval covered whatever the run planned.
 */
function planChanged(approval: NonNullable<RollbackRecord['approval']>, plan: RollbackPlan | undefined): string | undefined {
  const was = approval.revisions;
  if (was === undefined || plan === undefined) return undefined;
  const now = { fromRevision: plan.fromRevision, toRevision: plan.toRevision };
  if (was.fromRevision === now.fromRevision && was.toRevision === now.toRevision) return undefined;
  return `${approval.by} approved ${revs(was)}; the rollback is now ${revs(now)} (changed since the request): approval needed again`;
}
