import { gitopsLines } from '../gitops/stage.js';
import { refreshSuspendedGauge } from '../gitops/tally.js';
import { writtenObjects } from '../actions/index.js';
import { objectKey } from '../guards/guard.js';
import { readPause } from '../guards/pause.js';
import { writeOutOfScope } from '../guards/scope.js';
import type { Action, ActionContext, ChangedObject, RollbackPlan } from '../actions/action.js';
import { WORKLOADS } from '../actions/helm-workloads.js';
import { cooledKeys, dropCooldowns, readCooldown, writeCooldowns } from '../guards/cooldown.js';
import { checkFence, lockName, lockWrites, rollbackHolder } from '../guards/lock.js';
import type { Lock } from '../store/store.js';
import { afterPrevious, decidedByChain } from './chain.js';
import { summarisedObjects } from './change.js';
import type { EngineContext, LeftBehind } from './context.js';
import { evaluate } from './evaluate.js';
import { healthLine, messages } from './messages.js';
import type { RollbackRecord } from './record.js';
import { pruneByRetention } from '../store/retention.js';
import { resumable } from '../migrations/stage.js';
import { execute, rollback } from './rollback.js';
import { holdLocks, releaseAll } from './locks.js';
import { alive, heartbeat, heartbeatFailed, heartbeatTtl } from './heartbeat.js';
import { closeOnce, endOnce, escalateError, escalateErrorOnce, verifyRecovered } from './verify.js';
import { fmtDuration } from '../guards/guard.js';
import { leaseSlot, recoveryMember, releaseSlot, type SlotHold } from '../guards/concurrency.js';
import { eachAtMost } from './each.js';

/**
 * Due work, run every SCHEDULER_INTERVAL on every replica: records left deciding by a replica
 * that stopped, held and scheduled decisions whose time has come, expired approvals, rollbacks
 * left in_progress by a replica that died (found by their free lock), and pruning.
 */
export class Scheduler {
  private lastPrune = 0;

  constructor(private readonly ctx: EngineContext) {}

  async tick(): Promise<void> {
    const ctx = this.ctx;
    const now = ctx.now();
    // keepAlive (heartbeat.ts) writes it on its own timer; a failure here does not stop the due work
    await heartbeat(ctx).catch((err: unknown) => heartbeatFailed(ctx, err, 'could not write the replica heartbeat at the start of a scheduler tick; the tick goes on'));
    // Records left deciding (before anything was executed) by a dead replica, or by this one when a
    // store failure stopped it (its redelivery finds the record and does nothing): decide again.
    // One this process knows it left (ctx.leftBehind: it remembers what the attempt held) is
    // decided again at once, once what it held is given back; any other of ours waits until any
    // target lock the failed attempt took has expired (a process before this one, of the same name).
    // Those stopped by the store again and again wait longer each time (LeftBehind.nextAt).
    const listed = new Set<string>();
    await eachAtMost(ctx.records.inState('deciding'), ctx.config.RECHECK_CONCURRENCY, (rec) => rec.target, async (rec) => {
      listed.add(rec.id);
      const leftBehind = ctx.leftBehind.get(rec.id);
      const left = leftBehind !== undefined;
      if (leftBehind && now < leftBehind.nextAt) return;
      // taken up since by another replica, alive: left to it (what we left is given back when it is no longer deciding)
      if (leftBehind && rec.owner !== undefined && rec.owner !== ctx.owner && rec.updatedAt > leftBehind.at && (await alive(ctx, rec.owner))) return;
      // (a dead replica's record this process took up, then failed on, is ours too: its store copy still names the dead one)
      const mine = rec.owner === ctx.owner || left;
      if (mine && (ctx.decidingHere.has(rec.id) || (!left && now - rec.updatedAt < Math.max(2 * heartbeatTtl(ctx), 2 * ctx.config.LOCK_TTL)))) return;
      if (!mine && (now - rec.updatedAt < 2 * heartbeatTtl(ctx) || (await alive(ctx, rec.owner)))) return;
      await claimDue(ctx, rec, async (fresh) => {
        if (!(await giveBackLeft(ctx, fresh.id))) return;
        // a chain's later target: only once the target before it has closed, and as it closed
        const previous = await afterPrevious(ctx, fresh);
        if (previous.verdict === 'wait') return;
        ctx.records.step(fresh, 'recovery', mine ? `left deciding by this replica (${ctx.owner}) when ${!left && fresh.kubeRetries ? 'the API server answered an error (see the retry step)' : 'a store call failed'}; decided again` : `left deciding by ${fresh.owner ?? '?'}, which is gone; taken up by ${ctx.owner}`);
        fresh.owner = ctx.owner;
        // decided afresh, some time on (its replica stopped, or a store call failed): a wait on the
        // locks before counts afresh too, or the first look would block behind a holder just begun
        delete fresh.lockWaitSince;
        delete fresh.writeLockWaitSince;
        if (previous.verdict === 'blocked') return ctx.finish(fresh, 'blocked', previous.reason);
        const rule = ctx.ruleFor(fresh);
        if (fresh.source === 'manual' || fresh.approval?.decision === 'approved' || decidedByChain(fresh)) return rollback(ctx, fresh, ctx.settingsFor(fresh));
        // decided afresh from its trigger: a target its rule rolls back otherwise now is taken as it says
        const gone = ctx.ruleGone(fresh, { adopt: true });
        if (gone || !rule) return ctx.finish(fresh, 'expired', gone ?? `rule ${fresh.rule} is no longer loaded`);
        return evaluate(ctx, fresh, rule, pastFirstLook(fresh));
      });
    }, ctx.log, 'deciding again a rollback left deciding');
    // no longer deciding (closed, or taken up elsewhere, since): nothing to give back from here;
    // a notification held back by a close whose answer was lost goes out if that close landed
    for (const [id, left] of ctx.leftBehind) {
      if (listed.has(id) || left.at >= now) continue;
      ctx.leftBehind.delete(id);
      if (left.unsent) await sendIfLanded(ctx, id, left.unsent);
    }
    // Before the re-checks, which may be many: a rollback a dead replica left in_progress waits for none of them.
    for await (const rec of ctx.records.inState('in_progress')) await recoverIfOrphaned(ctx, rec);
    // Due re-checks, RECHECK_CONCURRENCY at once (each may wait on Prometheus for PROMETHEUS_TIMEOUT,
    // and a Prometheus outage holds every alert of a storm): one after another, a tick would take
    // their count times that.
    for (const state of ['held', 'scheduled'] as const) {
      await eachAtMost(ctx.records.inState(state), ctx.config.RECHECK_CONCURRENCY, (rec) => rec.target, async (rec) => {
        if ((rec.dueAt ?? 0) > now) return;
        await claimDue(ctx, rec, async (fresh) => {
          // re-checked meanwhile by another replica (held or scheduled again, due later): not again here
          if ((fresh.dueAt ?? 0) > now) return;
          if (state === 'held' && now - (fresh.heldSince ?? now) >= ctx.config.HOLD_MAX_AGE) return heldTooLong(ctx, fresh);
          // its alert resolved while it was being decided (resolve() then only marks it, and the
          // decision that followed held or scheduled it): nothing to do any more, as for one resolved while waiting
          if (fresh.times.resolvedAt !== undefined) return closeResolved(ctx, fresh, state);
          // its rule removed or renamed, or its targets changed, by a reload: nothing done on its behalf any
          // more; a target it rolls back otherwise now (its options, its revision) is decided as it says
          const rule = ctx.ruleFor(fresh);
          const gone = ctx.ruleGone(fresh, { adopt: true });
          if (gone || !rule) return ctx.finishFrom(fresh, state, 'expired', gone ?? `rule ${fresh.rule} is no longer loaded`);
          // Taken up (deciding) only while still held or scheduled: an alert resolving meanwhile
          // closes it not_confirmed (resolve() in intake.ts), and that close must stand, never be
          // written over by this re-check's decision.
          ctx.records.step(fresh, 'due', `${state} rollback due: confirming again`);
          fresh.state = 'deciding';
          fresh.owner = ctx.owner;
          if (!(await ctx.records.save(fresh, { expectState: state }))) return;
          return evaluate(ctx, fresh, rule, pastFirstLook(fresh));
        });
      }, ctx.log, `the re-check of a ${state} rollback`);
    }
    const pending: RollbackRecord[] = [];
    for await (const rec of ctx.records.inState('pending_approval')) pending.push(rec);
    ctx.metrics.pendingApprovals.set(pending.length);
    // Expired on one replica (claimDue), from a fresh read, and written only while still pending:
    // an approval or rejection written meanwhile wins (requests.ts), and the expiry changes nothing.
    for (const rec of pending) {
      if ((rec.dueAt ?? Infinity) > now) continue;
      await claimDue(ctx, rec, async (fresh) => {
        if ((fresh.dueAt ?? Infinity) > now) return; // asked again meanwhile, with a new expiry
        await expireApproval(ctx, fresh);
      });
    }
    await refreshSuspendedGauge(ctx);
    if (now - this.lastPrune >= 3_600_000) {
      this.lastPrune = now;
      const n = await pruneByRetention(ctx.store, ctx.config, now);
      if (n > 0) ctx.log.info({ pruned: n, retentionMs: ctx.config.RECORD_RETENTION, noActionRetentionMs: ctx.config.RECORD_RETENTION_NO_ACTION }, 'old rollback records deleted');
    }
  }
}

/** Whether a rollback pending approval is past its expiry (`dueAt`) at `now`. */
export function approvalExpired(rec: RollbackRecord, now: number): boolean {
  return rec.state === 'pending_approval' && (rec.dueAt ?? Infinity) <= now;
}

/**
 * Closes a rollback whose approval expired: written only while it is still pending_approval (an
 * answer or another expiry written first wins). The scheduler's tick, and an approve or reject
 * that arrives after the expiry but before the tick (requests.ts).
 */
export function expireApproval(ctx: EngineContext, rec: RollbackRecord): Promise<boolean> {
  return ctx.finishFrom(rec, 'pending_approval', 'expired', `approval not given before ${new Date(rec.dueAt!).toISOString()}`);
}

/**
 * A held or scheduled rollback whose alert resolved: nothing to do any more (resolve() in
 * intake.ts when the resolution comes, the re-check when it came while the record was being
 * decided). Written only while the record is still in `from`.
 */
export function closeResolved(ctx: EngineContext, rec: RollbackRecord, from: 'held' | 'scheduled'): Promise<boolean> {
  return ctx.finishFrom(rec, from, 'not_confirmed', 'the alert resolved before the scheduled re-check');
}

/**
 * Whether a record decided again has had its first look (decide's `recheck`: an SLO-at-risk rule
 * rolls back only on its delayed look):
 *
 *   the record                                                        recheck
 *   its SLO-at-risk first look found the trigger true (firstLookAt)   yes, whatever came after (a hold, a wait on the lock)
 *   last decided scheduled (a window) or rollback_now (sent back by
 *   the lock guard, or left deciding after it)                        yes
 *   last decided recheck_later (a record written before firstLookAt)  yes
 *   otherwise (held or left deciding at its first look)               no
 */
export function pastFirstLook(rec: Pick<RollbackRecord, 'firstLookAt' | 'decision'>): boolean {
  const d = rec.decision?.decision;
  return rec.firstLookAt !== undefined || d === 'recheck_later' || d === 'scheduled' || d === 'rollback_now';
}

/**
 * A rollback held for HOLD_MAX_AGE: closed expired (only while still held: an alert resolving
 * meanwhile closes it first) and escalated, with the reason it was held. No longer re-checked.
 * An alert whose resolution was marked while this close was written (merged into it: RecordBook.save)
 * has cleared: nobody is paged for it.
 */
async function heldTooLong(ctx: EngineContext, rec: RollbackRecord): Promise<void> {
  const max = ctx.config.HOLD_MAX_AGE;
  await closeOnce(ctx, rec, 'held', 'expired', `held for over HOLD_MAX_AGE (${fmtDuration(max)}) without a confirmed trigger: left to a human`, async () => {
    if (rec.times.resolvedAt !== undefined) {
      ctx.records.step(rec, 'resolved_meanwhile', 'the alert resolved while the hold expired: not escalated');
      ctx.log.info({ record: rec.id, target: rec.target }, 'rollback held for over HOLD_MAX_AGE expired, but its alert had resolved meanwhile: not escalated');
      return;
    }
    ctx.metrics.escalations.inc({ reason: 'held_too_long' });
    ctx.log.error({ record: rec.id, target: rec.target, rule: rec.rule, heldSince: rec.heldSince, reason: rec.confirmation?.reason }, 'rollback held for over HOLD_MAX_AGE: expired, escalated');
    ctx.notify(rec, messages.heldTooLong(rec, max));
  });
}

/**
 * Takes up a due record on one replica only: claims it, reads it again, and runs `work` on the
 * fresh copy if it is still in the state it was listed in. The claim is released after.
 */
async function claimDue(ctx: EngineContext, listed: RollbackRecord, work: (fresh: RollbackRecord) => Promise<unknown>): Promise<void> {
  // the record's claim, and its target's: one replica takes up one target's due work at a time
  // (eachAtMost keeps that order within a replica; this, across replicas)
  const [claim, target] = await Promise.all([ctx.store.acquireLock(`due:${listed.id}`, ctx.owner, 60_000), ctx.store.acquireLock(`due-target:${listed.target}`, ctx.owner, 60_000)]);
  if (!claim || !target) {
    await Promise.all([claim, target].map((l) => (l ? ctx.store.releaseLock(l).catch(() => false) : false)));
    return;
  }
  ctx.decidingHere.add(listed.id);
  try {
    const fresh = await ctx.records.get(listed.id);
    if (fresh && fresh.state === listed.state) await work(fresh);
  } finally {
    ctx.decidingHere.delete(listed.id);
    await Promise.all([claim, target].map((l) => ctx.store.releaseLock(l).catch(() => false)));
  }
}

/**
 * A blocked, dry_run or refused close whose answer was lost (rollback.ts): its notification was
 * held back, since the close may not have landed. Sent now if the record says it did (closed in
 * that state, its timeline holding that notification's step); otherwise the close did not land, and
 * whoever closed the record since said what it said.
 */
async function sendIfLanded(ctx: EngineContext, id: string, unsent: NonNullable<LeftBehind['unsent']>): Promise<void> {
  const rec = await ctx.records.get(id).catch(() => null);
  if (rec?.state === unsent.state && rec.timeline.some((s) => s.step === 'notified' && s.at === unsent.at)) unsent.send();
}

/**
 * Gives back what an attempt of this process stopped by a store failure held (ctx.leftBehind,
 * set by rollback.ts), before the record is decided again: its locks, each only while still held
 * under its own token (a lock that expired and another replica took is left to it), and its slot.
 * False while the store still fails: the record waits for a later tick.
 */
async function giveBackLeft(ctx: EngineContext, id: string): Promise<boolean> {
  const left = ctx.leftBehind.get(id);
  if (!left) return true;
  try {
    await Promise.all([...left.locks.map((l) => ctx.store.releaseLock(l)), ...(left.slot ? [releaseSlot(ctx.store, left.slot)] : [])]);
  } catch (err) {
    ctx.log.warn({ err, record: id }, 'could not give back the locks of a rollback stopped by a store failure: decided again at a later tick');
    return false;
  }
  // given back; the entry stays (its count of tries) until the record is no longer deciding
  left.locks = [];
  delete left.slot;
  return true;
}

/**
 * A rollback in_progress whose target lock is free was left by a replica that died. It is never
 * executed again: if the cluster shows the rollback applied, it is verified and completed;
 * otherwise it is marked interrupted and escalated. Cut off mid-way, it goes on with the writes
 * its action plans as left (plan.resumes), or, when what was left changed since
 * ('changed_since_plan'), is marked interrupted with that reason, its cooldown kept.
 */
export async function recoverIfOrphaned(ctx: EngineContext, rec: RollbackRecord): Promise<void> {
  const lock = await ctx.store.acquireLock(lockName(rec.target), rollbackHolder(ctx.owner, rec.id), ctx.config.LOCK_TTL);
  if (!lock) return; // its owner is alive (or another replica is recovering it)
  let handedOn = false;
  /** the target's lock, then those of the other objects a plan going on writes */
  const held: Lock[] = [lock];
  try {
    const fresh = await ctx.records.get(rec.id);
    if (!fresh || fresh.state !== 'in_progress') return;
    const action = ctx.actions[fresh.ref.kind];
    ctx.records.step(fresh, 'recovery', `found in progress with its owner ${fresh.owner ?? '?'} gone; taken up by ${ctx.owner}`);
    const actx = ctx.actionContext(fresh, () => held, { recovering: true });
    const plan = action ? await action.plan(fresh.ref, actx).catch(() => undefined) : undefined;
    // a Helm rollback's workloads, as its record names them (a recovery does not read the release
    // again): its cooldown, the end of an interrupted one's, and the drift check cover them
    if (plan && !plan.resumes && !plan.changes && fresh.plan?.changes?.length) plan.changes = changedFromRecord(fresh.plan.changes);
    // Applied: recorded as executed, or the target already matches, or it carries this rollback's
    // change cause (the write landed after the replica died, before it could record it), unless the
    // action planned to go on with the writes that had not landed yet (plan.resumes).
    const goesOn = plan?.resumes === true && !plan.refusal;
    const applied =
      fresh.times.executedAt !== undefined ||
      (!goesOn && (plan?.refusal?.code === 'already_matches' || (plan?.current?.annotations['kubernetes.io/change-cause']?.includes(fresh.id) ?? false)));
    // Left mid-way through its migration rollback Job: read by its name and taken only with the uid
    // recorded when it was created (never created again), waited for, then the workload (a Job that
    // is not rollguard's ends the record: 'ended'); or mid-way through its writes (goesOn): the rest of them.
    const migrating = action && !applied ? await resumable(ctx, fresh, plan, actx) : undefined;
    if (migrating === 'ended') return;
    if (action && !applied && !migrating && plan?.refusal?.code === 'changed_since_plan') {
      // cut off mid-way, and what it had left to write changed since (a Canary's stable Deployment
      // scaled by an HPA or a person): not written over. Part of it landed: its cooldown stays.
      await interrupted(ctx, fresh, `the replica running this rollback died mid-way; ${plan.refusal.message}; not executed again; escalated`, plan.refusal.message);
      return;
    }
    let resume = migrating;
    if (action && !applied && !resume && goesOn) {
      // Only objects the guards checked with the first plan are written, each under its own lock.
      const first = new Set((fresh.plan?.writes ?? []).map((w) => objectKey(w)));
      const objects = writtenObjects(plan);
      const unchecked = objects.filter((o) => !first.has(objectKey(o)));
      if (unchecked.length > 0) {
        await interrupted(ctx, fresh, `the replica running this rollback died mid-way; going on would write objects its plan did not (${unchecked.map(objectKey).join(', ')}): not executed again; escalated`);
        return;
      }
      const locks = await lockWrites(ctx.store, rollbackHolder(ctx.owner, fresh.id), ctx.config.LOCK_TTL, fresh.target, objects);
      if ('held' in locks) {
        ctx.log.warn({ record: fresh.id, object: locks.held }, 'cannot go on with a rollback cut off mid-way yet: another rollback holds the lock of an object it writes; tried again on a later tick');
        return;
      }
      held.push(...locks.locks);
      resume = plan;
    }
    if (action && resume) {
      // The settings that say "write nothing here" hold for the rest of a cut-off rollback too: the
      // replica going on may run with DRY_RUN, a pause or a narrower scope set since (the stop
      // switch is a helm upgrade, which is also what rolls the replica that died). Until 2026-12-07
      // it went on regardless.
      const stop = await whyNotGoOn(ctx, fresh, resume);
      if (stop) {
        await stoppedMidWay(ctx, fresh, resume, stop);
        return;
      }
      // counted among the rollbacks in flight when a slot is free, so that new ones wait for it;
      // never held back for one: it has begun (its migration Job ran, part of its writes landed),
      // and waiting would let go of the target's lock, which is all that keeps another rollback
      // from starting a second undo of the same target meanwhile
      const slot = await recoverySlot(ctx, fresh, lock);
      if (!slot) ctx.log.warn({ record: fresh.id, target: fresh.target, max: ctx.config.MAX_CONCURRENT_ROLLBACKS }, 'going on with a rollback cut off mid-way without a concurrency slot (MAX_CONCURRENT_ROLLBACKS are in flight): it has begun, and is finished rather than left half done');
      handedOn = true; // execute() holds and releases the locks (and the slot) from here
      const run = execute(ctx, fresh, action, resume, actx, held, ctx.settingsFor(fresh), { value: true }, slot, true);
      ctx.background(run.catch((err) => escalateError(ctx, fresh, `error while going on with the rollback: ${(err as Error).message}`, (err as Error).message)));
      return;
    }
    if (action && plan && applied) {
      await startCooldown(ctx, fresh, plan);
      // in flight until verified, as a rollback its replica runs to the end is; but its write is
      // made, so a full pool does not hold its verification back (it writes nothing more)
      const slot = await recoverySlot(ctx, fresh, lock);
      if (!slot) ctx.log.info({ record: fresh.id, target: fresh.target, max: ctx.config.MAX_CONCURRENT_ROLLBACKS }, 'verifying a recovered rollback without a concurrency slot (MAX_CONCURRENT_ROLLBACKS are in flight): its write is already made');
      handedOn = true; // verifyRecovery() renews and releases the locks (and the slot) from here
      // verified against the revision the rollback went from, as recorded: planned now, the current
      // revision may be the rollback's own (a Helm release's newest revision is the rollback)
      const verifying = fresh.plan?.fromRevision !== undefined ? { ...plan, fromRevision: fresh.plan.fromRevision } : plan;
      ctx.background(verifyRecovery(ctx, fresh, action, verifying, actx, held, slot));
      return;
    }
    await interrupted(ctx, fresh, 'the replica running this rollback died before it was applied; not executed again; escalated');
    // not applied: the cooldown its execute() started before the write stands for nothing
    const keys = [fresh.target, ...cooledKeys([...(plan ? writtenObjects(plan) : []), ...summarisedObjects(fresh.plan)], fresh.target)];
    await dropCooldowns(ctx.store, keys, fresh.id).catch((err: unknown) =>
      ctx.log.warn({ err, record: fresh.id }, 'could not end the cooldown of an interrupted rollback that wrote nothing; it stays until it expires'),
    );
  } finally {
    if (!handedOn) await releaseAll(ctx, held);
  }
}

/**
 * The concurrency slot of a rollback taken up after its replica died: the one that replica leased
 * (named by the record, or by recoveryMember if it was itself a recovery) lapsed with its locks, so a rollback going on, or verifying, would
 * otherwise run beside MAX_CONCURRENT_ROLLBACKS others uncounted, and new ones would not wait for
 * it. Undefined when the pool is full, and then the recovery goes on uncounted (it has begun: it
 * is never held back for a slot). Leased under a name of its own, with the token of the target
 * lock this recovery holds (recoveryMember): a replica that had only stalled gives its own slot
 * back when it wakes, and that leaves this one held.
 */
async function recoverySlot(ctx: EngineContext, rec: RollbackRecord, lock: Lock): Promise<SlotHold | undefined> {
  const r = await leaseSlot(ctx.store, ctx.config, recoveryMember(rec.id, ctx.owner, lock.token));
  return 'hold' in r ? r.hold : undefined;
}

/** The objects a record says its plan changed (PlanSummary.changes), as a plan names them: the workload kinds a Helm release's are read as. */
function changedFromRecord(named: readonly { kind: string; namespace: string; name: string }[]): ChangedObject[] {
  return named.flatMap((c) => {
    const resource = WORKLOADS.find((r) => r.kind === c.kind);
    return resource ? [{ resource, namespace: c.namespace, name: c.name }] : [];
  });
}

/**
 * An applied rollback's target is in cooldown while its recovery verifies it, as execute() starts
 * it right before the write, so a new alert cannot roll it back again meanwhile. Written unless one
 * naming this record is there (execute() writes it before the write; it is missing when the replica
 * ran an earlier version, or the key was lost): one the dead replica's end() already gave an
 * outcome is not written over. end() writes it again with the outcome.
 */
async function startCooldown(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan): Promise<void> {
  if ((await readCooldown(ctx.store, rec.target))?.id === rec.id) return;
  const at = rec.times.executedAt ?? ctx.now();
  await writeCooldowns(ctx.store, rec.target, plan, { id: rec.id, at, until: at + ctx.settingsFor(rec).cooldown }, ctx.now());
}

/**
 * Verifies a recovered rollback and closes it, in the background as execute() hands off
 * verifyAndEnd: neither the scheduler tick nor a redelivered event waits minutes for the rollout
 * and the recovery check. Its locks are renewed meanwhile, so no other replica finds the lock
 * free and verifies (and closes, and notifies) the same record again; they are released at the
 * end, whatever it is. It closes only while its locks are still its own and the record still
 * in_progress (endOnce): a replica that lost its lock leaves the record to whoever holds it now.
 */
async function verifyRecovery(ctx: EngineContext, rec: RollbackRecord, action: Action, plan: RollbackPlan, actx: ActionContext, locks: Lock[], slot?: SlotHold): Promise<void> {
  const release = holdLocks(ctx, rec, locks, slot);
  // counted as verifying here, as execute() counts the rollbacks it runs (a resumed one included)
  ctx.metrics.rollbacksInProgress.inc();
  try {
    const v = await action.verify(plan, actx, { timeoutMs: ctx.config.VERIFY_TIMEOUT });
    if (ctx.stopped) return leftForRecovery(ctx, rec);
    ctx.records.step(rec, 'rollout', `${v.outcome}: ${v.message}`);
    const settings = ctx.settingsFor(rec);
    if (v.outcome !== 'succeeded') {
      if (await stillOurs(ctx, rec, locks)) await endOnce(ctx, rec, settings, v.outcome, `recovered after a restart: rollout ${v.outcome}: ${v.message}`);
      return;
    }
    rec.times.completedAt = ctx.now();
    const h = await verifyRecovered(ctx, rec);
    if (h.stopped) return leftForRecovery(ctx, rec);
    if (await stillOurs(ctx, rec, locks)) await endOnce(ctx, rec, settings, h.outcome, `recovered after a restart: ${h.message}`, [...h.lines, healthLine(v.details)]);
  } catch (err) {
    if (ctx.stopped) return leftForRecovery(ctx, rec);
    const msg = err instanceof Error ? err.message : String(err);
    ctx.log.error({ err, record: rec.id }, 'verification of a recovered rollback stopped by an error');
    if (await stillOurs(ctx, rec, locks)) await escalateErrorOnce(ctx, rec, `error while verifying the recovered rollback: ${msg}`, msg);
  } finally {
    ctx.metrics.rollbacksInProgress.dec();
    await release();
  }
}

/**
 * Whether the recovery still holds every lock it took (the fence check an action runs before a
 * write: checkFence), right before it closes the record. A lock that expired (a stalled process,
 * the store out of reach) may have let another replica take the record up: that replica closes it,
 * or the next tick's recovery does.
 */
async function stillOurs(ctx: EngineContext, rec: RollbackRecord, locks: Lock[]): Promise<boolean> {
  try {
    await checkFence(ctx.store, locks, ctx.config.LOCK_TTL);
    return true;
  } catch (err) {
    ctx.log.warn({ err, record: rec.id, target: rec.target }, 'recovered rollback verified, but its lock was lost meanwhile: not closed here; the replica holding the lock, or the next recovery, closes it');
    return false;
  }
}

/** Shutting down mid-verification: the record stays in_progress (nothing written) and its lock is released, for the next replica. */
function leftForRecovery(ctx: EngineContext, rec: RollbackRecord): void {
  ctx.log.warn({ record: rec.id, target: rec.target }, 'shutting down while verifying a recovered rollback: it stays in_progress for the next replica');
}

/** Why a cut-off rollback may not go on with its writes here and now (the setting named), if so. */
async function whyNotGoOn(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan): Promise<string | undefined> {
  if (ctx.config.DRY_RUN) return 'DRY_RUN is on';
  const out = writeOutOfScope(ctx.config, [rec.ref, ...writtenObjects(plan)]);
  if (out) return `${out.key} is out of scope: ${out.why}`;
  const paused = await readPause(ctx.store);
  if (paused) return `rollguard is paused (by ${paused.by}${paused.reason ? `: ${paused.reason}` : ''}; POST /v1/resume)`;
  return undefined;
}

/**
 * A cut-off rollback not gone on (whyNotGoOn): its cooldown stands, as something may have been
 * written (a migration rollback Job created, the first of its writes), so that a new alert does not
 * start a second migration rollback meanwhile; closed interrupted and escalated, the page saying
 * what was begun, what stopped it and what to check.
 */
async function stoppedMidWay(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan, stop: string): Promise<void> {
  await startCooldown(ctx, rec, plan);
  const m = rec.migration;
  const job = m && m.state !== 'planned' ? m : undefined;
  const message = `the replica running this rollback died mid-way; not gone on: ${stop}; what it wrote stays, the rest is left undone${job ? `; its migration rollback Job ${job.namespace}/${job.job} was created and may still be running: the database may be part-way through the rollback` : ''}; escalated`;
  ctx.metrics.escalations.inc({ reason: 'interrupted' });
  ctx.notify(rec, messages.stoppedMidWay(rec, stop, job, gitopsLines(rec)));
  await ctx.finish(rec, 'interrupted', message);
}

/** A rollback its recovery does not go on with: closed interrupted, escalated, and said why (`detail`: on the page too). */
async function interrupted(ctx: EngineContext, rec: RollbackRecord, why: string, detail?: string): Promise<void> {
  ctx.metrics.escalations.inc({ reason: 'interrupted' });
  ctx.notify(rec, messages.interrupted(rec, detail));
  await ctx.finish(rec, 'interrupted', why);
}
