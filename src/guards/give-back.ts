import type { Store, StoredRecord } from '../store/store.js';
import { fmtDuration } from './guard.js';

/**
 * A budget unit or a concurrency slot refused because rollbacks that have not executed hold it:
 * they reserved or leased it moments ago and are still deciding (the guards after theirs may yet
 * ask for approval or block), or they have just ended without writing and are giving it back. A
 * rollback refused then would be closed `blocked` for good for a unit or a slot that is free a
 * few milliseconds on (a P0 alert behind a P1 rule's evaluation that asks for approval). So the
 * guard tries again every GIVE_BACK_POLL_MS while such holders remain and their giving back
 * would let it pass, for at most GIVE_BACK_WAIT_MS, renewing the locks this rollback took before
 * each pause (nothing else renews them before it executes); holders that executed end the wait at
 * once, and so does a lock of its own found lost.
 */
export const GIVE_BACK_WAIT_MS = 2000;
export const GIVE_BACK_POLL_MS = 100;
/** At most this many holders' records are read at each look (the newest reservations). */
export const GIVE_BACK_READ = 20;

/**
 * Whether a holder's record may still give its unit or slot back (`now`: the guard's clock):
 *
 *   the holder's record                                                  may give back
 *   none (unreadable, missing)                                           no: the refusal stands
 *   in_progress, or it went to write (startedAt), or it executed         no: spent (or may be), or in use
 *   deciding                                                             yes
 *   any other state (ended without a write: blocked, pending_approval,
 *   scheduled, …), written within GIVE_BACK_WAIT_MS (updatedAt)          yes: its give-back goes with that write
 *   the same, written longer ago                                         no: a give-back that failed (the
 *                                                                        unit stays for its hour)
 */
export function mayGiveBack(r: Pick<StoredRecord, 'state'> & { updatedAt?: number; times?: { startedAt?: number; executedAt?: number } } | null, now: number): boolean {
  if (r === null || r.state === 'in_progress' || r.times?.startedAt !== undefined || r.times?.executedAt !== undefined) return false;
  if (r.state === 'deciding') return true;
  return r.updatedAt !== undefined && now - r.updatedAt <= GIVE_BACK_WAIT_MS;
}

/** Records read, by id (null: missing or unreadable). */
export type Read = ReadonlyMap<string, StoredRecord | null>;

/**
 * Of the records `ids` (the first GIVE_BACK_READ), those other than `self` that may give theirs back
 * (mayGiveBack), and every record read to tell.
 */
export async function mayGiveBackOf(store: Store, ids: readonly string[], self: string, now: number): Promise<{ pending: string[]; read: Read }> {
  const others = [...new Set(ids)].filter((id) => id !== self).slice(0, GIVE_BACK_READ);
  const recs = await Promise.all(others.map((id) => store.getRecord(id).catch(() => null)));
  return {
    pending: others.filter((_, i) => mayGiveBack(recs[i] as Parameters<typeof mayGiveBack>[0], now)),
    read: new Map(others.map((id, i) => [id, recs[i]!])),
  };
}

/**
 * One try of a guard's reservation: passed, or refused, `held` of `limit` being held, with the
 * records of the holders that may give theirs back among `holders`. The refusal is told what it
 * waited for (`waited`, to append) and the holders' records read meanwhile (`read`: not read again).
 */
export type Attempt<T> = { passed: T } | { refused: (waited: string, read: Read) => T | Promise<T>; holders: readonly string[]; held: number; limit: number };

/**
 * Tries (`attempt`, told the ms elapsed since the first try, which began at `now`: the guard's
 * clock) until it passes, or is refused with too few holders that may give theirs back for it to
 * pass, or GIVE_BACK_WAIT_MS are over, or `renew` (the locks this rollback holds, renewed before
 * each pause) finds one lost; then its refusal, told (`waited`, to append) what it waited for.
 */
export async function untilGivenBack<T>(store: Store, self: string, now: number, renew: (() => Promise<boolean>) | undefined, attempt: (elapsedMs: number) => Promise<Attempt<T>>): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const elapsed = Math.round(performance.now() - t0);
    const r = await attempt(elapsed);
    if ('passed' in r) return r.passed;
    const { pending, read } = await mayGiveBackOf(store, r.holders, self, now + elapsed);
    if (pending.length === 0 || r.held - pending.length >= r.limit) return r.refused('', read);
    const left = GIVE_BACK_WAIT_MS - (performance.now() - t0);
    if (left <= 0) return r.refused(`; ${pending.join(', ')} had not executed and did not give theirs back within ${fmtDuration(GIVE_BACK_WAIT_MS)}`, read);
    if (renew && !(await renew())) return r.refused(`; waiting for ${pending.join(', ')} to give theirs back, this rollback lost its lock`, read);
    await new Promise((res) => setTimeout(res, Math.min(GIVE_BACK_POLL_MS, left)));
  }
}
