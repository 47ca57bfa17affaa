import { outOfScope } from '../guards/scope.js';
import type { Rule } from '../rules/schema.js';
import { confirmTrigger, type Confirmation } from './confirm.js';
import type { EngineContext } from './context.js';
import { decide, recordDecision } from './decide.js';
import { messages } from './messages.js';
import type { RollbackRecord, RollbackState } from './record.js';
import { rollback, type ReadAhead } from './rollback.js';

/**
 * Confirm and decide, then act on the decision: no action, notify only (hotfix forward), hold or
 * schedule (the scheduler looks again at dueAt), or roll back now. `recheck`: the delayed look of
 * an SLO-at-risk rule. Returns the state the record is in.
 */
export async function evaluate(ctx: EngineContext, rec: RollbackRecord, rule: Rule, recheck: boolean, ahead?: ReadAhead): Promise<RollbackState> {
  const now = ctx.now();
  // A baseline relative to the rollout start is read from the target (its current revision), and
  // nothing is read of a target outside rollguard's scope (src/guards/scope.ts): the record is
  // closed blocked by the scope guard, in its words, naming the setting. Quietly: its trigger was
  // never confirmed, and an alert not confirmed notifies no one (a broad rule matching kube-system
  // would otherwise page on every firing).
  if (rule.trigger.baseline?.relativeTo === 'rollout_start' && rule.action !== 'notify') {
    const outside = outOfScope(ctx.config, rec.target, rec.ref.namespace);
    if (outside !== undefined) {
      ctx.metrics.guardBlocked.inc({ guard: 'scope' });
      rec.guards = [{ guard: 'scope', result: 'block', reason: outside }]; // a re-check's earlier verdicts do not stand
      ctx.records.step(rec, 'decided', `not confirmed: the trigger's baseline is read at the target's rollout start, and nothing is read of a target outside rollguard's scope`);
      ctx.records.step(rec, 'guard:scope', `block: ${outside}`);
      return ctx.finish(rec, 'blocked', `blocked by scope: ${outside}`);
    }
  }
  const confirmation = await confirm(ctx, rule, rec);
  rec.confirmation = { outcome: confirmation.outcome, reason: confirmation.reason };
  if (confirmation.busy) rec.confirmation.busy = true;
  if (confirmation.query !== undefined) rec.confirmation.query = confirmation.query;
  if (confirmation.value !== undefined) rec.confirmation.value = confirmation.value;
  if (confirmation.limit !== undefined) rec.confirmation.limit = confirmation.limit;
  if (confirmation.rolloutStartedAt !== undefined) rec.confirmation.rolloutStartedAt = confirmation.rolloutStartedAt;
  ctx.records.step(rec, 'confirmed', `${confirmation.busy ? 'prometheus_busy' : confirmation.outcome}: ${confirmation.reason}`, { query: confirmation.query, value: confirmation.value, limit: confirmation.limit });

  // an alert that resolved while its record was being decided (resolve() then only marks it) rolls nothing back
  const d = decide({ rule, alert: { status: rec.times.resolvedAt !== undefined ? 'resolved' : 'firing' }, confirmation, now, recheck });
  recordDecision(ctx.metrics, rule, d);
  rec.decision = { decision: d.decision, reason: d.reason };
  if (d.at !== undefined) rec.decision.at = d.at;
  if (d.requiresApproval) rec.decision.requiresApproval = true;
  ctx.records.step(rec, 'decided', `${d.decision}: ${d.reason}`);

  switch (d.decision) {
    case 'no_action':
      return ctx.finish(rec, 'not_confirmed', d.reason);
    case 'notify_only':
      ctx.markDecided(rec);
      ctx.notify(rec, messages.notifyOnly(rec, rule.priority, d.reason));
      return ctx.finish(rec, 'notified', d.reason);
    case 'hold':
    case 'recheck_later':
    case 'scheduled':
      // once per record and cause, not at every re-check of the hold: a record paged for want of a
      // turn still pages when Prometheus then answers an error (credentials), and the other way round
      const cause = confirmation.busy ? 'prometheus_busy' : 'trigger_error';
      if (d.escalate && !rec.timeline.some((s) => s.step === 'escalated' && ((s.data as { cause?: string } | undefined)?.cause ?? 'trigger_error') === cause)) {
        if (confirmation.busy) {
          ctx.log.error({ record: rec.id, target: rec.target, rule: rule.name, reason: confirmation.reason }, 'P0 trigger got no turn at Prometheus (PROMETHEUS_MAX_CONCURRENT): held, escalated');
          ctx.metrics.escalations.inc({ reason: 'prometheus_busy' });
          ctx.records.step(rec, 'escalated', `P0 held for want of a turn at Prometheus, escalated: ${confirmation.reason}`, { cause });
          ctx.notify(rec, messages.triggerBusy(rec, confirmation.reason));
        } else {
          ctx.log.error({ record: rec.id, target: rec.target, rule: rule.name, reason: confirmation.reason }, 'trigger could not be evaluated: held, escalated');
          ctx.metrics.escalations.inc({ reason: 'trigger_error' });
          ctx.records.step(rec, 'escalated', `held on an error answer, escalated: ${confirmation.reason}`, { cause });
          ctx.notify(rec, messages.triggerError(rec, confirmation.reason));
        }
      }
      rec.state = d.decision === 'hold' ? 'held' : 'scheduled';
      rec.dueAt = d.at ?? now;
      if (d.decision === 'recheck_later') rec.firstLookAt ??= now;
      if (d.decision === 'hold') rec.heldSince ??= now;
      else delete rec.heldSince;
      // a wait on the locks (the lock guard's, 2 x LOCK_TTL at most) is not this wait: one after it counts afresh
      delete rec.lockWaitSince;
      delete rec.writeLockWaitSince;
      await ctx.records.save(rec);
      return rec.state;
    case 'rollback_now':
      ctx.markDecided(rec);
      return rollback(ctx, rec, rule.guards, ahead);
  }
}

async function confirm(ctx: EngineContext, rule: Rule, rec: RollbackRecord): Promise<Confirmation> {
  const now = ctx.now();
  if (!ctx.prometheus) {
    return {
      rule: rule.name,
      outcome: 'prometheus_down',
      reason: 'no Prometheus configured (PROMETHEUS_URL)',
      onPrometheusDown: rule.onPrometheusDown,
      evaluatedAt: now,
      window: { startMs: now - rule.trigger.forMs, endMs: now, stepMs: rule.trigger.stepMs },
    };
  }
  const input: Parameters<typeof confirmTrigger>[0] = { rule, alert: { labels: rec.alert?.labels ?? {} }, now };
  if (rule.trigger.baseline?.relativeTo === 'rollout_start') {
    // "P95 > 2x the baseline before the current rollout": the rollout began when the current revision was created.
    const started = await rolloutStartedAt(ctx, rec);
    if (started !== undefined) input.rolloutStartedAt = started;
  }
  return confirmTrigger(input, { prometheus: ctx.prometheus, metrics: ctx.metrics });
}

/**
 * When the target's current revision was created (read-only plan), or undefined if unknown: never
 * read outside rollguard's scope (a notify-only rule's trigger then has no baseline to compare with).
 */
async function rolloutStartedAt(ctx: EngineContext, rec: RollbackRecord): Promise<number | undefined> {
  const action = ctx.actions[rec.ref.kind];
  if (!action) return undefined;
  const outside = outOfScope(ctx.config, rec.target, rec.ref.namespace);
  if (outside !== undefined) {
    ctx.log.info({ record: rec.id, target: rec.target, reason: outside }, 'the rollout start of a target outside rollguard\'s scope is not read: no baseline');
    return undefined;
  }
  try {
    const plan = await action.plan(rec.ref, ctx.actionContext(rec, () => [], { currentOnly: true }));
    return plan.current?.createdAt;
  } catch (err) {
    ctx.log.warn({ err, record: rec.id }, 'could not read the rollout start for the baseline');
    return undefined;
  }
}
