import type { TargetRef } from '../actions/action.js';
import { activeDrill } from '../drills/store.js';
import { redactUrl } from '../redact.js';
import type { Rule } from '../rules/schema.js';
import { resolveTargets } from '../rules/targets.js';
import { sha256Hex } from '../store/keys.js';
import type { QueuedEvent } from '../store/store.js';
import type { EngineContext } from './context.js';
import { matchedRules } from './coalesce.js';
import { evaluatedBy } from './claim.js';
import { markIfDrill, newRecord } from './intake.js';
import { messages, type Standing } from './messages.js';
import { alertRecordId, targetKey, type RollbackRecord } from './record.js';

/** At most this much of the error that stopped the event goes into its record and escalation (the log has it whole). */
const REASON_MAX_CHARS = 300;
/** Open records of a target looked at for one of the same rule (newest first): they are few; this bounds the read. */
const OPEN_LOOKUP = 50;

/**
 * An event the queue worker dead-lettered: delivered QUEUE_MAX_DELIVERIES times and never handled
 * (worker.ts). Recorded and escalated, so that an alert rollguard gave up on is in the records
 * (GET /v1/rollbacks, the CLI), not only in a log line. For each rule the firing alert matches
 * (a rule's ordered list of targets is one unit: its first target stands for it, as in intake.ts):
 *
 *   what stands for the rule and target                    written                 the escalation says
 *   the evaluation's record                                nothing                 "its record … stands"
 *   a live replica evaluating it (its claim, or in hand)   nothing                 "being evaluated by …"
 *   an open record of the same rule and target             nothing                 "its record … stands"
 *     (a coalesced alert's evaluation, under another alert)
 *   none                                                   a record, closed error  "recorded as …"
 *
 * A resolved alert, or one no rule matches, is escalated without a record. One escalation per
 * event, critical, naming every record; counted in rollguard_escalations_total{reason="event_dead"}.
 * The record is not counted with the rollbacks (it is no decision: rollguard_rollbacks_total is
 * left to evaluations), is linked to its alert (its resolution is written to it) and says
 * `source: drill` when a drill runs on the target.
 *
 * Its id is its own (rb-d-…, from the queue entry and the evaluation's id), never the
 * evaluation's: a resend of the alert past the dedupe TTL is evaluated afresh, not taken for
 * handled. The store failing here rejects, so the worker leaves the event queued and its next
 * delivery comes back here, writing only the records still missing; the escalation does not wait
 * for the store: it goes out at once, saying the record is not written yet. A record found
 * already written by an earlier try (its ack was lost) is not escalated again, nor is an event
 * this process escalated before (`ctx.deadEscalated`).
 */
export async function deadLettered(ctx: EngineContext, ev: QueuedEvent, err: unknown): Promise<RollbackRecord[]> {
  const alert = ev.alert;
  const name = alert.labels.alertname ?? alert.fingerprint;
  const giveUp = `delivered ${ev.deliveries} times (QUEUE_MAX_DELIVERIES=${ctx.config.QUEUE_MAX_DELIVERIES}) and never handled: ${reasonOf(err)}`;
  const records: RollbackRecord[] = [];
  const standing: Standing[] = [];
  let wrote = 0;
  try {
    if (alert.status !== 'resolved') {
      for (const { rule, ref, of } of unitsOf(ctx, ev)) {
        const target = targetKey(ref);
        const id = alertRecordId(rule.name, target, alert.fingerprint, alert.startsAt);
        const existing = await ctx.records.get(id);
        if (existing) {
          standing.push({ id, target, state: existing.state });
          continue;
        }
        const by = await evaluatedBy(ctx, id);
        if (by !== null) {
          standing.push({ id, target, by });
          continue;
        }
        const open = (await ctx.records.openOf(target, OPEN_LOOKUP)).find((r) => r.rule === rule.name);
        if (open) {
          standing.push({ id: open.id, target, state: open.state });
          continue;
        }
        const deadId = deadRecordId(id, ev.id);
        const before = await ctx.records.get(deadId);
        if (before) {
          records.push(before);
          continue;
        }
        const rec = newRecord(ctx, deadId, ref, { rule, alert });
        markIfDrill(rec, await activeDrill(ctx.store, target));
        ctx.records.step(rec, 'received', `alert ${alert.labels.alertname ?? ''} received from Alertmanager (receiver ${alert.receiver})`);
        const chain = of.length > 1 ? ` The first of ${of.length} targets in order (${of.join(', ')}); none was started.` : '';
        const message = `not handled: ${giveUp}. Escalated: act by hand.${chain} A resend of this alert is evaluated again`;
        rec.state = 'error';
        rec.outcome = { result: 'error', message };
        ctx.records.step(rec, 'notified', `event_dead: escalated (critical)`);
        ctx.records.step(rec, 'ended', `error: ${message}`);
        await ctx.records.save(rec, { first: true });
        await ctx.records.linkAlert(alert.fingerprint, alert.startsAt, deadId);
        records.push(rec);
        wrote++;
      }
    }
  } catch (storeErr) {
    ctx.log.error({ err: storeErr, event: ev.id, records: records.map((r) => r.id) }, 'could not record a dead-lettered alert; escalated now, recorded once the store answers (the event stays queued)');
    escalateOnce(ctx, ev, messages.eventDead(name, giveUp, records, standing, true), records[0]);
    throw storeErr;
  }
  if (records.length > 0 && wrote === 0) {
    ctx.log.info({ event: ev.id, records: records.map((r) => r.id) }, 'dead-lettered alert delivered again: its records were written (and escalated) before');
  } else {
    escalateOnce(ctx, ev, messages.eventDead(name, giveUp, records, standing, false), records[0]);
  }
  return records;
}

/** Each rule the alert matches, with its target (a list's first), and the list; none when they cannot be told (the escalation still goes out). */
function unitsOf(ctx: EngineContext, ev: QueuedEvent): { rule: Rule; ref: TargetRef; of: string[] }[] {
  const out: { rule: Rule; ref: TargetRef; of: string[] }[] = [];
  try {
    for (const rule of matchedRules(ctx, ev.alert)) {
      let refs: TargetRef[];
      try {
        refs = resolveTargets(rule.targets, ev.alert.labels);
      } catch {
        continue; // a target not resolved from the labels is recorded by the evaluation itself (intake.ts)
      }
      if (refs[0]) out.push({ rule, ref: refs[0], of: refs.map(targetKey) });
    }
  } catch (err) {
    ctx.log.error({ err, event: ev.id }, 'could not match a dead-lettered alert against the rules: escalated without a record');
  }
  return out;
}

/** One escalation per dead event in this process, however often it comes back (a store failing, an ack lost). */
function escalateOnce(ctx: EngineContext, ev: QueuedEvent, m: ReturnType<typeof messages.eventDead>, about: RollbackRecord | undefined): void {
  if (!ctx.deadEscalated.add(ev.id)) return;
  ctx.metrics.escalations.inc({ reason: 'event_dead' });
  ctx.escalate(m, about);
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
