import type { RollbackPlan } from '../actions/action.js';
import type { WrittenObject } from '../actions/index.js';
import type { Config } from '../config.js';
import type { RollbackRecord } from '../engine/record.js';
import type { Guards } from '../rules/schema.js';
import type { Lock, Store } from '../store/store.js';
import type { BudgetHold } from './budget.js';
import type { SlotHold } from './concurrency.js';
import type { PauseReadAhead } from './pause.js';

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
  /** the pause state read with the record's write-ahead (the pause guard's, if still fresh) */
  pauseAhead?: PauseReadAhead;
  /**
   * Renews the locks the guards have taken so far (LOCK_TTL); false when one was lost. A guard
   * that waits (give-back.ts) calls it, since nothing else renews them before the rollback executes.
   */
  renewLocks?: () => Promise<boolean>;
}

/** What a guard that allows may hand to the rollback: the lock guard hands over the locks it took. */
export interface Produced {
  /** the target's lock */
  lock?: Lock;
  /** the locks of the other objects the plan writes */
  locks?: Lock[];
  /** the budget guard's reservation (given back if the rollback does not execute) */
  budget?: BudgetHold;
  /** the concurrency guard's slot (renewed while the rollback runs, given back when it ends) */
  slot?: SlotHold;
  /** a dry run found the target's lock (`target`) or the written objects' (`written`) free: it takes none, and a wait on them is over */
  free?: 'target' | 'written';
}

/**
 * allow, block (the rollback ends, blocked), wait (it waits for a human: approval), or later (it
 * is decided again at `at`, from its trigger: the record is scheduled).
 */
export type GuardResult =
  | { verdict: 'allow'; reason: string; produced?: Produced }
  | { verdict: 'block'; reason: string; because?: BlockCause }
  | { verdict: 'wait'; reason: string; until: number }
  /** `written`: the wait is on the lock of an object the plan writes besides its target (the record's writeLockWaitSince, not lockWaitSince) */
  | { verdict: 'later'; reason: string; at: number; written?: boolean };

/**
 * Which way a guard blocked, where a reader acts on it (not on the reason's words): the
 * recent-deploy guard's `too_old` (the revision was created more than onlyIfDeployedWithin before
 * the alert started) and `after_start` (created after the alert started). Coalescing reads it
 * (engine/coalesce.ts): a later start leaves `too_old` as it is, an earlier one `after_start`.
 */
export type BlockCause = 'too_old' | 'after_start';

export interface Guard {
  readonly name: string;
  /** true for guards that read the plan (the cluster's revisions) */
  readonly needsPlan: boolean;
  check(ctx: GuardContext): Promise<GuardResult>;
  /**
   * The same guard on every object the plan writes (writtenObjects: a Canary's stable Deployment,
   * a blue-green Service, a Helm release, objects named by options), run once the plan exists by a
   * guard that first ran on the target alone, before the plan. Its verdict completes the guard's.
   */
  checkWrites?(ctx: GuardContext & { plan: RollbackPlan; objects: WrittenObject[] }): Promise<GuardResult>;
}

export const allow = (reason: string): GuardResult => ({ verdict: 'allow', reason });
export const block = (reason: string, because?: BlockCause): GuardResult => (because ? { verdict: 'block', reason, because } : { verdict: 'block', reason });

/** Durations in messages, as rule files write them (`30m`, `6d23h57m`). */
export { formatDuration as fmtDuration } from '../rules/duration.js';

/** "Deployment/prod/api": how guards, locks and records name an object. */
export const objectKey = (o: WrittenObject): string => `${o.kind}/${o.namespace}/${o.name}`;

/** The same name for an object given by its resource (a plan's write or change, an object looked at for its owner). */
export const resourceKey = (o: { resource: { kind: string }; namespace: string; name: string }): string => objectKey({ kind: o.resource.kind, namespace: o.namespace, name: o.name });
