import type { RollbackPlan } from '../actions/action.js';
import { writtenObjects, type WrittenObject } from '../actions/common.js';
import type { Store } from '../store/store.js';
import { allow, block, fmtDuration, objectKey, type Guard } from './guard.js';

const cooldownKey = (target: string) => `cooldown:${target}`;
const stepBackKey = (target: string) => `stepback:${target}`;

/** The last rollback rollguard executed on a target, kept until its cooldown ends. */
export interface CooldownState {
  /** the rollback's record id */
  id: string;
  /** when it was executed */
  at: number;
  /** when the cooldown ends */
  until: number;
  /** set once it ended: succeeded, failed, unverified */
  outcome?: string;
}

export async function readCooldown(store: Store, target: string): Promise<CooldownState | null> {
  const v = await store.getValue(cooldownKey(target));
  return v === null ? null : (JSON.parse(v) as CooldownState);
}

/** Starts (or updates) the target's cooldown; the key expires when the cooldown ends. */
export async function writeCooldown(store: Store, target: string, state: CooldownState, now: number): Promise<void> {
  await store.setValue(cooldownKey(target), JSON.stringify(state), { ttlMs: Math.max(1, state.until - now) });
}

/**
 * Writes `state` (rollback `state.id`'s) as `key`'s cooldown only over that rollback's own entry, or
 * where there is none while it lasts: never over another rollback's, which may have written the
 * object since this one's entry ran out (a recovery holds no lock of the other objects).
 */
export async function extendCooldown(store: Store, key: string, state: CooldownState, now: number): Promise<void> {
  if (state.until <= now) return;
  const k = cooldownKey(key);
  const raw = await store.getValue(k);
  const text = JSON.stringify(state);
  const ttlMs = state.until - now;
  if (raw === null) await store.setValue(k, text, { ttlMs, onlyIfAbsent: true });
  else if ((JSON.parse(raw) as CooldownState).id === state.id) await store.compareAndSetValue(k, raw, text, { ttlMs });
}

/**
 * The other objects a plan changes, as `Kind/namespace/name`, that carry a cooldown of their own: a
 * Canary's stable Deployment, a blue-green Service, a Helm release. Not the target (its own key),
 * nor a Job the rollback creates (a new object each time).
 */
export function cooledObjects(plan: RollbackPlan | undefined, target: string): string[] {
  return plan ? cooledKeys(writtenObjects(plan), target) : [];
}

/** cooledObjects of a list of written objects (a plan's, or those a record kept). */
export function cooledKeys(objects: readonly WrittenObject[], target: string): string[] {
  return [...new Set(objects.filter((o) => o.kind !== 'Job').map(objectKey))].filter((k) => k !== target).sort();
}

/** Starts the cooldown of the target and of every other object the plan writes, as one rollback's. */
export async function writeCooldowns(store: Store, target: string, plan: RollbackPlan, state: CooldownState, now: number): Promise<void> {
  for (const key of [target, ...cooledObjects(plan, target)]) await writeCooldown(store, key, state, now);
}

/**
 * Starts a rollback's cooldowns (writeCooldowns) before its write, and counts the step back when it
 * is one, so that once the write may have landed no crash or store failure leaves the target open
 * to a second rollback. Returns how to put back what was there, for a rollback that wrote nothing
 * after all. `previous`: the target's cooldown entry as read before (the only one there may be:
 * the guard let the rollback through). The other objects' entries are read here; they are either
 * absent or, on a step back, the previous rollback's (the guard allows no other).
 */
export async function startCooldowns(store: Store, target: string, plan: RollbackPlan, state: CooldownState, now: number, previous: CooldownState | null, stepBack?: { ttlMs: number }): Promise<(at: number) => Promise<void>> {
  const others = cooledObjects(plan, target);
  const before = [previous, ...(await Promise.all(others.map((k) => readCooldown(store, k))))];
  const steps = stepBack ? await readStepBacks(store, target) : 0;
  if (stepBack) await store.setValue(stepBackKey(target), String(steps + 1), { ttlMs: stepBack.ttlMs });
  await writeCooldowns(store, target, plan, state, now);
  return async (at) => {
    for (const [i, key] of [target, ...others].entries()) {
      const old = before[i];
      if (old && old.until > at) await writeCooldown(store, key, old, at);
      else await store.deleteValue(cooldownKey(key));
    }
    if (stepBack) {
      // counted with the rollback stepped back from, whose cooldown it ends with
      if (steps > 0) await store.setValue(stepBackKey(target), String(steps), { ttlMs: Math.max(1, (previous?.until ?? at + stepBack.ttlMs) - at) });
      else await store.deleteValue(stepBackKey(target));
    }
  };
}

/**
 * Ends the cooldowns a rollback started (startCooldowns) that, as found later, wrote nothing: each
 * key of `keys` (the target, the other objects it writes) still naming `id` with no outcome yet.
 */
export async function dropCooldowns(store: Store, keys: readonly string[], id: string): Promise<void> {
  for (const key of keys) {
    const c = await readCooldown(store, key);
    if (c?.id === id && c.outcome === undefined) await store.deleteValue(cooldownKey(key));
  }
}

/** How many times in a row the target was stepped back (allowStepBack). */
export async function readStepBacks(store: Store, target: string): Promise<number> {
  return Number((await store.getValue(stepBackKey(target))) ?? '0');
}


/**
 * After rollguard rolls a target back, no other rollback of it for `cooldown`: no rollback loops.
 * A rule with allowStepBack may step back once more (bounded by maxStepBack) when the previous
 * rollback did not recover the service. Like scope and locks, the cooldown holds for every object
 * a rollback writes: a Canary rollback that scaled the stable Deployment up starts the stable's
 * cooldown too, so another rule undoing that Deployment (or switching that Service back) waits
 * for it, and a rollback whose plan writes an object still cooling down is blocked, naming it.
 */
export const cooldownGuard: Guard = {
  name: 'cooldown',
  needsPlan: true,
  async check({ store, record, settings, plan }) {
    const last = await readCooldown(store, record.target);
    let verdict = allow('no recent rollback of this target');
    if (last !== null) {
      if (!(settings.allowStepBack && last.outcome === 'failed')) {
        return block(`${record.target} was rolled back by ${last.id} at ${new Date(last.at).toISOString()}; cooldown ${fmtDuration(settings.cooldown)} until ${new Date(last.until).toISOString()}`);
      }
      const steps = await readStepBacks(store, record.target);
      if (steps >= settings.maxStepBack) return block(`rollback ${last.id} did not recover and the step-back limit (${settings.maxStepBack}) is reached`);
      verdict = allow(`stepping back one more revision (${steps + 1} of at most ${settings.maxStepBack}) after rollback ${last.id} did not recover`);
    }
    const others = cooledObjects(plan, record.target);
    for (const key of others) {
      const o = await readCooldown(store, key);
      // a step back writes again what the rollback it steps back from wrote
      if (o === null || (last !== null && o.id === last.id)) continue;
      return block(`the rollback writes ${key}, rolled back by ${o.id} at ${new Date(o.at).toISOString()}; its cooldown lasts until ${new Date(o.until).toISOString()}`);
    }
    return others.length > 0 ? { ...verdict, reason: `${verdict.reason}; none of ${others.join(', ')} either` } : verdict;
  },
};
