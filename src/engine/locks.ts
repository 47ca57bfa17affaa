import { releaseSlot, type SlotHold } from '../guards/concurrency.js';
import type { Lock } from '../store/store.js';
import type { EngineContext } from './context.js';
import type { RollbackRecord } from './record.js';

/** The shortest time between two renewals, whatever LOCK_TTL is. */
export const RENEW_FLOOR_MS = 50;

/**
 * Keeps what a running rollback holds (its locks, and its concurrency slot when given) while it
 * executes or verifies: renewed every LOCK_TTL/3 (at least RENEW_FLOOR_MS apart), so a renewal
 * lands twice before the lease could lapse, whatever LOCK_TTL is. A lock found lost (the renewal
 * answers false: it expired and was taken, or released) and a renewal that failed (the store) are
 * logged with the record and the lock; nothing else is done here: the action's fence check
 * (checkFence) and a close that checks its fence (endOnce, stillOurs) are what stop a rollback
 * whose lock is gone. Returns what stops the renewals and gives everything back (releaseAll); it
 * may be called more than once, and gives back once. `lost`: the log line of a lock found lost
 * (resume-gitops holds its claim with this too, src/gitops/resume.ts).
 */
export function holdLocks(
  ctx: EngineContext,
  rec: Pick<RollbackRecord, 'id'>,
  locks: readonly Lock[],
  slot?: SlotHold,
  lost = 'lock lost while the rollback runs (expired, or taken by another): it will not write or close under it',
): () => Promise<void> {
  const ttl = ctx.config.LOCK_TTL;
  const renew = setInterval(() => {
    for (const lock of locks) {
      ctx.store
        .renewLock(lock, ttl)
        .then((ok) => ok || ctx.log.warn({ record: rec.id, lock: lock.name, token: lock.token }, lost))
        .catch((err: unknown) => ctx.log.warn({ err, record: rec.id, lock: lock.name }, 'lock renewal failed'));
    }
    if (slot) {
      ctx.store
        .renewSlot(slot.pool, slot.member, ttl)
        .then((held) => held || ctx.log.warn({ record: rec.id, slot: slot.member }, 'concurrency slot lost (it ran out, or another replica gave it back): this rollback goes on uncounted among MAX_CONCURRENT_ROLLBACKS'))
        .catch((err: unknown) => ctx.log.warn({ err, record: rec.id }, 'concurrency slot renewal failed'));
    }
  }, Math.max(RENEW_FLOOR_MS, Math.floor(ttl / 3)));
  renew.unref();
  let released: Promise<void> | undefined;
  return () => {
    clearInterval(renew);
    return (released ??= releaseAll(ctx, [...locks], slot));
  };
}

/**
 * Gives back the locks (each only while still held under its own token: Store.releaseLock) and
 * the concurrency slot; a lock or slot that cannot be given back runs out after LOCK_TTL.
 */
export async function releaseAll(ctx: EngineContext, locks: readonly Lock[], slot?: SlotHold): Promise<void> {
  await Promise.all([
    ...locks.map((l) => ctx.store.releaseLock(l).catch((err: unknown) => ctx.log.warn({ err, lock: l.name }, 'could not give back a lock (it runs out after LOCK_TTL)'))),
    ...(slot ? [releaseSlot(ctx.store, slot).catch((err) => ctx.log.warn({ err, slot: slot.member }, 'could not give back a concurrency slot (it runs out after LOCK_TTL)'))] : []),
  ]);
}
