import type { Action, ActionContext, ExecuteResult, RollbackPlan } from '../actions/action.js';
import { driftedBack, gitopsLines } from '../gitops/stage.js';
import { cooledKeys, extendCooldown, writeCooldown } from '../guards/cooldown.js';
import type { Guards, Rule } from '../rules/schema.js';
import { summarisedObjects } from './change.js';
import { confirmTrigger } from './confirm.js';
import { beforeLast } from './chain.js';
import type { EngineContext } from './context.js';
import { healthLine, measuredLine, messages } from './messages.js';
import type { RollbackRecord, RollbackState, TimelineEntry } from './record.js';
import { StoreUnavailableError } from '../store/store.js';
import { elapsedSeconds } from '../metrics.js';

export type Recovery = { outcome: 'succeeded' | 'failed' | 'unverified'; message: string; lines: string[]; stopped?: boolean };

/**
 * After the write: the action verifies the rollout (VERIFY_TIMEOUT), then the trigger must clear
 * in Prometheus (RECOVERY_TIMEOUT). Shutting down meanwhile leaves the record in_progress for the
 * next replica's recovery.
 */
export async function verifyAndEnd(ctx: EngineContext, rec: RollbackRecord, action: Action, plan: RollbackPlan, res: ExecuteResult, actx: ActionContext, settings: Guards): Promise<void> {
  // Closed only while the stored record is still in_progress (endOnce): had this replica's lock
  // lapsed and another replica's recovery closed it first, that outcome stands, said once.
  try {
    const v = await action.verify(plan, actx, { timeoutMs: ctx.config.VERIFY_TIMEOUT, execution: res });
    if (ctx.stopped) return await leaveForRecovery(ctx, rec);
    ctx.records.step(rec, 'rollout', `${v.outcome}: ${v.message}`, v.details);
    if (v.outcome !== 'succeeded') {
      const back = await driftedBack(ctx, rec, plan, res, actx, false);
      await endOnce(ctx, rec, settings, back ? 'failed' : v.outcome, back ?? `rollout ${v.outcome}: ${v.message}`, gitopsLines(rec));
      return;
    }
    rec.times.completedAt = ctx.now();
    if (rec.times.decidedAt !== undefined) ctx.metrics.timeToRollback.observe(elapsedSeconds(rec.times.decidedAt, rec.times.completedAt));
    const health = await verifyRecovered(ctx, rec);
    if (health.stopped) return await leaveForRecovery(ctx, rec);
    // the owner's reconcile window after the write: did it put the old revision back?
    const back = await driftedBack(ctx, rec, plan, res, actx, true);
    if (ctx.stopped) return await leaveForRecovery(ctx, rec);
    if (back) await endOnce(ctx, rec, settings, 'failed', back, gitopsLines(rec));
    else await endOnce(ctx, rec, settings, health.outcome, health.message, [...health.lines, healthLine(v.details), ...gitopsLines(rec)]);
  } catch (err) {
    if (ctx.stopped) return await leaveForRecovery(ctx, rec);
    const msg = err instanceof Error ? err.message : String(err);
    ctx.log.error({ err, record: rec.id }, 'verification stopped by an error');
    await escalateErrorOnce(ctx, rec, `error while verifying the rollback: ${msg}`, msg);
  }
}

/** Shutting down mid-verification: the record stays in_progress and its lock is released, for the next replica. */
async function leaveForRecovery(ctx: EngineContext, rec: RollbackRecord): Promise<void> {
  ctx.records.step(rec, 'handover', `${ctx.owner} is shutting down; verification is left to the next replica`);
  await ctx.records.save(rec).catch((err) => ctx.log.error({ err, record: rec.id }, 'could not write the handover'));
  ctx.log.warn({ record: rec.id, target: rec.target }, 'shutting down mid-verification: the rollback stays in_progress for recovery');
}

/** After the rollout: the trigger must clear in Prometheus within RECOVERY_TIMEOUT. */
export async function verifyRecovered(ctx: EngineContext, rec: RollbackRecord): Promise<Recovery> {
  if (beforeLast(rec)) {
    const c = rec.chain!;
    return { outcome: 'succeeded', message: `rollout complete; target ${c.index + 1} of ${c.targets.length} of an ordered chain: the trigger is re-checked after the last`, lines: [] };
  }
  const rule = ctx.ruleFor(rec);
  if (!rule && rec.rule === undefined) return { outcome: 'succeeded', message: 'rollout complete (manual rollback: no trigger to re-check)', lines: [] };
  // renamed or removed by a reload during the rollout: its trigger is not known any more, so not re-checked
  if (!rule) return { outcome: 'unverified', message: `rollout complete; rule ${rec.rule} is no longer loaded (a reload removed or renamed it), so its trigger could not be re-checked`, lines: [] };
  if (!ctx.prometheus) return { outcome: 'unverified', message: 'rollout complete; no Prometheus to re-check the trigger', lines: [] };
  // "Still true" = the trigger holds over its last two steps since the rollout completed;
  // recovered = it no longer does. Samples from before (the rollout's own, its pods half
  // replaced, or the bad revision's) say nothing of the revision rolled back to: until 2026-12-08
  // one dip among them, the first check right after a rollout shorter than two steps, closed a
  // rollback whose trigger held again at once `succeeded`.
  const since = rec.times.completedAt;
  const probeOf = (now: number): Rule => ({ ...rule, trigger: { ...rule.trigger, forMs: Math.max(0, Math.min(rule.trigger.stepMs * 2, since === undefined ? Infinity : now - since)) } });
  const deadline = ctx.now() + ctx.config.RECOVERY_TIMEOUT;
  let last = '';
  let lines: string[] = [];
  // a baseline relative to the rollout start: the one the decision read, before the revision
  // rolled back from (read from the target now, it would be the rollback's own rollout; until
  // 2026-12-08 none was passed, and every such rollback ended unverified, "rollout start unknown")
  const started = rec.confirmation?.rolloutStartedAt;
  for (;;) {
    const now = ctx.now();
    const c = await confirmTrigger({ rule: probeOf(now), alert: { labels: rec.alert?.labels ?? {} }, now, ...(started !== undefined ? { rolloutStartedAt: started } : {}) }, { prometheus: ctx.prometheus });
    last = `${c.busy ? 'prometheus_busy' : c.outcome}: ${c.reason}`;
    lines = measuredLine(rule.trigger.kind, c.value, c.limit);
    if (c.outcome === 'not_confirmed') {
      rec.times.verifiedAt = ctx.now();
      return { outcome: 'succeeded', message: `rollout complete and the trigger cleared (${c.reason})`, lines };
    }
    if (ctx.stopped) return { outcome: 'unverified', message: 'shutting down', lines, stopped: true };
    if (ctx.now() >= deadline) break;
    await sleep(Math.min(ctx.config.RECOVERY_POLL, Math.max(0, deadline - ctx.now())));
  }
  if (last.startsWith('prometheus_down') || last.startsWith('prometheus_busy') || last.startsWith('error') || last.startsWith('insufficient_data')) {
    return { outcome: 'unverified', message: `rollout complete; the trigger could not be re-checked (${last})`, lines };
  }
  return { outcome: 'failed', message: `rollout complete but the trigger still holds after ${Math.round(ctx.config.RECOVERY_TIMEOUT / 1000)}s (${last})`, lines };
}

/** An error stopped a rollback that had started changing the cluster: failed, escalated once. */
export async function escalateError(ctx: EngineContext, rec: RollbackRecord, message: string, error: string): Promise<RollbackState> {
  escalate(ctx, rec, error);
  return ctx.finish(rec, 'failed', message);
}

/**
 * Ends a verified (or not) rollback: closed only while the stored record is still in_progress (a
 * replica whose lock lapsed and a recovery may both get here: verifyAndEnd, scheduler.ts), and only
 * the replica whose close landed writes the outcome into the cooldown, counts and sends the one
 * notification. False when another replica closed it first: nothing written, counted or sent.
 */
export async function endOnce(ctx: EngineContext, rec: RollbackRecord, settings: Guards, outcome: Recovery['outcome'], message: string, lines: string[] = []): Promise<boolean> {
  // the closing steps of the tries the store failed: one of them may have landed, its answer lost
  const tried: TimelineEntry[] = [];
  const close = () =>
    closeOnce(
      ctx,
      rec,
      'in_progress',
      outcome,
      message,
      async () => {
        // the record is closed already: a failure here leaves the cooldown its recovery started (no outcome), not the close undone
        await outcomeCooldown(ctx, rec, settings, outcome).catch((err: unknown) => ctx.log.warn({ err, record: rec.id }, "could not write the rollback's outcome to the target's cooldown; the cooldown written when it was taken up stays"));
        announce(ctx, rec, outcome, message, lines);
      },
      tried,
    );
  // A store that fails at the close for a moment (a failover, a blip) is waited for, CLOSE_RETRY_MS
  // apart, while this replica still holds the locks: otherwise the verification's catch-all closes
  // a rollback that worked `failed`, escalated, and an ordered chain stops on it. Past the tries
  // the error goes on to that catch-all, as before.
  const steps = rec.timeline.length;
  const before = rec.outcome;
  for (let i = 0; ; i++) {
    try {
      return await close();
    } catch (err) {
      // as it was before the close that failed, whatever comes next (a try again, the catch-all's
      // close, or a shutdown's hand-over, which saves the record as it is: never as closed)
      tried.push(...rec.timeline.slice(steps));
      rec.timeline.length = steps;
      rec.state = 'in_progress';
      if (before === undefined) delete rec.outcome;
      else rec.outcome = before;
      if (!(err instanceof StoreUnavailableError)) throw err;
      ctx.metrics.storeErrors.inc({ op: 'close' });
      if (i >= CLOSE_RETRY_MS.length || ctx.stopped) throw err;
      ctx.log.warn({ err, record: rec.id, outcome, tries: i + 1 }, 'the store failed at the close of a verified rollback: trying again shortly');
      await sleep(CLOSE_RETRY_MS[i]!);
    }
  }
}

/** The pauses between tries of a verified rollback's close that the store failed (endOnce): about 2 s in all. */
export const CLOSE_RETRY_MS = [250, 500, 1000];

/** escalateError() for a rollback another replica may be closing too (see endOnce). */
export function escalateErrorOnce(ctx: EngineContext, rec: RollbackRecord, message: string, error: string): Promise<boolean> {
  return closeOnce(ctx, rec, 'in_progress', 'failed', message, async () => escalate(ctx, rec, error));
}

/**
 * Closes a record only while the stored one is still `from` (ctx.finishFrom), then runs `after`
 * (count, notify) and writes the record again, so its timeline keeps the notification: a
 * notification sent before a close that lost would be a second "done" for one rollback.
 *
 * `tried`: the closing steps of earlier tries of this very close that the store failed (endOnce).
 * A store that times out may have written the record and lost only its answer; the try after it
 * then finds the record closed, by this replica. It is told from another replica's close by its
 * stored timeline holding one of those steps (their time, step and message), and is then this
 * close's own: `after` runs (before 2026-12-07 nothing was sent, counted or written to the
 * cooldown for it, as for a close another replica made).
 */
export async function closeOnce(ctx: EngineContext, rec: RollbackRecord, from: RollbackState, state: RollbackState, message: string, after: () => Promise<void>, tried: readonly TimelineEntry[] = []): Promise<boolean> {
  if (!(await ctx.finishFrom(rec, from, state, message))) {
    const stored = tried.length > 0 ? await ctx.records.get(rec.id) : null;
    if (!stored || stored.state !== state || !stored.timeline.some((s) => tried.some((x) => x.at === s.at && x.step === s.step && x.message === s.message))) {
      ctx.log.warn({ record: rec.id, state }, 'the record moved on first (another replica closed it, or its alert resolved): that outcome stands, nothing is sent from here');
      return false;
    }
    // an earlier try's close landed, its answer lost: the record as it was closed, said from here
    Object.assign(rec, stored);
    ctx.log.warn({ record: rec.id, state }, "an earlier try of the close had landed, its answer lost: the close is this replica's, said once");
  }
  await after();
  await ctx.records.save(rec).catch((err: unknown) => ctx.log.warn({ err, record: rec.id }, 'the rollback is closed and notified, but its notification could not be written to its timeline'));
  return true;
}

/**
 * The target's cooldown, from the execution, now carrying the outcome (a step back reads it:
 * cooldown.ts); and the other objects' it wrote (a Helm release's workloads, a Canary's stable
 * Deployment: cooledKeys), from the execution too, so they stay in cooldown as long as the target.
 * Both were started before the write (rollback.ts), and the execution may end long after it:
 * `helm rollback --wait` returns once the release is ready (up to 5m). The others' only over this
 * rollback's own entry (extendCooldown): a recovery holds none of their locks.
 */
async function outcomeCooldown(ctx: EngineContext, rec: RollbackRecord, settings: Guards, outcome: Recovery['outcome']): Promise<void> {
  const at = rec.times.executedAt ?? ctx.now();
  const now = ctx.now();
  const others = cooledKeys(summarisedObjects(rec.plan), rec.target);
  await Promise.all([
    writeCooldown(ctx.store, rec.target, { id: rec.id, at, until: at + settings.cooldown, outcome }, now),
    ...others.map((key) => extendCooldown(ctx.store, key, { id: rec.id, at, until: at + settings.cooldown }, now)),
  ]);
}

/** The one notification (and escalation count) of a verified, or not, rollback. */
function announce(ctx: EngineContext, rec: RollbackRecord, outcome: Recovery['outcome'], message: string, lines: string[]): void {
  if (outcome === 'succeeded') {
    if (rec.times.alertStartedAt !== undefined && rec.times.verifiedAt !== undefined) {
      ctx.metrics.timeToRecover.observe(elapsedSeconds(rec.times.alertStartedAt, rec.times.verifiedAt));
    }
    ctx.notify(rec, messages.succeeded(rec, message, lines));
  } else if (outcome === 'failed') {
    // Escalated once; never retried in a loop (the cooldown blocks the next attempt).
    ctx.metrics.escalations.inc({ reason: 'rollback_failed' });
    ctx.notify(rec, messages.didNotRecover(rec, message, lines));
  } else {
    ctx.notify(rec, messages.unverified(rec, message, lines));
  }
}

function escalate(ctx: EngineContext, rec: RollbackRecord, error: string): void {
  ctx.metrics.escalations.inc({ reason: 'error' });
  const m = messages.failed(rec, error);
  // owners suspended for it stay so (the write may have landed): said, with what to do next
  ctx.notify(rec, rec.gitops?.suspended?.length ? { ...m, lines: [...m.lines, ...gitopsLines(rec)] } : m);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
