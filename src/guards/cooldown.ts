import { allow, block, fmtDuration, type Guard } from './guard.js';

export const cooldownKey = (target: string) => `cooldown:${target}`;
export const stepBackKey = (target: string) => `stepback:${target}`;

/**
 * After rollguard rolls a target back, no other rollback of it for `cooldown`: no rollback loops.
 * A rule with allowStepBack may step back once more (bounded by maxStepBack) when the previous
 * rollback did not recover the service.
 */
export const cooldownGuard: Guard = {
  name: 'cooldown',
  needsPlan: true,
  async check({ store, record, settings }) {
    const v = await store.getValue(cooldownKey(record.target));
    if (v === null) return allow('no recent rollback of this target');
    const last = JSON.parse(v) as { id: string; at: number; until: number; outcome?: string };
    if (settings.allowStepBack && last.outcome === 'failed') {
      const steps = Number((await store.getValue(stepBackKey(record.target))) ?? '0');
      if (steps < settings.maxStepBack) return allow(`stepping back one more revision (${steps + 1} of at most ${settings.maxStepBack}) after rollback ${last.id} did not recover`);
      return block(`rollback ${last.id} did not recover and the step-back limit (${settings.maxStepBack}) is reached`);
    }
    return block(
      `${record.target} was rolled back by ${last.id} at ${new Date(last.at).toISOString()}; cooldown ${fmtDuration(settings.cooldown)} until ${new Date(last.until).toISOString()}`,
    );
  },
};
