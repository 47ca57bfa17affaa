import type { Store } from '../store/store.js';
import { allow, block, type Guard } from './guard.js';

const PAUSE_KEY = 'control:paused';

/**
 * A pause state read ahead of the guard (issued with the record's write-ahead, in the same round
 * trip) is the guard's answer only if the guard runs within this long of the read being issued;
 * later (a slow Prometheus confirmation between them) it reads again. So a pause acknowledged
 * this long before a guard's verdict always stops it.
 */
export const PAUSE_READ_AHEAD_MS = 100;

/** The pause state as read ahead, and when that read was issued (ms). */
export interface PauseReadAhead {
  state: Promise<PauseState | null>;
  issuedAt: number;
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

/** Reads the pause state now, for a guard that runs soon after (see PAUSE_READ_AHEAD_MS). */
export function readPauseAhead(store: Store, now: number): PauseReadAhead {
  const state = readPause(store);
  state.catch(() => undefined); // a failed read ahead is read again by the guard
  return { state, issuedAt: now };
}

/** The global kill switch: POST /v1/pause stops every rollback until POST /v1/resume. */
export const pauseGuard: Guard = {
  name: 'pause',
  needsPlan: false,
  async check({ store, now, pauseAhead }) {
    const fresh = pauseAhead !== undefined && now - pauseAhead.issuedAt <= PAUSE_READ_AHEAD_MS;
    const p = fresh ? await pauseAhead.state.catch(() => readPause(store)) : await readPause(store);
    if (p === null) return allow('rollguard is not paused');
    return block(`rollguard is paused (by ${p.by} at ${new Date(p.at).toISOString()}${p.reason ? `: ${p.reason}` : ''})`);
  },
};
