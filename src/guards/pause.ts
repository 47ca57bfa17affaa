import type { Store } from '../store/store.js';
import { allow, block, type Guard } from './guard.js';

const PAUSE_KEY = 'control:paused';

/**
 * A pause state read ahead of the guard (issued with the record's write-ahead, in the same round
 * trip) is the guard's answer only if it has reached the guard within this long of the read being
 * issued; later (a slow Prometheus confirmation between them, a late reply) the guard reads again
 * itself. So a pause acknowledged more than this long before the guard runs always stops it.
 */
export const PAUSE_READ_AHEAD_MS = 100;

/**
 * The pause state as read ahead, and when that read was issued on a monotonic clock (ms): its age
 * is measured on that clock, never on the wall clock, which an NTP step may move back and so make
 * a stale "not paused" look fresh.
 */
export interface PauseReadAhead {
  state: Promise<PauseState | null>;
  issuedAt: number;
  clock: () => number;
}

/** Who paused rollguard, when and why (POST /v1/pause). */
export interface PauseState {
  by: string;
  at: number;
  reason?: string;
}

/** The pause state shared by every replica, or null when rollguard is not paused. */
export async function readPause(store: Store): Promise<PauseState | null> {
  const v = await store.getValue(PAUSE_KEY);
  return v === null ? null : (JSON.parse(v) as PauseState);
}

export async function writePause(store: Store, state: PauseState): Promise<void> {
  await store.setValue(PAUSE_KEY, JSON.stringify(state));
}

export async function clearPause(store: Store): Promise<void> {
  await store.deleteValue(PAUSE_KEY);
}

/**
 * Reads the pause state now, for a guard that runs soon after (see PAUSE_READ_AHEAD_MS). `clock`
 * is monotonic (performance.now; tests pass their own).
 */
export function readPauseAhead(store: Store, clock: () => number = () => performance.now()): PauseReadAhead {
  const issuedAt = clock(); // before the GET is sent: the age is never understated
  const state = readPause(store);
  state.catch(() => undefined); // a failed read ahead is read again by the guard
  return { state, issuedAt, clock };
}

/** Whether a read ahead may still be the guard's answer: issued at most PAUSE_READ_AHEAD_MS ago. */
export function freshReadAhead(ahead: PauseReadAhead | undefined): ahead is PauseReadAhead {
  if (ahead === undefined) return false;
  const age = ahead.clock() - ahead.issuedAt;
  return age >= 0 && age <= PAUSE_READ_AHEAD_MS;
}

/**
 * The read ahead's answer if it is still fresh once it has arrived (an answer that reaches the
 * guard late, behind a slow connection or a busy event loop, tells the state of when it was read,
 * not of the verdict), else the state read now.
 */
async function pauseState(store: Store, ahead: PauseReadAhead | undefined): Promise<PauseState | null> {
  if (freshReadAhead(ahead)) {
    const answer = await ahead.state.then(
      (p) => ({ p }),
      () => undefined,
    );
    if (answer !== undefined && freshReadAhead(ahead)) return answer.p;
  }
  return readPause(store);
}

/** The global kill switch: POST /v1/pause stops every rollback until POST /v1/resume. */
export const pauseGuard: Guard = {
  name: 'pause',
  needsPlan: false,
  async check({ store, pauseAhead }) {
    const p = await pauseState(store, pauseAhead);
    if (p === null) return allow('rollguard is not paused');
    return block(`rollguard is paused (by ${p.by} at ${new Date(p.at).toISOString()}${p.reason ? `: ${p.reason}` : ''})`);
  },
};
