import type { Store } from '../store/store.js';
import { allow, block, type Guard } from './guard.js';

const PAUSE_KEY = 'control:paused';

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

/** The global kill switch: POST /v1/pause stops every rollback until POST /v1/resume. */
export const pauseGuard: Guard = {
  name: 'pause',
  needsPlan: false,
  async check({ store }) {
    const p = await readPause(store);
    if (p === null) return allow('rollguard is not paused');
    return block(`rollguard is paused (by ${p.by} at ${new Date(p.at).toISOString()}${p.reason ? `: ${p.reason}` : ''})`);
  },
};
