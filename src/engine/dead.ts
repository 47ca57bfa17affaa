import type { TargetRef } from '../actions/action.js';
import { redactUrl } from '../redact.js';
import { resolveTargets } from '../rules/targets.js';
import { sha256Hex } from '../store/keys.js';
import type { QueuedEvent } from '../store/store.js';
import type { EngineContext } from './context.js';
import { matchedRules } from './coalesce.js';
import { newRecord } from './intake.js';
import { messages } from './messages.js';
import { alertRecordId, targetKey, type RollbackRecord } from './record.js';

/** At most this much of the error that stopped the event goes into its record and escalation (the log has it whole). */
const REASON_MAX_CHARS = 300;

/**
 * An event the queue worker dead-lettered: delivered QUEUE_MAX_DELIVERIES times and never handled
 * (worker.ts). Recorded, counted and escalated, so that an alert rollguard gave up on is in the
 * records (GET /v1/rollbacks, the CLI, the dashboards' outcome counts), not only in a log line.
 *
 *   the dead event                                     records written          escalation
 *   firing; a rule and target of it without a record   one each, closed `error` one per record written
 *   firing; a rule and target of it with a record      none: that record stands one, naming it
 *   firing; no rule matches it (any more)              none                     one
 *   resolved                                           none                     one
 *
 * A record written here has an id of its own (rb-d-…, from the queue entry and the id an
 * evaluation would write), never the evaluation's: a resend of the alert by Alertmanager past the
 * dedupe TTL is evaluated afresh, not taken for handled. An existing record stands as it is (an
 * open one is taken up by the scheduler; a closed one says what happened). The store failing here
 * rejects: the worker leaves the event queued, and its next delivery comes back here, which writes
 * only the records still missing. Every record is written before any escalation goes out, so a
 * retry after a failure sends each once.
 */
export async function deadLettered(ctx: EngineContext, ev: QueuedEvent, err: unknown): Promise<RollbackRecord[]> {
  const alert = ev.alert;
  const why = reasonOf(err);
  const name = alert.labels.alertname ?? alert.fingerprint;
  const giveUp = `delivered ${ev.deliveries} times (QUEUE_MAX_DELIVERIES=${ctx.config.QUEUE_MAX_DELIVERIES}) and never handled: ${why}`;
  const written: RollbackRecord[] = [];
  const standing: RollbackRecord[] = [];
  if (alert.status !== 'resolved') {
    for (const { rule, ref } of targetsOfAlert(ctx, ev)) {
      const id = alertRecordId(rule.name, targetKey(ref), alert.fingerprint, alert.startsAt);
      const existing = await ctx.records.get(id);
      if (existing) {
        standing.push(existing);
        continue;
      }
      const deadId = deadRecordId(id, ev.id);
      const before = await ctx.records.get(deadId);
      if (before) {
        written.push(before); // an earlier try wrote it, then failed before its escalation
        continue;
      }
      const rec = newRecord(ctx, deadId, ref, { rule, alert });
      ctx.records.step(rec, 'received', `alert ${alert.labels.alertname ?? ''} received from Alertmanager (receiver ${alert.receiver})`);
      await ctx.finish(rec, 'error', `not handled: ${giveUp}. Escalated: act by hand. A resend of this alert is evaluated again`);
      written.push(rec);
    }
  }
  ctx.metrics.escalations.inc({ reason: 'event_dead' });
  for (const rec of written) ctx.notify(rec, messages.eventDead(name, giveUp, rec));
  if (written.length === 0) ctx.escalate(messages.eventDead(name, giveUp, undefined, standing));
  return written;
}

/** The rules an event's alert matches and their targets; none when they cannot be told (the escalation still goes out). */
function targetsOfAlert(ctx: EngineContext, ev: QueuedEvent): { rule: ReturnType<typeof matchedRules>[number]; ref: TargetRef }[] {
  const out: { rule: ReturnType<typeof matchedRules>[number]; ref: TargetRef }[] = [];
  try {
    for (const rule of matchedRules(ctx, ev.alert)) {
      let refs: TargetRef[];
      try {
        refs = resolveTargets(rule.targets, ev.alert.labels);
      } catch {
        continue; // a target not resolved from the labels is recorded by the evaluation itself (intake.ts)
      }
      for (const ref of refs) out.push({ rule, ref });
    }
  } catch (err) {
    ctx.log.error({ err, event: ev.id }, 'could not match a dead-lettered alert against the rules: escalated without a record');
  }
  return out;
}

/** The id of the record of a dead-lettered event for one rule and target: from the queue entry, never an evaluation's id. */
export function deadRecordId(evaluationId: string, eventId: string): string {
  return `rb-d-${sha256Hex(`${evaluationId}\u0000${eventId}`).slice(0, 20)}`;
}

/** The error, on one line, its URLs without credentials (redactUrl), cut at REASON_MAX_CHARS: it is written to a record any viewer may read. */
function reasonOf(err: unknown): string {
  const s = (err instanceof Error ? err.message : String(err))
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, (url) => redactUrl(url));
  return s.length > REASON_MAX_CHARS ? `${s.slice(0, REASON_MAX_CHARS)}…` : s;
}
