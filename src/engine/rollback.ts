import type { Action, ActionContext, ExecuteResult, RollbackPlan } from '../actions/action.js';
import type { SlotHold } from '../guards/concurrency.js';
import { readCooldown, readStepBacks, startCooldowns } from '../guards/cooldown.js';
import { replicatedBeforeWriting } from '../guards/lock.js';
import { putBackBefore, writtenObjects, wroteNothing } from '../actions/index.js';
import { GUARDS, type GuardContext, type GuardResult, type Produced } from '../guards/index.js';
import type { PauseReadAhead } from '../guards/pause.js';
import { gitopsLines, suspendBeforeWrite, withGitOps } from '../gitops/stage.js';
import { migrateFirst, withMigration } from '../migrations/stage.js';
import type { Guards } from '../rules/schema.js';
import { StoreUnavailableError, type Lock } from '../store/store.js';
import { summarisePlan } from './change.js';
import type { EngineContext, LeftBehind } from './context.js';
import { messages, type Message } from './messages.js';
import type { RollbackRecord, RollbackState } from './record.js';
import { escalateError, verifyAndEnd } from './verify.js';
import { holdLocks, releaseAll } from './locks.js';

/**
 * The guarded rollback: runs the guards in their fixed order (src/guards/index.ts), planning with
 * the action once the first guard that needs the plan comes; then executes. Returns the state it
 * ended in ('in_progress' when verification goes on in the background).
 */
export async function rollback(ctx: EngineContext, rec: RollbackRecord, settings: Guards, ahead: ReadAhead = {}): Promise<RollbackState> {
  // its rule removed or renamed since it was decided (an approval, a chain's next target, a take-over): not on the default guards
  const gone = ctx.ruleGone(rec);
  if (gone) return ctx.finish(rec, 'expired', gone);
  const action = ctx.actions[rec.ref.kind];
  if (!action) return ctx.finish(rec, 'error', `no action for kind ${rec.ref.kind}`);
  // the target as decided (its rule's revision, if it pins one): what a wait on the lock guard puts back
  const decided = rec.ref;
  if (settings.allowStepBack && rec.ref.toRevision === undefined) {
    const refused = await stepBack(ctx, rec, settings);
    if (refused) return ctx.finish(rec, 'refused', refused);
  }
  const gctx: GuardContext = { record: rec, settings, config: ctx.config, store: ctx.store, now: ctx.now(), owner: ctx.owner, ...(ahead.pause ? { pauseAhead: ahead.pause } : {}) };
  const held: Produced = {};
  /** set once the action was asked to write: from then on the budget reservation is spent */
  const spent = { value: false };
  let plan: RollbackPlan | undefined;
  const actx = ctx.actionContext(rec, () => heldLocks(held));
  gctx.renewLocks = async () => (await Promise.all(heldLocks(held).map((l) => ctx.store.renewLock(l, ctx.config.LOCK_TTL)))).every(Boolean);
  /** what the guards took is given back once, with the closing write when the record ends before any cluster write */
  let givenBack = false;
  const giveBack = async (): Promise<void> => {
    if (givenBack) return;
    givenBack = true;
    await Promise.all([
      rec.state !== 'in_progress' ? releaseAll(ctx, heldLocks(held), held.slot) : undefined,
      held.budget && !spent.value
        ? // the rollback did not execute: its budget reservation is given back
          ctx.store.releaseEvents(held.budget.keys, held.budget.member).catch((err) => ctx.log.warn({ err, record: rec.id }, 'could not give back a budget reservation (it expires within the hour)'))
        : undefined,
    ]);
  };
  /** ends the record before anything was written to the cluster: locks, slot and budget go back in the same round trip */
  const close = (state: RollbackState, message: string) => ctx.finish(rec, state, message, giveBack);
  /**
   * close(), saying `m` once the close has landed: a close the store fails is decided again and
   * says it then. One whose answer was lost may have landed: its message is left with what the
   * attempt left behind, and the scheduler sends it if the record shows it did.
   */
  let unsent: LeftBehind['unsent'];
  const closeAndSay = async (state: RollbackState, message: string, m: Message): Promise<RollbackState> => {
    const send = ctx.notifyOnceWritten(rec, m);
    const at = rec.timeline[rec.timeline.length - 1]!.at;
    try {
      const closed = await close(state, message);
      send();
      return closed;
    } catch (err) {
      unsent = { state, at, send };
      throw err;
    }
  };
  const end = { closeAndSay, giveBack };
  try {
    rec.guards = [];
    for (const guard of GUARDS) {
      if (guard.needsPlan && !plan) {
        plan = await withMigration(ctx, rec, await withGitOps(ctx, rec, await action.plan(rec.ref, actx), actx), actx);
        rec.plan = summarisePlan(plan);
        if (plan.refusal?.code !== 'not_found' && plan.refusal?.code !== 'no_cluster') ctx.knownNamespaces.add(rec.ref.namespace);
        ctx.records.step(rec, 'planned', plan.summary, { fromRevision: plan.fromRevision, toRevision: plan.toRevision });
        for (const d of plan.configDrift ?? []) ctx.records.step(rec, 'config_drift', d.message);
        if (plan.refusal?.code === 'no_cluster' && ctx.config.DRY_RUN) {
          // The embedded default: no cluster, dry-run. Record what would have been done.
          ctx.metrics.guardBlocked.inc({ guard: 'dry-run' });
          rec.guards.push({ guard: 'dry-run', result: 'block', reason: 'dry-run: no cluster is configured' });
          return await close('dry_run', `no cluster configured (dry-run): would roll back ${rec.target}${rec.ref.toRevision ? ` to revision ${rec.ref.toRevision}` : ' to its previous revision'}`);
        }
        if (plan.refusal) return await closeAndSay('refused', plan.refusal.message, messages.refused(rec, plan.refusal.message, plan.refusal.code === 'paused'));
        gctx.plan = plan;
        // The guards that ran on the target alone (scope, lock) now see every object the plan writes.
        const objects = writtenObjects(plan);
        for (const g of GUARDS) {
          const entry = rec.guards.find((v) => v.guard === g.name);
          if (!g.checkWrites || !entry) continue;
          gctx.now = ctx.now();
          const r = await g.checkWrites({ ...gctx, plan, objects });
          ctx.records.step(rec, `guard:${g.name}`, `${r.verdict}: ${r.reason}`);
          entry.result = r.verdict;
          entry.reason = r.verdict === 'allow' ? `${entry.reason}; ${r.reason}` : r.reason;
          if (r.verdict === 'block' && r.because) entry.because = r.because;
          else delete entry.because;
          const stop = await afterVerdict(ctx, rec, g.name, r, plan, held, end, decided);
          if (stop) return stop;
        }
      }
      gctx.now = ctx.now();
      const r = await guard.check(gctx);
      rec.guards.push({ guard: guard.name, result: r.verdict, reason: r.reason, ...(r.verdict === 'block' && r.because ? { because: r.because } : {}) });
      ctx.records.step(rec, `guard:${guard.name}`, `${r.verdict}: ${r.reason}`);
      const stop = await afterVerdict(ctx, rec, guard.name, r, plan, held, end, decided);
      if (stop) return stop;
    }
    if (!held.lock) throw new Error('the guards allowed the rollback but no lock was taken');
    return await execute(ctx, rec, action, plan!, actx, heldLocks(held), settings, spent, held.slot);
  } catch (err) {
    if (err instanceof StoreUnavailableError && rec.state !== 'in_progress') {
      // The store failed before anything was written to the cluster: the record is left as the
      // store has it (deciding), and the error goes up, so the event stays queued and the scheduler
      // decides the record again (scheduler.ts). Closing it 'error' here, once the store answers
      // again, would end the alert for one failed call. The budget reservation is named by the
      // record id, so reserving again does not count twice. What the attempt held is given back
      // below (finally), which fails while the store is still down: its locks would then hold the
      // re-decision of this very record back (its lock guard blocks on a held target lock) until
      // they expire. So they are left to the scheduler, which gives them back again first.
      const now = ctx.now();
      const tries = (ctx.leftBehind.get(rec.id)?.tries ?? 0) + 1;
      // the first retry at the next tick; then 2 s, doubling, at most 2 × LOCK_TTL apart
      const wait = tries === 1 ? 0 : Math.min(2 * ctx.config.LOCK_TTL, 1000 * 2 ** Math.min(tries - 1, 20));
      ctx.leftBehind.set(rec.id, { locks: heldLocks(held), ...(held.slot ? { slot: held.slot } : {}), at: now, tries, nextAt: now + wait, ...(unsent ? { unsent } : {}) });
      ctx.metrics.storeErrors.inc({ op: 'rollback' });
      ctx.log.warn({ err, record: rec.id }, 'rollback stopped by a store failure before any cluster write: left deciding, decided again once the store answers');
      throw err;
    }
    const msg = err instanceof Error ? err.message : String(err);
    if (isKubeError(err)) ctx.metrics.kubeErrors.inc({ status: String(err.status) });
    if (rec.state === 'in_progress') {
      ctx.log.error({ err, record: rec.id }, 'rollback stopped by an error');
      // the workload's write refused after a configuration restore landed: what became of the restore, said
      const back = putBackBefore(err);
      const said = [
        msg,
        ...(back?.putBack?.length ? [`the configuration restored before it was put back: ${back.putBack.join('; ')}`] : []),
        ...(back?.leftAsIs?.length ? [`the configuration restored before it was changed again since, and left as it is: ${back.leftAsIs.join('; ')}`] : []),
        ...(back?.notPutBack?.length ? [`the configuration restored before it was NOT put back: ${back.notPutBack.join('; ')}`] : []),
      ].join('; ');
      if (back) stepPutBack(ctx, rec, back);
      return await escalateError(ctx, rec, `error during the rollback: ${said}`, said);
    }
    if (isKubeError(err) && err.retriable && (rec.kubeRetries ?? 0) + 1 < KUBE_TRIES) {
      // The API server is away for a moment (a 503 at an etcd leader change, a 429, no answer):
      // nothing was written to the cluster, so the record is left deciding, saying why, and the
      // scheduler decides it again once twice LOCK_TTL has passed since this write (scheduler.ts),
      // the trigger confirmed again. Closing it here would end the alert: its resends find the record.
      rec.kubeRetries = (rec.kubeRetries ?? 0) + 1;
      rec.state = 'deciding';
      // a wait on the written objects' locks before the retry, which comes 2 × LOCK_TTL on, is not
      // counted against the retry's own (the target's ended when its lock was taken, before the plan)
      delete rec.writeLockWaitSince;
      ctx.records.step(rec, 'retry', `${msg}: nothing was changed; decided again shortly (try ${rec.kubeRetries + 1} of ${KUBE_TRIES})`);
      ctx.log.warn({ err, record: rec.id, tries: rec.kubeRetries }, 'rollback stopped by a retriable API server error before any cluster write: left deciding, decided again shortly');
      await ctx.records.save(rec);
      return rec.state;
    }
    // An error that stops a rollback the rule asked for is said to humans, never only recorded.
    ctx.log.error({ err, record: rec.id }, 'rollback stopped by an error');
    ctx.metrics.escalations.inc({ reason: 'error' });
    ctx.notify(rec, messages.failed(rec, msg));
    return await ctx.finish(rec, 'error', rec.kubeRetries ? `${msg} (the API server answered an error ${rec.kubeRetries + 1} times)` : msg);
  } finally {
    await giveBack();
  }
}

/**
 * How many times a rollback stopped by a retriable API server error before any cluster write is
 * decided in all (about one LOCK_TTL x 2 apart: some minutes); then it ends `error`, escalated.
 */
export const KUBE_TRIES = 5;

/** Store reads issued ahead, with an earlier round trip (intake.ts: with the write-ahead). */
export interface ReadAhead {
  pause?: PauseReadAhead;
}

/** Every lock the guards took: the target's, then the other written objects'. */
function heldLocks(held: Produced): Lock[] {
  return [...(held.lock ? [held.lock] : []), ...(held.locks ?? [])];
}

/**
 * What a guard's verdict means for the rollback: allow goes on (keeping what the guard produced);
 * wait leaves it pending approval; a block ends it (dry_run for the dry-run guard). Returns the
 * state it stopped in, or undefined to go on.
 */
async function afterVerdict(
  ctx: EngineContext,
  rec: RollbackRecord,
  guard: string,
  r: GuardResult,
  plan: RollbackPlan | undefined,
  held: Produced,
  end: { closeAndSay: (state: RollbackState, message: string, m: Message) => Promise<RollbackState>; giveBack: () => Promise<void> },
  decided: RollbackRecord['ref'],
): Promise<RollbackState | undefined> {
  if (r.verdict === 'allow') {
    // a wait on the target's lock is over once it is taken, one on the written objects' once they
    // are (a dry run's: once found free), its steps staying in the timeline: a later one counts afresh
    if (r.produced?.lock || r.produced?.free === 'target') delete rec.lockWaitSince;
    if (r.produced?.locks || r.produced?.free === 'written') delete rec.writeLockWaitSince;
    if (r.produced?.lock) held.lock = r.produced.lock;
    if (r.produced?.locks) held.locks = [...(held.locks ?? []), ...r.produced.locks];
    if (r.produced?.budget) held.budget = r.produced.budget;
    if (r.produced?.slot) held.slot = r.produced.slot;
    return undefined;
  }
  if (r.verdict === 'later') {
    // Decided again from its trigger at r.at (the scheduler's re-check of scheduled records); what the guards took goes back first.
    await end.giveBack();
    rec.state = 'scheduled';
    rec.dueAt = r.at;
    if (r.written) rec.writeLockWaitSince ??= ctx.now();
    else rec.lockWaitSince ??= ctx.now();
    // A step back's revision (allowStepBack) is chosen from the cooldown as it is now: the re-check
    // chooses again from the cooldown as it is then. The target goes back as it was decided, with
    // the revision its rule pins (params.toRevision): dropping that too, the re-check found the rule
    // pinning one the record did not and said a reload had changed it (ruleGone's adopt).
    rec.ref = decided;
    // only while still deciding here: a replica this one took the record up from (its heartbeat
    // lapsed) may have gone on meanwhile and written it in_progress, which must stand
    if (!(await ctx.records.save(rec, { expectState: 'deciding' }))) {
      ctx.log.warn({ record: rec.id, target: rec.target }, 'a rollback sent back by the lock guard had moved on elsewhere meanwhile (another replica went on with it): left as it is');
      return rec.state;
    }
    ctx.metrics.guardDeferred.inc({ guard });
    return rec.state;
  }
  ctx.metrics.guardBlocked.inc({ guard });
  if (r.verdict === 'wait') {
    // What the guards took goes back before the record says pending_approval: an approval that
    // comes at once starts a new run, whose budget reservation and slot (named by the record id)
    // a later give-back of this run would otherwise take away.
    await end.giveBack();
    // an approval given for another plan (guards/approval.ts) is not this request's answer; the timeline keeps it
    if (rec.approval?.decision === 'approved') delete rec.approval;
    rec.state = 'pending_approval';
    rec.dueAt = r.until;
    await ctx.records.save(rec);
    ctx.notify(rec, messages.approvalRequested(rec, plan, r.reason));
    return rec.state;
  }
  if (guard === 'dry-run') return end.closeAndSay('dry_run', `${r.reason}; would have: ${plan?.summary ?? 'no plan'}`, messages.dryRun(rec, plan, r.reason));
  return end.closeAndSay('blocked', `blocked by ${guard}: ${r.reason}`, messages.blocked(rec, guard, r.reason));
}

/**
 * A step back (allowStepBack, the last rollback did not recover) goes on from the revision that
 * rollback restored; kubectl's default "previous revision" would be the bad one it left. Sets
 * rec.ref.toRevision, or returns why there is nothing older to step back to.
 */
async function stepBack(ctx: EngineContext, rec: RollbackRecord, settings: Guards): Promise<string | undefined> {
  const last = await readCooldown(ctx.store, rec.target);
  const steps = await readStepBacks(ctx.store, rec.target);
  const restored = last?.outcome === 'failed' && steps < settings.maxStepBack ? (await ctx.records.get(last.id))?.plan?.toRevision : undefined;
  if (restored === undefined) return undefined;
  if (restored <= 1) return `no revision older than ${restored} (restored by ${last!.id}, which did not recover) to step back to`;
  rec.ref = { ...rec.ref, toRevision: restored - 1 };
  ctx.records.step(rec, 'step_back', `${last!.id} restored revision ${restored} and did not recover: stepping back to revision ${restored - 1}`, { toRevision: restored - 1 });
  return undefined;
}

/**
 * Writes in_progress ahead, executes the action under the locks (renewed while it runs), keeps the
 * budget the guard reserved (`spent`; given back when nothing was written) and starts the cooldown,
 * then hands verification to verify.ts in the background (the queue event is acked once the
 * cluster changed; a rule's next ordered target starts when this one ends: chain.ts). `resumed`: a
 * replica taking up a record left mid-way (its migration rollback Job: src/migrations/stage.ts).
 */
export async function execute(ctx: EngineContext, rec: RollbackRecord, action: Action, plan: RollbackPlan, actx: ActionContext, locks: Lock[], settings: Guards, spent: { value: boolean }, slot?: SlotHold, resumed = false): Promise<RollbackState> {
  const giveBack = holdLocks(ctx, rec, locks, slot);
  ctx.metrics.rollbacksInProgress.inc();
  let handedOff = false;
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    ctx.metrics.rollbacksInProgress.dec();
    await giveBack();
  };
  try {
    // Write-ahead: the record says in_progress (with our fencing token) before the cluster changes,
    // so a crash between here and the end is found and never executed twice.
    const before = rec.state;
    rec.state = 'in_progress';
    rec.owner = ctx.owner;
    rec.lockToken = locks[0]!.token;
    if (!resumed) rec.times.startedAt = ctx.now();
    ctx.records.step(rec, resumed ? 'resumed' : 'started', `${resumed ? `${ctx.owner} goes on with` : 'rolling back'}: ${plan.summary}`);
    // the previous rollback's cooldown entry (was it a failed one: a step back) is read with the write
    const [saved, read] = await Promise.allSettled([ctx.records.save(rec), readCooldown(ctx.store, rec.target)]);
    if (saved.status === 'rejected') {
      // Nothing was executed: the record is not in_progress for the caller (rollback()'s catch), so
      // a store failure leaves it to be decided again, never closed as a failed rollback. (Had the
      // write landed with its answer lost, the scheduler finds it in_progress with nothing applied:
      // interrupted, escalated, never executed twice.)
      if (!resumed) rec.state = before;
      throw saved.reason;
    }
    // The write-ahead landed: the rollback goes on. The cooldown entry only says whether the last
    // rollback failed (a step back counted); read once more, then taken as none.
    const previous = read.status === 'fulfilled' ? read.value : await readCooldown(ctx.store, rec.target).catch(() => null);
    if (!resumed) ctx.notify(rec, messages.started(rec, plan, ctx.ruleFor(rec)?.trigger.kind, ctx.config));

    const stopped = await migrateFirst(ctx, rec, plan, actx, settings, spent);
    if (stopped) return stopped;
    await suspendBeforeWrite(ctx, rec, actx);
    spent.value = true; // whatever happens from here, the cluster may change: the budget is spent
    // The cooldown starts before the write, not after it: once the write may have landed, neither a
    // crash nor a store failure can leave the target with its lock given back (or expired) and no
    // cooldown, open to a second rollback that would undo this one. Its end (verify.ts) writes it
    // again from executedAt. Put back as it was when nothing was written.
    const startAt = ctx.now();
    const stepBack = previous && settings.allowStepBack && previous.outcome === 'failed' ? { ttlMs: settings.cooldown } : undefined;
    const putBack = await startCooldowns(ctx.store, rec.target, plan, { id: rec.id, at: startAt, until: startAt + settings.cooldown }, startAt, previous, stepBack);
    const giveBack = () =>
      putBack(ctx.now()).catch((err: unknown) => {
        ctx.metrics.storeErrors.inc({ op: 'rollback' });
        ctx.log.warn({ err, record: rec.id }, 'could not give back the cooldown of a rollback that wrote nothing; it stays until it expires');
      });
    // The cooldown just written must be on the store's replicas before the write, like the claim
    // and write-ahead (REDIS_MIN_REPLICAS_ACK): a migration Job or an owner's suspension may have
    // taken the action context's one wait before it existed (context.ts)
    try {
      await replicatedBeforeWriting(ctx.store);
    } catch (err) {
      await giveBack();
      throw err;
    }
    let res: ExecuteResult;
    try {
      res = await action.execute(plan, actx);
    } catch (err) {
      // refused by the API server (an admission webhook, RBAC) or stopped before its first write:
      // nothing to cool down. Any other error may have come after a write landed: the cooldown stays.
      if (wroteNothing(err)) await giveBack();
      throw err;
    }
    const now = ctx.now();
    if (!res.applied) {
      if (res.partlyWritten?.length) {
        // an earlier attempt's writes landed before the re-plan refused: the cooldown and budget stay
        ctx.records.step(rec, 'partly_written', `not applied, but these writes landed before it stopped: ${res.partlyWritten.join('; ')}; the cooldown stays`);
      } else {
        spent.value = false; // nothing was written
        await giveBack();
      }
      stepPutBack(ctx, rec, res);
      // GitOps owners suspended for it stay suspended (another rollback may rely on the same owner): said
      const lines = [...(res.putBack ?? []), ...(res.leftAsIs ?? []), ...(rec.gitops?.suspended?.length ? gitopsLines(rec) : [])];
      if (res.notPutBack?.length) {
        // the running revision has the configuration restored for the older one: a human puts it back
        const why = res.refusal?.message ?? res.message;
        const message = `${why}; but the configuration restored before the workload's write was not put back: ${res.notPutBack.join('; ')}`;
        ctx.log.error({ record: rec.id, notPutBack: res.notPutBack }, 'rollback not applied, and the configuration restored before it could not be put back: escalated');
        ctx.metrics.escalations.inc({ reason: 'config_not_put_back' });
        const m = messages.failed(rec, why);
        ctx.notify(rec, { ...m, lines: [...m.lines, 'The revision still running may have the configuration restored for the one it was to be rolled back to:', ...res.notPutBack, ...lines] });
        return await ctx.finish(rec, 'error', message);
      }
      if (res.refusal) {
        const m = messages.refused(rec, res.refusal.message);
        ctx.notify(rec, { ...m, lines: [...m.lines, ...lines] });
        const left = res.leftAsIs?.length ? `; the configuration restored before the workload's write was changed again since, and left as it is: ${res.leftAsIs.join('; ')}` : '';
        return await ctx.finish(rec, 'refused', `${res.refusal.message}${left}`);
      }
      return await ctx.finish(rec, 'error', res.message);
    }
    rec.times.executedAt = now;
    ctx.metrics.lastRollbackTimestamp.set(now / 1000);
    ctx.records.step(rec, 'executed', res.message, { attempts: res.attempts, generation: res.newGeneration });
    if (rec.source === 'drill') ctx.records.step(rec, 'budget', `not spent: the rollback of drill ${rec.drill} does not count against the production budget`);
    // Written: a store failure from here must not close the rollback as failed and give its locks
    // back. Its verification goes on and writes the record with its end; had this replica died, the
    // recovery finds the write by its change cause (scheduler.ts).
    await ctx.records.save(rec).catch((err: unknown) => {
      if (!(err instanceof StoreUnavailableError)) throw err;
      ctx.metrics.storeErrors.inc({ op: 'rollback' });
      ctx.log.warn({ err, record: rec.id }, 'could not record that the rollback was executed (the store failed); its verification goes on and records it with its end');
    });

    // The cluster is changed: the queue event can be acked. Waiting for the rollout and the
    // recovery check (minutes) goes on in the background, so this replica's next alert does not
    // wait behind it; a crash from here on is found by the scheduler's recovery (executedAt is set).
    const rest = verifyAndEnd(ctx, rec, action, res.replanned ?? plan, res, actx, settings).finally(() => release());
    handedOff = true;
    ctx.background(rest);
    return 'in_progress';
  } finally {
    if (!handedOff) await release();
  }
}

function isKubeError(err: unknown): err is { status: number | string; retriable: boolean } {
  return typeof err === 'object' && err !== null && (err as { name?: string }).name === 'KubeApiError';
}

/**
 * The timeline steps of a workload's write that did not land after a configuration restore did
 * (configDrift: restore, executeWrites): what was written back, so the revision still running keeps
 * its own configuration; and what had newer content since (a release's own), left as it is and not
 * escalated.
 */
function stepPutBack(ctx: EngineContext, rec: RollbackRecord, back: Pick<ExecuteResult, 'putBack' | 'leftAsIs'>): void {
  if (back.putBack?.length) ctx.records.step(rec, 'put_back', `the workload was not rolled back, so the configuration restored before it was put back: ${back.putBack.join('; ')}`);
  if (back.leftAsIs?.length) ctx.records.step(rec, 'put_back', `the workload was not rolled back; the configuration restored before it was changed again since, and left as it is: ${back.leftAsIs.join('; ')}`);
}
