import { refreshSuspendedGauge } from '../gitops/tally.js';
import { writtenObjects } from '../actions/index.js';
import { objectKey } from '../guards/guard.js';
import { lockName, lockWrites } from '../guards/lock.js';
import type { Lock } from '../store/store.js';
import { decidedByChain } from './chain.js';
import type { EngineContext } from './context.js';
import { evaluate } from './evaluate.js';
import { healthLine, messages } from './messages.js';
import type { RollbackRecord } from './record.js';
import { pruneByRetention } from '../store/retention.js';
import { resumable } from '../migrations/stage.js';
import { execute, releaseAll, rollback } from './rollback.js';
import { alive, heartbeat, heartbeatFailed, heartbeatTtl } from './heartbeat.js';
import { end, escalateError, verifyRecovered } from './verify.js';

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
    // Our own wait until any target lock the failed attempt took has expired.
    for await (const rec of ctx.records.inState('deciding')) {
      const mine = rec.owner === ctx.owner;
      if (mine && (ctx.decidingHere.has(rec.id) || now - rec.updatedAt < Math.max(2 * heartbeatTtl(ctx), 2 * ctx.config.LOCK_TTL))) continue;
      if (!mine && (now - rec.updatedAt < 2 * heartbeatTtl(ctx) || (await alive(ctx, rec.owner)))) continue;
      await claimDue(ctx, rec, async (fresh) => {
        ctx.records.step(fresh, 'recovery', mine ? `left deciding by this replica (${ctx.owner}) when a store call failed; decided again` : `left deciding by ${fresh.owner ?? '?'}, which is gone; taken up by ${ctx.owner}`);
        fresh.owner = ctx.owner;
        const rule = ctx.ruleFor(fresh);
        if (fresh.source === 'manual' || fresh.approval?.decision === 'approved' || decidedByChain(fresh)) return rollback(ctx, fresh, ctx.settingsFor(fresh));
        if (rule) return evaluate(ctx, fresh, rule, false);
        return ctx.finish(fresh, 'expired', `rule ${fresh.rule} is no longer loaded`);
      });
    }
    for (const state of ['held', 'scheduled'] as const) {
      for await (const rec of ctx.records.inState(state)) {
        if ((rec.dueAt ?? 0) > now) continue;
        await claimDue(ctx, rec, async (fresh) => {
          const rule = ctx.ruleFor(fresh);
          if (!rule) return ctx.finish(fresh, 'expired', `rule ${fresh.rule} is no longer loaded`);
          ctx.records.step(fresh, 'due', `${state} rollback due: confirming again`);
          return evaluate(ctx, fresh, rule, fresh.decision?.decision === 'recheck_later');
        });
      }
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
        await ctx.finishFrom(fresh, 'pending_approval', 'expired', `approval not given before ${new Date(fresh.dueAt!).toISOString()}`);
      });
    }
    for await (const rec of ctx.records.inState('in_progress')) await recoverIfOrphaned(ctx, rec);
    await refreshSuspendedGauge(ctx);
    if (now - this.lastPrune >= 3_600_000) {
      this.lastPrune = now;
      const n = await pruneByRetention(ctx.store, ctx.config, now);
      if (n > 0) ctx.log.info({ pruned: n, retentionMs: ctx.config.RECORD_RETENTION, noActionRetentionMs: ctx.config.RECORD_RETENTION_NO_ACTION }, 'old rollback records deleted');
    }
  }
}

/**
 * Takes up a due record on one replica only: claims it, reads it again, and runs `work` on the
 * fresh copy if it is still in the state it was listed in. The claim is released after.
 */
async function claimDue(ctx: EngineContext, listed: RollbackRecord, work: (fresh: RollbackRecord) => Promise<unknown>): Promise<void> {
  const claim = await ctx.store.acquireLock(`due:${listed.id}`, ctx.owner, 60_000);
  if (!claim) return;
  ctx.decidingHere.add(listed.id);
  try {
    const fresh = await ctx.records.get(listed.id);
    if (fresh && fresh.state === listed.state) await work(fresh);
  } finally {
    ctx.decidingHere.delete(listed.id);
    await ctx.store.releaseLock(claim).catch(() => false);
  }
}

/**
 * A rollback in_progress whose target lock is free was left by a replica that died. It is never
 * executed again: if the cluster shows the rollback applied, it is verified and completed;
 * otherwise it is marked interrupted and escalated.
 */
export async function recoverIfOrphaned(ctx: EngineContext, rec: RollbackRecord): Promise<void> {
  const lock = await ctx.store.acquireLock(lockName(rec.target), ctx.owner, ctx.config.LOCK_TTL);
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
    // Applied: recorded as executed, or the target already matches, or it carries this rollback's
    // change cause (the write landed after the replica died, before it could record it), unless the
    // action planned to go on with the writes that had not landed yet (plan.resumes).
    const goesOn = plan?.resumes === true && !plan.refusal;
    const applied =
      fresh.times.executedAt !== undefined ||
      (!goesOn && (plan?.refusal?.code === 'already_matches' || (plan?.current?.annotations['kubernetes.io/change-cause']?.includes(fresh.id) ?? false)));
    // Left mid-way through its migration rollback Job: found by its label (never created again), waited for, then the workload;
    // or mid-way through its writes (goesOn): the rest of them.
    let resume = action && !applied ? await resumable(ctx, fresh, plan, actx) : undefined;
    if (action && !applied && !resume && goesOn) {
      // Only objects the guards checked with the first plan are written, each under its own lock.
      const first = new Set((fresh.plan?.writes ?? []).map((w) => objectKey(w)));
      const objects = writtenObjects(plan);
      const unchecked = objects.filter((o) => !first.has(objectKey(o)));
      if (unchecked.length > 0) {
        await interrupted(ctx, fresh, `the replica running this rollback died mid-way; going on would write objects its plan did not (${unchecked.map(objectKey).join(', ')}): not executed again; escalated`);
        return;
      }
      const locks = await lockWrites(ctx.store, ctx.owner, ctx.config.LOCK_TTL, fresh.target, objects);
      if ('held' in locks) {
        ctx.log.warn({ record: fresh.id, object: locks.held }, 'cannot go on with a rollback cut off mid-way yet: another rollback holds the lock of an object it writes; tried again on a later tick');
        return;
      }
      held.push(...locks.locks);
      resume = plan;
    }
    if (action && resume) {
      handedOn = true; // execute() holds and releases the locks from here
      const run = execute(ctx, fresh, action, resume, actx, held, ctx.settingsFor(fresh), { value: true }, undefined, true);
      ctx.background(run.catch((err) => escalateError(ctx, fresh, `error while going on with the rollback: ${(err as Error).message}`, (err as Error).message)));
      return;
    }
    if (action && plan && applied) {
      const v = await action.verify(plan, actx, { timeoutMs: ctx.config.VERIFY_TIMEOUT });
      ctx.records.step(fresh, 'rollout', `${v.outcome}: ${v.message}`);
      const settings = ctx.settingsFor(fresh);
      if (v.outcome === 'succeeded') {
        fresh.times.completedAt = ctx.now();
        const h = await verifyRecovered(ctx, fresh);
        await end(ctx, fresh, settings, h.outcome, `recovered after a restart: ${h.message}`, [...h.lines, healthLine(v.details)]);
      } else {
        await end(ctx, fresh, settings, v.outcome, `recovered after a restart: rollout ${v.outcome}: ${v.message}`);
      }
      return;
    }
    await interrupted(ctx, fresh, 'the replica running this rollback died before it was applied; not executed again; escalated');
  } finally {
    if (!handedOn) await releaseAll(ctx, held);
  }
}

/** A rollback its recovery does not go on with: closed interrupted, escalated, and said why. */
async function interrupted(ctx: EngineContext, rec: RollbackRecord, why: string): Promise<void> {
  ctx.metrics.escalations.inc({ reason: 'interrupted' });
  ctx.notify(rec, messages.interrupted(rec));
  await ctx.finish(rec, 'interrupted', why);
}
