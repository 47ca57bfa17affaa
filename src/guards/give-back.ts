import type { Store } from '../store/store.js';

/**
 * A budget unit or a concurrency slot refused because rollbacks that have not executed hold it:
 * they reserved or leased it moments ago and are still deciding (the guards after theirs may yet
 * ask for approval or block), or they have just ended without writing and are giving it back. A
 * rollback refused then would be closed `blocked` for good for a unit or a slot that is free a
 * few milliseconds on (a P0 alert behind a P1 rule's evaluation that asks for approval). So the
 * guard tries again every GIVE_BACK_POLL_MS while such holders remain, for at most
 * GIVE_BACK_WAIT_MS; holders that executed (the unit is spent, the slot in use) end the wait at once.
 */
export const GIVE_BACK_WAIT_MS = 2000;
export const GIVE_BACK_POLL_MS = 100;
/** At most this many holders' records are read at each look (the newest reservations). */
export const GIVE_BACK_READ = 20;

/**
 * Of the records `ids` (the first GIVE_BACK_READ), those other than `self` that hold without having
 * executed: not `in_progress` and no execution time. A record that cannot be read is taken as
 * having executed (the refusal stands).
 */
export async function notExecuted(store: Store, ids: readonly string[], self: string): Promise<string[]> {
  const others = [...new Set(ids)].filter((id) => id !== self).slice(0, GIVE_BACK_READ);
  const recs = await Promise.all(others.map((id) => store.getRecord(id).catch(() => null)));
  return others.filter((_, i) => {
    const r = recs[i] as { state?: string; times?: { executedAt?: number } } | null;
    return r !== null && r.state !== 'in_progress' && r.times?.executedAt === undefined;
  });
}

/** One try of a guard's reservation: passed, or refused with the records of what holds it. */
export type Attempt<T> = { passed: T } | { refused: (waited: string) => T | Promise<T>; holders: readonly string[] };

/**
 * Tries until the attempt passes, or is refused with no holder that has not executed, or
 * GIVE_BACK_WAIT_MS have passed; then its refusal, told (`waited`, to append) which holders had not
 * executed and did not give back in time.
 */
export async function untilGivenBack<T>(store: Store, self: string, attempt: () => Promise<Attempt<T>>): Promise<T> {
  const deadline = performance.now() + GIVE_BACK_WAIT_MS;
  for (;;) {
    const r = await attempt();
    if ('passed' in r) return r.passed;
    const pending = await notExecuted(store, r.holders, self);
    if (pending.length === 0) return r.refused('');
    if (performance.now() >= deadline) return r.refused(`; ${pending.join(', ')} had not executed and did not give theirs back within ${GIVE_BACK_WAIT_MS / 1000}s`);
    await new Promise((res) => setTimeout(res, GIVE_BACK_POLL_MS));
  }
}
