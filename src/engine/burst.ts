import type { Alert } from '../alertmanager/alert.js';
import { keyDigest } from '../store/keys.js';
import type { EngineContext } from './context.js';

/**
 * The alerts coalesced into a record's evaluation (coalesce.ts: a burst of alerts for one rule and
 * target, one pod's alert each), kept beside the record so that its resolution follows the whole
 * burst, not its first alert alone. Before, the first pod's alert clearing (its pod replaced) closed
 * the held or scheduled rollback while the other pods' alerts still fired, and no one of them had a
 * record of its own to call for it again.
 *
 *   when                                                          the record
 *   its own alert resolves, no alert was coalesced into it        resolved (as before)
 *   its own alert resolves, others of its burst still fire        not resolved: noted, and decided on by its trigger when due
 *   another alert of its burst resolves, others still fire        nothing (as before)
 *   the last firing alert of its burst resolves, its own before   resolved, as its own alert would have
 *   over BURST_TRACKED alerts coalesced into it                   its resolution never follows the burst: decided on by its trigger
 *
 * Stored as `burst:<record id>`: one JSON value, each change a compare-and-set, so two replicas
 * linking and resolving alerts of one burst at once each see the other's change; whichever
 * change leaves no alert firing after the record's own resolution is the one that resolves it.
 */
export const BURST_TRACKED = 100;
const TTL_MS = 7 * 86_400_000;
const TRIES = 10;

interface Burst {
  /** digests (keyDigest of fingerprint:startsAt) of coalesced alerts not resolved yet */
  firing: string[];
  /** more than BURST_TRACKED were coalesced: when all of them resolved cannot be known */
  more?: true;
  /** when the record's own alert resolved */
  ownResolvedAt?: number;
}

const burstKey = (recordId: string) => `burst:${recordId}`;
const memberOf = (a: Pick<Alert, 'fingerprint' | 'startsAt'>) => keyDigest(`${a.fingerprint}:${a.startsAt}`);

/** Applies `next` to the stored burst (null from `next`: no change); the burst as it then stands (null: none). */
async function change(ctx: EngineContext, recordId: string, next: (b: Burst | null) => Burst | null): Promise<Burst | null> {
  const key = burstKey(recordId);
  for (let i = 0; i < TRIES; i++) {
    const raw = await ctx.store.getValue(key);
    const before = raw === null ? null : (JSON.parse(raw) as Burst);
    const after = next(before);
    if (after === null) return before;
    const text = JSON.stringify(after);
    if (text === raw) return after;
    const written = raw === null ? await ctx.store.setValue(key, text, { ttlMs: TTL_MS, onlyIfAbsent: true }) : await ctx.store.compareAndSetValue(key, raw, text, { ttlMs: TTL_MS });
    if (written) return after;
  }
  throw new Error(`the alerts coalesced into ${recordId} kept changing under ${TRIES} tries; the event is tried again`);
}

/** Joins waiting to be written, per record, in this process (one compare-and-set for all of them). */
interface Joining {
  members: Set<string>;
  started: boolean;
  done: Promise<void>;
}
const joining = new WeakMap<EngineContext, Map<string, Joining>>();

/**
 * `alert` was coalesced into record `recordId`'s evaluation: it fires with the record's own alert.
 * The alerts of one burst are linked together (the queue worker links a batch's coalesced alerts
 * at once): those joining while another write of the record's burst is in flight here wait for it
 * and are written together, in one compare-and-set, not one each racing the others (a burst of
 * n alerts would otherwise cost about n² store calls in retries).
 */
export function joinBurst(ctx: EngineContext, recordId: string, alert: Alert): Promise<void> {
  const m = memberOf(alert);
  let mine = joining.get(ctx);
  if (!mine) joining.set(ctx, (mine = new Map()));
  const queued = mine.get(recordId);
  if (queued && !queued.started) {
    queued.members.add(m);
    return queued.done;
  }
  const batches = mine;
  const batch: Joining = { members: new Set([m]), started: false, done: Promise.resolve() };
  batch.done = (queued?.done ?? Promise.resolve())
    .catch(() => undefined)
    .then(async () => {
      batch.started = true;
      await change(ctx, recordId, (b) => {
        const cur = b ?? { firing: [] };
        const fresh = [...batch.members].filter((x) => !cur.firing.includes(x));
        if (fresh.length === 0) return null;
        const room = Math.max(0, BURST_TRACKED - cur.firing.length);
        const firing = [...cur.firing, ...fresh.slice(0, room)];
        return fresh.length > room ? { ...cur, firing, more: true } : { ...cur, firing };
      });
    })
    .finally(() => {
      if (batches.get(recordId) === batch) batches.delete(recordId);
    });
  mine.set(recordId, batch);
  return batch.done;
}

/**
 * The record's own alert resolved at `at`: how many alerts of its burst still fire (0: resolve the
 * record now; Infinity: over BURST_TRACKED were coalesced, so it is left to its trigger).
 */
export async function ownResolved(ctx: EngineContext, recordId: string, at: number): Promise<number> {
  const after = await change(ctx, recordId, (b) => (b === null ? null : b.ownResolvedAt !== undefined ? null : { ...b, ownResolvedAt: at }));
  if (after === null) return 0;
  return after.more ? Infinity : after.firing.length;
}

/**
 * An alert coalesced into record `recordId` resolved: whether it was the last of the burst to fire
 * after the record's own alert resolved (then the record is resolved now, as its own alert's
 * resolution was left for this moment).
 */
export async function memberResolved(ctx: EngineContext, recordId: string, alert: Alert): Promise<boolean> {
  const m = memberOf(alert);
  const after = await change(ctx, recordId, (b) => (b === null || !b.firing.includes(m) ? null : { ...b, firing: b.firing.filter((x) => x !== m) }));
  return after !== null && after.ownResolvedAt !== undefined && after.firing.length === 0 && after.more === undefined;
}
