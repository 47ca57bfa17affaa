import type { Lock, Store, StoredRecord } from '../store/store.js';
import type { WrittenObject } from '../actions/index.js';
import { allow, block, fmtDuration, objectKey, type Guard, type GuardContext, type GuardResult } from './guard.js';

export const lockName = (target: string) => `target:${target}`;

/**
 * One rollback per target, and one per written object, across all replicas: takes the target's
 * lock before the plan, then the lock of every other object the plan writes (a Canary's stable
 * Deployment, a blue-green Service), each with a fencing token the action checks right before it
 * writes, and hands them to the rollback (`produced`), which holds them until the rollback is
 * verified and releases them on any stop. Two rollbacks writing one object never run at once: the
 * second is blocked, naming the object.
 */
export const lockGuard: Guard = {
  name: 'lock',
  needsPlan: false,
  async check(ctx) {
    const rec = ctx.record;
    const lock = await ctx.store.acquireLock(lockName(rec.target), ctx.owner, ctx.config.LOCK_TTL);
    if (lock) return { ...allow(`lock taken (fencing token ${lock.token})`), produced: { lock } };
    return heldElsewhere(ctx);
  },
  async checkWrites(ctx) {
    const r = await lockWrites(ctx.store, ctx.owner, ctx.config.LOCK_TTL, ctx.record.target, ctx.objects);
    if ('held' in r) return block(`another rollback writing ${r.held} is in progress (its lock is held)`);
    return { ...allow(r.names.length ? `locks of ${r.names.join(', ')} taken too` : 'it writes no other object'), produced: { locks: r.locks } };
  },
};

/**
 * The target's lock is held by another rollback. One executing (in_progress) stands for this one:
 * blocked, naming it. One still deciding (its guards running) may yet end without a cluster write,
 * waiting for an approval or stopped by its own guard, and an alert closed `blocked` behind it
 * would then roll nothing back (a P0 alert behind a P1 rule's evaluation that asks for approval).
 * So an alert's rollback is decided again later instead: scheduled LOCK_TTL/6 on, then from its
 * trigger again, until 2 × LOCK_TTL after it first found the lock held (by then the holder has
 * executed, given the lock back, or died and let it expire); only then blocked. Manual rollbacks,
 * approved ones and a chain's targets are blocked at once, as before: they are not decided from a
 * trigger, and their requester (or the chain) hears of it now.
 *
 * Waiting is only for a rollback of this target being decided: with none deciding, the lock is
 * held by something that will write (another target's rollback writing this object, a drill's
 * restore), and the alert is blocked at once. And one rule waits once per target: an alert of a
 * rule whose rollback of this target is already being decided, or already waiting, is blocked,
 * naming that record, which decides for both (it meets the same guards): a flood of one rule's
 * alerts is one waiting record, not one re-check each.
 *
 *   lock held, and of this target's other records        record (alert, rule, no chain, not approved)   other records
 *   one in_progress                                       block, naming it                               block
 *   one of the same rule deciding or waiting on the lock  block, naming it                               block
 *   one deciding (another rule's)                         later (scheduled), until 2 x LOCK_TTL, then block   block
 *   none deciding                                         block                                          block
 */
async function heldElsewhere(ctx: GuardContext): Promise<GuardResult> {
  const rec = ctx.record;
  const why = `another rollback of ${rec.target} is in progress (its lock is held)`;
  const mayWait = rec.source !== 'manual' && rec.rule !== undefined && rec.chain === undefined && rec.approval?.decision !== 'approved';
  if (!mayWait) return block(why);
  const others = async (state: string) => (await ctx.store.listRecords({ target: rec.target, state, limit: 20 })).filter((r) => r.id !== rec.id) as (StoredRecord & { rule?: string; lockWaitSince?: number })[];
  const running = (await others('in_progress'))[0];
  if (running) return block(`another rollback of ${rec.target} is executing (${running.id}; its lock is held)`);
  const [deciding, scheduled] = await Promise.all([others('deciding'), others('scheduled')]);
  const same = [...deciding, ...scheduled.filter((r) => r.lockWaitSince !== undefined)].find((r) => r.rule === rec.rule);
  if (same) return block(`${why}; the rollback of ${rec.target} for rule ${rec.rule} is already being decided by ${same.id}, which decides for this alert too`);
  if (deciding.length === 0) return block(`another rollback writing ${rec.target} is in progress (its lock is held, and no rollback of it is being decided: another target's rollback that writes it, or a drill's restore)`);
  const max = 2 * ctx.config.LOCK_TTL;
  const waited = rec.lockWaitSince === undefined ? 0 : ctx.now - rec.lockWaitSince;
  if (waited >= max) return block(`${why}, still after ${fmtDuration(waited)} of waiting for its holder to execute or give it back (2 × LOCK_TTL)`);
  const every = Math.max(1, Math.round(ctx.config.LOCK_TTL / 6));
  return { verdict: 'later', reason: `${why} by a rollback that has not executed (it may yet end without writing): decided again in ${fmtDuration(every)}, for at most 2 × LOCK_TTL (${fmtDuration(max)})`, at: ctx.now + every };
}

/**
 * The locks of every object a plan writes but its target, in name order; all or none: when one is
 * held elsewhere, those taken are given back and it is named. The guard's, and a recovery going on
 * with a plan (src/engine/scheduler.ts).
 */
export async function lockWrites(store: Store, owner: string, ttlMs: number, target: string, objects: readonly WrittenObject[]): Promise<{ locks: Lock[]; names: string[] } | { held: string }> {
  const names = [...new Set(objects.map(objectKey))].filter((k) => k !== target).sort();
  const locks: Lock[] = [];
  for (const key of names) {
    const lock = await store.acquireLock(lockName(key), owner, ttlMs);
    if (!lock) {
      await Promise.all(locks.map((l) => store.releaseLock(l).catch(() => false)));
      return { held: key };
    }
    locks.push(lock);
  }
  return { locks, names };
}

/**
 * The fence check an action runs right before each write (ActionContext.checkFence): every lock
 * the rollback holds must still be ours (its fencing token the store's current one) and renew for
 * another `ttlMs`. The reads and renewals of every lock go to the store together: a renewal only
 * extends a lock still ours (renewLock), so one sent alongside a fence that turns out lost
 * changes nothing another holder has.
 */
export async function checkFence(store: Store, held: readonly Lock[], ttlMs: number): Promise<void> {
  if (held.length === 0) throw new Error('no lock held for this rollback');
  const checks = held.map((l) => Promise.all([store.currentFence(l.name), store.renewLock(l, ttlMs)]));
  const results = await Promise.all(checks);
  held.forEach((l, i) => {
    const [fence, renewed] = results[i]!;
    const what = l.name.replace(/^target:/, '');
    if (fence !== l.token) throw new Error(`lock on ${what} lost (fencing token ${l.token}, current ${fence}): not writing`);
    if (!renewed) throw new Error(`lock on ${what} expired: not writing`);
  });
}
