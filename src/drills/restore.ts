// A failed or timed-out drill puts the workload back itself: the pre-drill template, as `kubectl
// rollout undo --to-revision=N` would, N being the revision of the workload's history that holds
// that template now (rollguard's own rollback, if it ran, may have renumbered it). The rollback
// kinds' own plan/execute/verify do the work (src/actions/), under the target's rollback lock
// with its fencing token, so a drill's restore and a rollback never write at once.
// It only undoes its own fault: it restores while the live pod template is the one the fault wrote
// (its fingerprint is in the drill's record; a `kubectl rollout restart` since, which only sets the
// template's restartedAt annotation, keeps it the fault's: workload.ts) and leaves a workload that
// moved on to another one (a release deployed during the drill, or while every replica was down) as it is.
import type { Logger } from 'pino';
import type { Action, ActionContext, TargetKind } from '../actions/action.js';
import type { Config } from '../config.js';
import { checkFence, drillHolder, lockName } from '../guards/lock.js';
import type { Kube } from '../kube/kube.js';
import { sleep } from '../kube/rollout-status.js';
import type { Lock, Store } from '../store/store.js';
import type { DrillRecord } from './store.js';
import { readWorkload, revisionWithTemplate } from './workload.js';

export interface RestoreDeps {
  kube: Kube;
  actions: Partial<Record<TargetKind, Action>>;
  store: Store;
  config: Pick<Config, 'LOCK_TTL' | 'VERIFY_TIMEOUT'>;
  logger: Logger;
  owner: string;
  signal?: AbortSignal;
  /** how long the rollout of the restore may take (default VERIFY_TIMEOUT) */
  verifyTimeoutMs?: number;
}

export type RestoreResult = NonNullable<DrillRecord['restore']>;

/** Puts the workload of drill `d` back on its pre-drill template, unless it is there already. Never throws. */
export async function restorePreDrill(deps: RestoreDeps, d: DrillRecord, why: string, now: () => number): Promise<RestoreResult> {
  const done = (outcome: RestoreResult['outcome'], message: string, revision?: number): RestoreResult => ({ outcome, message, at: now(), ...(revision !== undefined ? { revision } : {}) });
  const opts = deps.signal ? { signal: deps.signal } : {};
  let lock: Lock | null = null;
  try {
    const w = await readWorkload(deps.kube, d.ref, opts);
    if (!w) return done('failed', `${d.target} no longer exists: nothing to restore`);
    if (w.isTemplate(d.before.templateHash)) return done('already_back', `${d.target} is already on its pre-drill template (revision ${w.revision}): nothing to restore`, w.revision);
    const fault = isTheFault(d, w.isTemplate, w.revision);
    if (fault === 'unknown') {
      return done(
        'failed',
        `could not tell whether revision ${w.revision} of ${d.target} is the drill's fault (the drill's record holds no fingerprint of the fault's template: a drill started before 2026-12-07): not restored; if its change-cause is "rollguard drill ${d.id}: …", restore revision ${d.before.revision} by hand (kubectl rollout undo --to-revision)`,
        w.revision,
      );
    }
    if (!fault) return done('moved_on', movedOn(d, w.revision), w.revision);
    const revision = await revisionWithTemplate(deps.kube, d.ref, w.obj, d.before.templateHash, opts);
    if (revision === undefined) {
      return done('failed', `the pre-drill template (revision ${d.before.revision}) is no longer in the revision history of ${d.target} (revisionHistoryLimit): restore it from the release pipeline`);
    }
    const action = deps.actions[d.ref.kind];
    if (!action) return done('failed', `no action for kind ${d.ref.kind}`);
    lock = await takeLock(deps, d.target, d.id);
    if (!lock) return done('failed', `another rollback of ${d.target} held its lock for ${Math.round((2 * deps.config.LOCK_TTL) / 1000)}s: the drill could not restore it; check rollguard rollbacks list --target ${d.target}`);
    const held = lock;
    const actx: ActionContext = {
      kube: deps.kube,
      logger: deps.logger.child({ drill: d.id, target: d.target }),
      changeCause: `rollguard drill ${d.id}: restoring the pre-drill template (revision ${revision}) because ${why}`.slice(0, 500),
      checkFence: () => checkFence(deps.store, [held], deps.config.LOCK_TTL),
      ...(deps.signal ? { signal: deps.signal } : {}),
    };
    const ref = { kind: d.ref.kind, namespace: d.ref.namespace, name: d.ref.name, toRevision: revision };
    const plan = await action.plan(ref, actx);
    if (plan.refusal?.code === 'already_matches') return done('already_back', `${d.target} is already on its pre-drill template: nothing to restore`, revision);
    if (plan.refusal) return done('failed', `could not restore ${d.target}: ${plan.refusal.message}`);
    // A release between the read above and the plan: the plan would roll it back.
    if (plan.fromRevision !== undefined && plan.fromRevision !== w.revision) return done('moved_on', movedOn(d, plan.fromRevision), plan.fromRevision);
    const res = await action.execute(plan, actx);
    // A release between the plan and the write: the write's precondition failed, and the fresh plan saw it.
    if (!res.applied && res.refusal?.code === 'changed_since_plan') return done('moved_on', movedOn(d, res.replanned?.fromRevision ?? plan.fromRevision ?? w.revision), res.replanned?.fromRevision);
    if (!res.applied) return done(res.refusal?.code === 'already_matches' ? 'already_back' : 'failed', res.message, revision);
    const v = await action.verify(plan, actx, { timeoutMs: deps.verifyTimeoutMs ?? deps.config.VERIFY_TIMEOUT, execution: res });
    const line = `${plan.summary} (the pre-drill template, as kubectl rollout undo --to-revision=${revision} would)`;
    return v.outcome === 'succeeded' ? done('restored', `${line}; ${v.message}`, revision) : done('failed', `${line} was written, but the rollout is ${v.outcome}: ${v.message}`, revision);
  } catch (err) {
    deps.logger.error({ err, drill: d.id, target: d.target }, 'drill restore failed');
    return done('failed', `restoring ${d.target} failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    if (lock) await deps.store.releaseLock(lock).catch(() => false);
  }
}

/**
 * Whether the live template (isLive: whether a fingerprint is its, and the revision holding it) is
 * the one drill `d`'s fault wrote; a restart since (kubectl rollout restart: only the template's
 * restartedAt annotation changed) leaves it the fault's. A record from before 2026-12-07 may have
 * no fingerprint of the fault: its fault revision stands for it when the drill saw one, else it
 * cannot be told ('unknown').
 */
function isTheFault(d: DrillRecord, isLive: (recorded: string) => boolean, liveRevision: number): boolean | 'unknown' {
  if (d.fault.templateHash !== undefined) return isLive(d.fault.templateHash);
  if (d.faultRevision !== undefined) return liveRevision === d.faultRevision;
  return 'unknown';
}

function movedOn(d: DrillRecord, revision: number): string {
  return `${d.target} moved on to revision ${revision}, not the drill's fault: not restored (a release or change made during the drill is left as it is; check that it does not carry the fault: ${d.fault.summary})`;
}

/** The target's rollback lock, waiting up to twice LOCK_TTL for a rollback that holds it to end; held as the drill's (an alert meeting it reads whose it is: src/guards/lock.ts). */
async function takeLock(deps: RestoreDeps, target: string, drill: string): Promise<Lock | null> {
  const until = Date.now() + 2 * deps.config.LOCK_TTL;
  for (;;) {
    const lock = await deps.store.acquireLock(lockName(target), drillHolder(deps.owner, drill), deps.config.LOCK_TTL);
    if (lock || Date.now() >= until || deps.signal?.aborted) return lock;
    await sleep(500, deps.signal);
  }
}
