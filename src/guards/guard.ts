import type { RollbackPlan } from '../actions/action.js';
import type { Config } from '../config.js';
import type { RollbackRecord } from '../engine/record.js';
import type { Guards } from '../rules/schema.js';
import type { Lock, Store } from '../store/store.js';

export interface GuardContext {
  record: RollbackRecord;
  /** the rule's guard settings (defaults for manual rollbacks) */
  settings: Guards;
  /** read by the guards that run after the plan (needsPlan) */
  plan?: RollbackPlan;
  config: Config;
  store: Store;
  now: number;
  /** this replica, for the lock */
  owner: string;
  /** set by the lock guard when it takes the target's lock */
  lock?: Lock;
}

/** allow, block (the rollback ends, blocked), or wait (it waits for a human: approval). */
export type GuardResult = { verdict: 'allow'; reason: string } | { verdict: 'block'; reason: string } | { verdict: 'wait'; reason: string; until: number };

export interface Guard {
  readonly name: string;
  /** true for guards that read the plan (the cluster's revisions) */
  readonly needsPlan: boolean;
  check(ctx: GuardContext): Promise<GuardResult>;
}

export const allow = (reason: string): GuardResult => ({ verdict: 'allow', reason });
export const block = (reason: string): GuardResult => ({ verdict: 'block', reason });

/** Durations in messages, as rule files write them (`30m`, `6d23h57m`). */
export { formatDuration as fmtDuration } from '../rules/duration.js';
