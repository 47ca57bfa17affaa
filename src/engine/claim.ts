import type { EngineContext } from './context.js';
import { alive } from './heartbeat.js';

/**
 * A record's claim (`claim:<record id>`): one replica evaluates one alert for one target (intake.ts),
 * and one replica writes a chain's next record (chain.ts). It guards only until the record is
 * written: the record id is deterministic and every taker reads the record before it looks at the
 * claim, so from then on the record stands for the alert. The claim is then given up (released:
 * marked `released:<owner>` for RELEASED_TTL_MS, which sends a replica that read no record just
 * before the write to read it again, then gone). Held on, it would outlive its record (a record
 * that changed nothing is pruned after RECORD_RETENTION_NO_ACTION, any record sooner under
 * REDIS_MAX_RECORDS) and refuse a resend of the still-firing alert on every other replica until
 * it was dead-lettered; given up, such a resend is evaluated afresh.
 */

const RELEASED = 'released:';
/**
 * A claim held while its record is not written yet: long, since a holder that died before its
 * write is told by its heartbeat (claim() takes the claim over), never by the claim's expiry.
 */
const CLAIM_TTL_MS = 7 * 86_400_000;
/**
 * A released claim's mark lasts this long: longer than any gap between a replica's read of the
 * record and its claim (the two go to the store together), after which the record is read first.
 */
const RELEASED_TTL_MS = 10 * 60_000;
/** A claim that could not be given up (store down) is tried again after this, doubling up to RELEASE_RETRY_MAX_MS. */
const RELEASE_RETRY_MS = 500;
const RELEASE_RETRY_MAX_MS = 5_000;
/** Still not given up after this long: said once in the log (the alert waits for this replica meanwhile). */
const RELEASE_WARN_AFTER_MS = 120_000;

/**
 * The first step of claim(), issued with the record's read: takes the claim if nobody holds it.
 * A release of an earlier failed attempt, still being retried, must not free this one; one that
 * was already sent is ahead of this call on the store's connection, so it sees its result.
 */
export function tryClaim(ctx: EngineContext, id: string): Promise<boolean> {
  const pending = ctx.releasing.get(id);
  if (pending) {
    pending.cancelled = true;
    ctx.releasing.delete(id);
  }
  return ctx.store.setValue(`claim:${id}`, ctx.owner, { onlyIfAbsent: true, ttlMs: CLAIM_TTL_MS });
}

/**
 * Claims record `id`: only one replica ever evaluates one alert for one target. `fresh`: what
 * tryClaim() came to. A replica that finds it claimed but not yet written leaves the event queued
 * and looks again later. Our own claim without a record (the store failed right after the claim;
 * never one of a delivery still in hand here, which handleTarget leaves to it) is taken up again,
 * and so is a claim given up (by a replica whose evaluation failed, or once its record was
 * written), or one whose owner's heartbeat is gone (it died between the claim and the write-ahead
 * record; its replacement has another name): taken over atomically, only if still held as read.
 * Returns how: 'new', 'ours' (taken up again), 'taken' (from another replica: the caller reads
 * the record again, which that replica may have written).
 */
export async function claim(ctx: EngineContext, id: string, fresh: boolean): Promise<'new' | 'ours' | 'taken'> {
  if (fresh) return 'new';
  const key = `claim:${id}`;
  const ttlMs = CLAIM_TTL_MS;
  const holder = await ctx.store.getValue(key);
  if (holder === ctx.owner) return 'ours';
  if (holder?.startsWith(RELEASED) && (await ctx.store.compareAndSetValue(key, holder, ctx.owner, { ttlMs }))) {
    ctx.log.info({ record: id, previousOwner: holder.slice(RELEASED.length) }, 'claim given up by another replica (its evaluation failed before its write-ahead record, or its record was written), taken: the record is read again');
    return 'taken';
  }
  if (holder !== null && holder !== ctx.owner && !holder.startsWith(RELEASED) && !(await alive(ctx, holder)) && (await ctx.store.compareAndSetValue(key, holder, ctx.owner, { ttlMs }))) {
    ctx.log.warn({ record: id, previousOwner: holder }, `claim of replica ${holder}, which is gone, taken over: the alert is evaluated here`);
    return 'taken';
  }
  throw new Error(`rollback ${id} is being evaluated by another replica; the event stays queued`);
}

/**
 * Who evaluates record `id` now, if anyone (dead.ts): this replica while a delivery of it is in
 * hand here, or the replica holding its claim while that replica is alive. Null for no claim, one
 * given up, or one of this replica or a gone one with nothing in hand.
 */
export async function evaluatedBy(ctx: EngineContext, id: string): Promise<string | null> {
  if (ctx.decidingHere.has(id)) return ctx.owner;
  const holder = await ctx.store.getValue(`claim:${id}`);
  if (holder === null || holder === ctx.owner || holder.startsWith(RELEASED)) return null;
  return (await alive(ctx, holder)) ? holder : null;
}

/**
 * Gives up our claim on record `id` (only if it is still ours): marked released, so that another
 * replica's claim() takes it at once instead of waiting on a replica that is alive but no longer
 * evaluating, and reads the record again. Called once the record is written (its write-ahead
 * landed: the claim guards nothing more), and when an attempt fails before that. Any write of
 * ours that got through lands before the release (one connection, in order); the taker reads the
 * record again after taking the claim. While the store is down the release is tried again in the
 * background until it answers (at most one retry per claim, and only events in hand fail here:
 * bounded by QUEUE_CONCURRENCY), unless this replica claims the record again first (tryClaim()
 * cancels it) or stops. Never rejects.
 */
export async function releaseClaim(ctx: EngineContext, id: string): Promise<void> {
  const key = `claim:${id}`;
  const release = () => ctx.store.compareAndSetValue(key, ctx.owner, `${RELEASED}${ctx.owner}`, { ttlMs: RELEASED_TTL_MS });
  try {
    await release();
    return;
  } catch {
    // the store is down: tried again below
  }
  const handle = { cancelled: false };
  const earlier = ctx.releasing.get(id);
  if (earlier) earlier.cancelled = true;
  ctx.releasing.set(id, handle);
  const since = ctx.now();
  let delay = RELEASE_RETRY_MS;
  let warned = false;
  const done = () => {
    if (ctx.releasing.get(id) === handle) ctx.releasing.delete(id);
  };
  const retry = () => {
    if (handle.cancelled || ctx.stopped) return done();
    release().then(
      (released) => {
        done();
        if (released) ctx.log.info({ record: id }, 'claim given up once the store was back');
      },
      () => {
        if (!warned && ctx.now() - since > RELEASE_WARN_AFTER_MS) {
          warned = true;
          ctx.log.warn({ record: id }, `claim not given up for ${RELEASE_WARN_AFTER_MS / 1000} s (store unavailable): the alert waits for this replica; still trying`);
        }
        delay = Math.min(delay * 2, RELEASE_RETRY_MAX_MS);
        setTimeout(retry, delay).unref();
      },
    );
  };
  setTimeout(retry, delay).unref();
}
