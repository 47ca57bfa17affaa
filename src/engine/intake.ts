import type { Logger } from 'pino';
import type { TargetRef } from '../actions/action.js';
import { endedAt, type Alert } from '../alertmanager/alert.js';
import { elapsedSeconds } from '../metrics.js';
import { forLog, intakeLimits, keptAnnotations } from '../alertmanager/limits.js';
import { activeDrill } from '../drills/store.js';
import { readPauseAhead } from '../guards/pause.js';
import { redactUrl } from '../redact.js';
import type { Rule } from '../rules/schema.js';
import { resolveTargets, TargetResolutionError } from '../rules/targets.js';
import type { QueuedEvent } from '../store/store.js';
import type { Chain, ChainLink } from './chain.js';
import type { EngineContext, ManualRequest } from './context.js';
import { matchedRules } from './coalesce.js';
import { evaluate } from './evaluate.js';
import { alertRecordId, OPEN_STATES, targetKey, type RollbackRecord } from './record.js';
import { closeResolved, recoverIfOrphaned } from './scheduler.js';
import { claim, releaseClaim, tryClaim } from './claim.js';
import { BURST_TRACKED, memberResolved, ownResolved } from './burst.js';

/**
 * One queued alert: a resolved alert is written to the records it caused; a firing one is matched
 * against the rules, and each matched rule's targets are resolved, claimed (one replica evaluates
 * one alert for one target), written ahead and evaluated. Every rollback an alert asks for has a
 * deterministic id, so redelivery (another replica, a restart, an Alertmanager resend past the
 * dedupe TTL) finds the same record and never acts twice. Throws only when the event must be
 * retried (store down, or another replica holds the claim).
 *
 * Resolves to whether a firing alert's handling stands for an evaluation that alerts coalesced
 * into it can join (coalesce.ts): true when, for every rule it matches, it made the evaluation
 * here, took it up, or found it still open; false when for some rule it found only the closed
 * record of an earlier one (the alert redelivered: a resend past the dedupe TTL, an event taken
 * over from a stopped replica), which decided nothing about the alerts coalesced into it: the
 * queue worker then handles them as their own events (worker.ts). A resolved alert: true.
 */
export async function handleEvent(ctx: EngineContext, ev: QueuedEvent): Promise<boolean> {
  const alert = ev.alert;
  // the sender's strings cut for the log (forLog): each may have ALERT_MAX_LABEL_BYTES, and every line of the handling carries them
  const log = lazyChild(() => ctx.log, { fingerprint: forLog(alert.fingerprint), alertname: clipped(alert.labels.alertname), status: alert.status });
  if (alert.status === 'resolved') {
    await resolve(ctx, alert, log);
    return true;
  }
  const rules = matchedRules(ctx, alert);
  if (rules.length === 0) {
    log().debug('no rule matches this alert');
    return true;
  }
  let evaluating = true;
  for (const rule of rules) if (!(await handleRule(ctx, rule, alert, lazyChild(log, { rule: rule.name })))) evaluating = false;
  return evaluating;
}

/** One rule of a firing alert; true when an evaluation of it is made here, taken up or still open (handleEvent). */
async function handleRule(ctx: EngineContext, rule: Rule, alert: Alert, log: () => Logger): Promise<boolean> {
  let refs: TargetRef[];
  try {
    refs = resolveTargets(rule.targets, alert.labels);
  } catch (err) {
    if (!(err instanceof TargetResolutionError)) throw err;
    // Recorded (the alert asked for something we cannot name safely) and nothing is touched.
    const ref: TargetRef = { kind: rule.targets[0]?.kind ?? 'Deployment', namespace: '?', name: '?' };
    const id = alertRecordId(rule.name, 'unresolved', alert.fingerprint, alert.startsAt);
    if (await ctx.records.get(id)) return false;
    const rec = newRecord(ctx, id, ref, { rule, alert });
    rec.target = `unresolved/${rule.name}`;
    ctx.records.step(rec, 'received', `alert ${alert.labels.alertname ?? ''} received`);
    await ctx.finish(rec, 'error', `target could not be resolved from the alert's labels: ${err.message}`);
    log().warn({ err: err.message }, 'target not resolved');
    return true;
  }
  const links = refs.map((ref) => ({ ref, id: alertRecordId(rule.name, targetKey(ref), alert.fingerprint, alert.startsAt) }));
  if (links.length === 1) return handleTarget(ctx, rule, alert, links[0]!, log);
  // A list of targets is rolled back in order, as a job in the store (chain.ts): the handler
  // starts the first target; whoever ends a target starts the next.
  const first = await ctx.records.get(links[0]!.id);
  if (!first) return handleTarget(ctx, rule, alert, links[0]!, log, { index: 0, targets: links });
  log().info({ record: first.id, state: first.state }, 'alert already handled (redelivery): its ordered chain goes on as each target ends');
  // a chain that goes on has a record open (the next one is written ahead before the current one closes)
  let open = false;
  for (const link of links) {
    const rec = link.id === first.id ? first : await ctx.records.get(link.id);
    if (rec && OPEN_STATES.includes(rec.state)) open = true;
    if (rec?.state === 'in_progress') await recoverIfOrphaned(ctx, rec);
  }
  return open;
}

/**
 * One target of an alert's rule: claimed, written ahead and evaluated (the first of a chain too).
 * The reads and writes that do not depend on each other go to the store together (one round trip
 * on Redis, which runs them in the order issued): the record, the claim, the drill mark and the
 * alert's links first; then the write-ahead record and the link; the claim is given up once the
 * write-ahead landed (claim.ts). True when evaluated here, or its record (another delivery's) is
 * still open; false when that record is closed.
 */
async function handleTarget(ctx: EngineContext, rule: Rule, alert: Alert, link: ChainLink, log: () => Logger, chain?: Chain): Promise<boolean> {
  // An earlier delivery of this alert may still be in hand here: the worker stopped waiting for it
  // at EVENT_DEADLINE and handed the event out again. Ours from the start, so that this one never
  // takes that delivery's claim as ours to evaluate with (claim()).
  const earlier = ctx.decidingHere.has(link.id);
  ctx.decidingHere.add(link.id);
  try {
    return await handleTargetHere(ctx, rule, alert, link, log, earlier, chain);
  } finally {
    ctx.decidingHere.delete(link.id);
  }
}

async function handleTargetHere(ctx: EngineContext, rule: Rule, alert: Alert, link: ChainLink, log: () => Logger, earlier: boolean, chain?: Chain): Promise<boolean> {
  const { ref, id } = link;
  const reading = ctx.records.get(id);
  const claiming = tryClaim(ctx, id);
  const drill = activeDrill(ctx.store, targetKey(ref));
  const links = ctx.records.alertLinks(alert.fingerprint, alert.startsAt);
  // read ahead for the path below; unused (and their failures moot) when the record exists
  for (const p of [claiming, drill, links]) p.catch(() => undefined);
  let existing: RollbackRecord | null;
  let how: 'new' | 'ours' | 'taken' | undefined;
  try {
    existing = await reading;
    // A claim of ours beside an existing record is given up at once, whether this read took it (an
    // earlier one had lapsed) or an earlier attempt here holds it and its release, retried in the
    // background, was cancelled by tryClaim(): one held by a replica doing nothing would hold back
    // a resend once the record is pruned. (Only a claim of this replica is given up: compare-and-set.)
    if (existing) {
      await claiming.catch(() => undefined);
      await releaseClaim(ctx, id);
    } else if (earlier) {
      // not written yet by the delivery in hand: left to it (a claim this one took is given back)
      if (await claiming) await releaseClaim(ctx, id);
      throw new Error(`an earlier delivery of this alert is still being handled here (record ${id}, not written yet); the event stays queued`);
    } else how = await claim(ctx, id, await claiming);
  } catch (err) {
    // Failed before claim() said the claim is ours to evaluate with (the record read, the claim's
    // own calls): whatever the store did with our SET NX, a claim of ours is given up, unless an
    // earlier delivery in hand here holds it. A release of an earlier attempt that tryClaim()
    // cancelled is so started again.
    if (!earlier) await releaseClaim(ctx, id);
    throw err;
  }
  if (existing) {
    log().info({ record: id, state: existing.state }, 'alert already handled for this target (redelivery): nothing more to do here');
    // a link lost with an earlier attempt (its write-ahead landed, the link did not) is written now
    const known = await links.catch(() => null);
    if (known && !known.includes(id)) await ctx.records.linkAlert(alert.fingerprint, alert.startsAt, id, known);
    if (existing.state === 'in_progress') await recoverIfOrphaned(ctx, existing);
    return OPEN_STATES.includes(existing.state);
  }
  if (how === 'taken') {
    // The replica that gave the claim up (or died) may have written its record after our read
    // above: read again now that the claim is ours, so one alert is never evaluated twice.
    const theirs = await ctx.records.get(id);
    if (theirs) {
      log().info({ record: id, state: theirs.state }, 'claim taken over, but its previous holder had written the record: nothing more to do here');
      // the record stands for the alert: the claim taken is given up, or it would outlive it
      await releaseClaim(ctx, id);
      if (theirs.state === 'in_progress') await recoverIfOrphaned(ctx, theirs);
      return OPEN_STATES.includes(theirs.state);
    }
  }
  // given up once the write-ahead landed, or when the attempt fails before it (finally below)
  let letGo: Promise<void> | undefined;
  try {
    const rec = newRecord(ctx, id, ref, { rule, alert });
    rec.owner = ctx.owner;
    if (chain) rec.chain = chain;
    markIfDrill(rec, await drill);
    ctx.records.step(rec, 'alert_started', `alert ${alert.labels.alertname ?? ''} started firing`, { at: alert.startsAt });
    ctx.records.step(rec, 'received', `received from Alertmanager (receiver ${alert.receiver})`);
    if (chain) ctx.records.step(rec, 'chain', `target 1 of ${chain.targets.length} of rule ${rule.name}, in order: ${chain.targets.map((l) => targetKey(l.ref)).join(', ')}`);
    // write-ahead: a replica dying from here on leaves a record to recover. The link goes with it
    // (on Redis it may land first); a link to a record not written (yet) is skipped by resolve().
    const known = await links;
    const writing = Promise.allSettled([ctx.records.save(rec, { first: true }), ctx.records.linkAlert(alert.fingerprint, alert.startsAt, id, known)]);
    // the pause guard's read goes with them (its answer if the guard comes soon: PAUSE_READ_AHEAD_MS)
    const pause = readPauseAhead(ctx.store);
    const [saved, linked] = await writing;
    if (saved.status === 'rejected') throw saved.reason;
    // The record stands for the alert from here on (every delivery reads it before the claim):
    // the claim is given up beside the evaluation. Held on, it would outlive a record pruned
    // (RECORD_RETENTION_NO_ACTION, REDIS_MAX_RECORDS) and refuse a resend of the alert on every
    // other replica; given up, such a resend is evaluated afresh.
    letGo = releaseClaim(ctx, id);
    if (linked.status === 'rejected') throw linked.reason;
    ctx.metrics.timeToDetect.observe(elapsedSeconds(alert.startsAt, alert.receivedAt));
    await evaluate(ctx, rec, rule, false, { pause });
  } finally {
    // Failed before the write-ahead record (the store went away): this replica is alive but no
    // longer evaluating, so its claim is given up for whichever replica gets the redelivery.
    await (letGo ?? releaseClaim(ctx, id));
  }
  return true;
}

/**
 * A child logger made on first use: pino serialises a child's bindings when it is made, and on the
 * common path an event logs nothing here (the record's close is logged by the context).
 */
function lazyChild(parent: () => Logger, bindings: Record<string, unknown>): () => Logger {
  let child: Logger | undefined;
  return () => (child ??= parent().child(bindings));
}

/** A new record in state deciding, for an alert's rule or a manual request. */
export function newRecord(ctx: EngineContext, id: string, ref: TargetRef, from: { rule?: Rule; alert?: Alert; manual?: ManualRequest }): RollbackRecord {
  const now = ctx.now();
  const rec: RollbackRecord = {
    id,
    target: targetKey(ref),
    state: 'deciding',
    createdAt: now,
    updatedAt: now,
    ref,
    source: from.manual ? 'manual' : 'alert',
    guards: [],
    dryRun: from.manual?.dryRun ?? false,
    times: {},
    timeline: [],
  };
  if (from.rule) {
    rec.rule = from.rule.name;
    rec.priority = from.rule.priority;
  }
  if (from.alert) {
    const a = from.alert;
    // Only the allowed annotations, within their size (intake keeps no others; events queued by an
    // earlier version may hold more), and never credentials of the generator's URL (user, password, token-like query values).
    const annotations = keptAnnotations(a.annotations, intakeLimits(ctx.config));
    rec.alert = { fingerprint: a.fingerprint, status: a.status, labels: a.labels, annotations, startsAt: a.startsAt, receivedAt: a.receivedAt, generatorURL: redactUrl(a.generatorURL) };
    rec.times.alertStartedAt = a.startsAt;
    rec.times.receivedAt = a.receivedAt;
  }
  if (from.manual) {
    rec.requestedBy = from.manual.requestedBy;
    rec.reason = from.manual.reason;
    rec.times.receivedAt = now;
  }
  return rec;
}

/** An alert about a target while a rollback drill runs on it (`drill`, read with activeDrill) is the drill's: its record says so (source drill). */
export function markIfDrill(rec: RollbackRecord, drill: string | null): void {
  if (drill === null) return;
  rec.source = 'drill';
  rec.drill = drill;
}

/**
 * A resolved alert: written to the records it caused (MTTR ends here if not verified earlier). The
 * resolution is marked first (`resolved:<id>`, which every later write of the record merges:
 * RecordBook.save), then the record is written only over the state it was read in: another replica
 * may have moved it meanwhile (a re-check taken up, an approval, the rollback's end), and a stale
 * copy must never put an earlier state back. When it moved, it is read again (its writer may
 * already have merged the mark), at most RESOLVE_TRIES times.
 */
async function resolve(ctx: EngineContext, alert: Alert, log: () => Logger): Promise<void> {
  const ids = await ctx.records.recordsOfAlert(alert.fingerprint, alert.startsAt);
  const at = endedAt(alert);
  let others = 0;
  let burstFiring = 0;
  for (const id of ids) {
    let last = false;
    for (let tries = 0; tries < RESOLVE_TRIES; tries++) {
      const rec = await ctx.records.get(id);
      if (!rec || rec.times.resolvedAt !== undefined) break;
      // A record follows its whole burst (burst.ts): the alerts coalesced into its evaluation (one
      // pod's alert each) are linked to it. One of them resolving while others, or the record's
      // own alert, still fire neither closes nor resolves it (one pod's alert clearing must not
      // drop the rollback the other pods' alerts still call for); the last one to resolve does.
      if (rec.alert && (rec.alert.fingerprint !== alert.fingerprint || rec.alert.startsAt !== alert.startsAt)) {
        last = await memberResolved(ctx, id, alert);
        if (!last) {
          others++;
          break;
        }
      } else if (tries === 0) {
        const firing = await ownResolved(ctx, id, at);
        if (firing > 0) {
          burstFiring++;
          log().info({ record: id, stillFiring: Number.isFinite(firing) ? firing : `over ${BURST_TRACKED}` }, "the record's own alert resolved while alerts coalesced into it still fire: it stays open, decided on by its trigger when due, and resolved when the last of them resolves");
          break;
        }
      }
      rec.times.resolvedAt = at;
      if (tries === 0) await ctx.records.markResolved(id, at);
      ctx.records.step(rec, 'resolved', `alert resolved at ${new Date(at).toISOString()}${last ? ' (the last firing alert of the burst coalesced into this rollback)' : ''}`);
      const read = rec.state;
      const written =
        read === 'held' || read === 'scheduled'
          ? // Nothing to do any more: the alert cleared before its re-check or window.
            await closeResolved(ctx, rec, read)
          : // A rollback waiting for approval stays open: the human decides (the record shows the
            // resolution), a chain's next target goes on, and one alert of a coalesced burst
            // resolving (its link marks the burst's one record) must not close it for the others.
            await ctx.records.save(rec, { expectState: read });
      if (!written) continue;
      if (read === 'succeeded' && rec.times.verifiedAt === undefined && rec.times.alertStartedAt !== undefined) {
        ctx.metrics.timeToRecover.observe(elapsedSeconds(rec.times.alertStartedAt, at));
      }
      break;
    }
  }
  log().info(
    { records: ids.length - others - burstFiring, ...(others > 0 ? { coalescedInto: others } : {}), ...(burstFiring > 0 ? { burstStillFiring: burstFiring } : {}) },
    others > 0 ? 'alert resolved (the records of the burst it was coalesced into stay open while other alerts of the burst fire)' : 'alert resolved',
  );
}

/** Reads and writes of one record by resolve() when another replica keeps moving it (each try follows a move). */
const RESOLVE_TRIES = 3;

/** A label value for a log line: cut (forLog), or undefined when absent. */
function clipped(v: string | undefined): string | undefined {
  return v === undefined ? undefined : forLog(v);
}
