import type { Lock, Store } from '../store/store.js';
import type { WrittenObject } from '../actions/index.js';
import { allow, block, objectKey, type Guard } from './guard.js';

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
    const lock = await ctx.store.acquireLock(lockName(ctx.record.target), ctx.owner, ctx.config.LOCK_TTL);
    if (!lock) return block(`another rollback of ${ctx.record.target} is in progress (its lock is held)`);
    return { ...allow(`lock taken (fencing token ${lock.token})`), produced: { lock } };
  },
  async checkWrites(ctx) {
    const r = await lockWrites(ctx.store, ctx.owner, ctx.config.LOCK_TTL, ctx.record.target, ctx.objects);
    if ('held' in r) return block(`another rollback writing ${r.held} is in progress (its lock is held)`);
    return { ...allow(r.names.length ? `locks of ${r.names.join(', ')} taken too` : 'it writes no other object'), produced: { locks: r.locks } };
  },
};

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
