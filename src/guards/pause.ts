import { allow, block, type Guard } from './guard.js';

export const PAUSE_KEY = 'control:paused';

/** The global kill switch: POST /v1/pause stops every rollback until POST /v1/resume. */
export const pauseGuard: Guard = {
  name: 'pause',
  needsPlan: false,
  async check({ store }) {
    const v = await store.getValue(PAUSE_KEY);
    if (v === null) return allow('rollguard is not paused');
    const p = JSON.parse(v) as { by: string; at: number; reason?: string };
    return block(`rollguard is paused (by ${p.by} at ${new Date(p.at).toISOString()}${p.reason ? `: ${p.reason}` : ''})`);
  },
};
