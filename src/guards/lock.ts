import { allow, block, type Guard } from './guard.js';

export const lockName = (target: string) => `target:${target}`;

/**
 * One rollback per target across all replicas: takes the target's lock (with a fencing token the
 * action checks right before it writes). Held until the rollback is verified; released on any stop.
 */
export const lockGuard: Guard = {
  name: 'lock',
  needsPlan: false,
  async check(ctx) {
    const lock = await ctx.store.acquireLock(lockName(ctx.record.target), ctx.owner, ctx.config.LOCK_TTL);
    if (!lock) return block(`another rollback of ${ctx.record.target} is in progress (its lock is held)`);
    ctx.lock = lock;
    return allow(`lock taken (fencing token ${lock.token})`);
  },
};
