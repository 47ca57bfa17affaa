// The one interface every rollback kind implements: plan() reads, execute() writes, verify() waits.
// Adding a kind = one file in src/actions/ and one line in src/actions/index.ts.
import type { Logger } from 'pino';
import type { Kube, PatchType, ResourceType } from '../kube/client.js';

export type TargetKind = 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'Rollout' | 'HelmRelease' | 'BlueGreen' | 'Canary';

export interface TargetRef {
  kind: TargetKind;
  namespace: string;
  /** the workload (Deployment, StatefulSet, DaemonSet, Rollout), the Helm release, or the blue-green/canary app */
  name: string;
  /** kubectl's --to-revision; absent or 0 = the previous revision */
  toRevision?: number;
  /**
   * Kind-specific options:
   *  - Rollout: { mode?: 'abort' | 'undo' | 'abort-undo' } (default 'abort', as `kubectl argo rollouts abort`)
   *  - BlueGreen: { service?: string (default name), selectorKey?: string (default 'version'),
   *                 to?: string (colour to switch back to; default: the other of colours),
   *                 colours?: [string, string] (default ['blue', 'green']) }
   *  - Canary: { canary?: string (default `${name}-canary`), stable?: string (default `${name}-stable`),
   *              stableReplicas?: number (default: stable's replicas + canary's replicas) }
   *  - HelmRelease: { release?: string (default name), timeout?: string (helm duration, default '5m0s') }
   */
  options?: Record<string, unknown>;
}

export interface ActionContext {
  /** null when no cluster is configured: plan() then refuses with code 'no_cluster' (Helm needs none) */
  kube: Kube | null;
  logger: Logger;
  /** kubernetes.io/change-cause written with the rollback, e.g. 'rollguard: rule high-error-rate, alert HighErrorRate (fp b5aac1d6), rollback r-123' */
  changeCause: string;
  signal?: AbortSignal;
  /** called right before each write; throws if our fencing lock was lost */
  checkFence: () => Promise<void>;
  /** server-side dry run of the writes (dryRun=All): admitted and validated, nothing persisted */
  dryRun?: boolean;
}

export type RefusalCode =
  | 'not_found'
  | 'no_history'
  | 'revision_not_found'
  | 'paused'
  | 'already_matches'
  | 'unsupported'
  | 'no_cluster'
  /** a new revision was deployed between plan() and execute(): not rolled back automatically */
  | 'changed_since_plan'
  /** what we would switch or scale back to is not running/available (blue-green, canary) */
  | 'target_not_ready';

export interface Refusal {
  code: RefusalCode;
  /** kubectl's words where kubectl has them */
  message: string;
}

/** One write execute() will send, exactly (for dry-run display and the rollback record). */
export interface PlannedWrite {
  resource: ResourceType;
  namespace: string;
  name: string;
  patchType: PatchType;
  patch: unknown;
  subresource?: 'status';
  /**
   * How the write guards against a change made after plan(): 'json-test' = a JSON Patch test op
   * (the API server answers 422 when it fails), 'resource-version' = metadata.resourceVersion in
   * the body (409 Conflict). Either way execute() re-plans from a fresh read, bounded.
   */
  precondition?: 'json-test' | 'resource-version';
  /** what this write does, in words */
  description: string;
}

export interface RollbackPlan {
  target: TargetRef;
  kind: TargetKind;
  /** the revision being rolled away from and the one being restored */
  fromRevision?: number;
  toRevision?: number;
  /**
   * The revision being rolled away from: its creation time (ReplicaSet / ControllerRevision /
   * Helm release) for the recent-deploy guard, and its annotations (the object's, its current
   * ReplicaSet's and its pod template's, merged in that order) for e.g. an approval guard on
   * 'rollguard.io/schema-migration: "true"'.
   */
  current?: { revision: number; createdAt: number; annotations: Record<string, string> };
  refusal?: Refusal;
  summary: string;
  /** Kubernetes writes execute() will send, in order */
  writes?: PlannedWrite[];
  /** the argv execute() will run (Helm) */
  command?: string[];
  plannedAt: number;
}

export interface ExecuteResult {
  applied: boolean;
  message: string;
  /** metadata.generation of the main object after the write (verify waits for it to be observed) */
  newGeneration?: number;
  /** when the write was accepted (ms since epoch) */
  at: number;
  /** attempts made (a 409 Conflict re-plans from a fresh read and tries again, at most 3 attempts) */
  attempts: number;
  /** the plan actually applied, when a conflict made us re-plan */
  replanned?: RollbackPlan;
  /** set when a re-plan after a conflict refused (e.g. someone else already rolled back) */
  refusal?: Refusal;
}

export type VerifyOutcome = 'succeeded' | 'failed' | 'unverified';

export interface VerifyResult {
  outcome: VerifyOutcome;
  message: string;
  details?: Record<string, unknown>;
}

export interface VerifyOptions {
  timeoutMs: number;
  pollMs?: number;
  /** the result of execute(): its time and generation make verification ignore stale status */
  execution?: ExecuteResult;
}

export interface Action {
  kind: TargetKind;
  plan(ref: TargetRef, ctx: ActionContext): Promise<RollbackPlan>;
  execute(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult>;
  verify(plan: RollbackPlan, ctx: ActionContext, opts: VerifyOptions): Promise<VerifyResult>;
}
