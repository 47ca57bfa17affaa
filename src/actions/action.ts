// The one interface every rollback kind implements: plan() reads, execute() writes, verify() waits.
// Adding a kind = one file in src/actions/ (its Action and its KindDefinition: options schema,
// rule params) and one line in src/actions/index.ts.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { ConfigDrift } from '../config-deps/check.js';
import type { Kube, KubeObject, PatchType, RequestOptions, ResourceType } from '../kube/kube.js';
import type { NameKind } from '../kube/names.js';
import type { PlannedMigration } from '../migrations/types.js';
import type { Precedence } from '../turns.js';
import type { HelmActionOptions } from './helm.js';
import type { KindOptions } from './index.js';

/** The rollback kinds, from the registry (src/actions/index.ts): 'Deployment', 'Canary', … */
export type TargetKind = keyof KindOptions & string;

interface TargetRefBase {
  namespace: string;
  /** the workload (Deployment, StatefulSet, DaemonSet, Rollout), the Helm release, the VirtualService, or the blue-green/canary app */
  name: string;
  /** kubectl's --to-revision; absent or 0 = the previous revision (kinds with `revisions`) */
  toRevision?: number;
}

/** What to roll back: a kind, an object, and that kind's own options (its file's options schema). */
export type TargetRef = { [K in TargetKind]: TargetRefBase & { kind: K; options?: KindOptions[K] } }[TargetKind];

/** Why a rule param's resolved value is not acceptable, or undefined when it is. */
export type ParamCheck = (value: string) => string | undefined;

/** What the registry gives every kind when it builds the actions (Helm: its binary and kubeconfig). */
export interface ActionDeps {
  helm?: HelmActionOptions;
}

/**
 * Everything about one rollback kind, owned by its file in src/actions/ and listed once in
 * src/actions/index.ts: the rule schema, the manual API and the chart follow from it.
 */
export interface KindDefinition<K extends string = string, O extends object = object> {
  kind: K;
  /** what a rule's `name` must be (a DNS-1123 subdomain for most objects) */
  name: NameKind;
  /** takes a revision: rule param `toRevision` (a number) becomes TargetRef.toRevision */
  revisions: boolean;
  /** TargetRef.options: what the action reads, and what POST /v1/rollbacks `options` may hold */
  options: z.ZodType<O>;
  /** the rule params (besides toRevision), each with the check of its resolved value */
  params: Record<string, ParamCheck>;
  /** a rule's target name and resolved params (all checked) onto this kind's options */
  fromParams(name: string, params: Record<string, string>): NoInfer<O>;
  create(deps: ActionDeps): Action;
}

export interface ActionContext {
  /** null when no cluster is configured: plan() then refuses with code 'no_cluster' (Helm needs none) */
  kube: Kube | null;
  logger: Logger;
  /** kubernetes.io/change-cause written with the rollback, e.g. 'rollguard: rule high-error-rate, alert HighErrorRate (fp b5aac1d6), rollback r-123' */
  changeCause: string;
  signal?: AbortSignal;
  /** whose reads wait first when KUBE_MAX_CONCURRENT_READS are in flight: the rule's priority lane (src/turns.ts) */
  precedence?: Precedence;
  /** called right before each write; throws if our fencing lock was lost */
  checkFence: () => Promise<void>;
  /** server-side dry run of the writes (dryRun=All): admitted and validated, nothing persisted */
  dryRun?: boolean;
  /**
   * Set when the rule's configDrift is `restore` and CONFIG_SNAPSHOTS is on: plans write drifted
   * configuration back from its snapshot first (src/config-deps/restore.ts); `secrets` with
   * CONFIG_SNAPSHOTS_SECRETS.
   */
  configRestore?: { secrets: boolean };
  /**
   * false when CONFIG_CHECK_SECRETS is off: the configuration check reads no Secret and lists each
   * one the restored revision uses as drift that could not be checked (src/config-deps/check.ts).
   * Absent: Secrets are checked.
   */
  checkSecrets?: boolean;
  /** CONFIG_SNAPSHOTS_KEY when CONFIG_SNAPSHOTS is on: only snapshots signed with it count (src/config-deps/snapshots.ts) */
  snapshotKey?: string;
  /**
   * Planning for the recovery of this very record, whose replica died mid-way (src/engine/scheduler.ts):
   * only then may a plan go on from where the writes stopped (RollbackPlan.resumes).
   */
  recovering?: boolean;
  /**
   * With `recovering`: the writes of the record's first plan, as the record keeps them
   * (PlanSummary.writes: objects, descriptions, a scale's replica counts; never a written value).
   * The Canary kind goes on with the stable Deployment's count its first plan chose from them. A
   * plan that finds part of this record's writes landed, and what is left to write changed since,
   * refuses 'changed_since_plan': the recovery ends the record interrupted with its message, and
   * keeps the cooldown (something was written).
   */
  firstWrites?: readonly RecordedWrite[];
  /**
   * The plan is read only for what it says of the current revision (a trigger's baseline,
   * src/engine/evaluate.ts): nothing it would do is looked into (a Helm release's workloads).
   */
  currentOnly?: boolean;
  /**
   * Why an object is outside the scope settings (SCOPE_NAMESPACES, SCOPE_DENY_NAMESPACES,
   * SCOPE_DENY_TARGETS: src/guards/scope.ts), naming the setting; undefined when it is inside. A plan
   * reads nothing outside, and refuses (`out_of_scope`) a rollback that would write there.
   */
  outOfScope?: (o: { kind: string; namespace: string; name: string }) => string | undefined;
}

/** The request options of a rollback's API calls: its signal (cancelled at shutdown), and its turn at the API server's reads (precedence). */
export function reqOpts(ctx: Pick<ActionContext, 'signal' | 'precedence'>): RequestOptions {
  return { ...(ctx.signal ? { signal: ctx.signal } : {}), ...(ctx.precedence !== undefined ? { precedence: ctx.precedence } : {}) };
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
  | 'target_not_ready'
  /** another controller controls the workload (an ownerReference with controller: true): it would put the template back */
  | 'controller_owned'
  /** a GitOps controller reconciles the target and the rule's gitops policy does not roll it back (src/gitops/) */
  | 'gitops_owned'
  /** the target revision needs a ConfigMap or Secret that no longer exists (src/config-deps/) */
  | 'missing_config'
  /** the rule's migration rollback Job template is missing, invalid or refused by the API server (src/migrations/) */
  | 'migration_job'
  /**
   * the rollback would write an object outside the scope settings that the plan found without
   * reading it (a Helm release's manifest naming a workload in a denied namespace): the scope guard
   * sees only what the plan names, so the plan refuses it itself, in the guard's words
   */
  | 'out_of_scope';

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
  /** wait this long before sending this write (a gradual traffic shift's pause between steps; skipped in a server dry run) */
  pauseBeforeMs?: number;
  /** what this write does, in words */
  description: string;
  /**
   * The object as plan() read it. The record keeps only a summary of the change against it (the
   * paths it changes, images, template hashes: src/engine/change.ts); neither is ever persisted.
   */
  before?: KubeObject;
  /**
   * A configuration restore's write (configDrift: restore, config-deps/restore.ts): the ConfigMap
   * or Secret as plan() read it, written back if the workload's write then does not land
   * (executeWrites), so the running revision never keeps the restored revision's configuration.
   * In memory only, never persisted.
   */
  configBefore?: KubeObject;
  /**
   * A scale write's replica counts, from and to (the Canary kind's): kept in the record's summary
   * of the write (WriteSummary.replicas, src/engine/change.ts; counts are not secret), so that a
   * recovery on another replica can go on with the count this plan chose (ActionContext.firstWrites).
   */
  replicas?: { before: number; after: number };
}

/** What a record keeps of one write of its first plan, as a recovery reads it (WriteSummary, src/engine/change.ts). */
export interface RecordedWrite {
  kind: string;
  namespace: string;
  name: string;
  description: string;
  replicas?: { before: number; after: number };
}

/** A revision annotated with this "true" (on the object, its current ReplicaSet or its pod template) carries a schema migration. */
export const MIGRATION_ANNOTATION = 'rollguard.io/schema-migration';

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
  current?: {
    /** absent for a kind whose current state is not a numbered revision (a ConfigMap's content) */
    revision?: number;
    createdAt: number;
    annotations: Record<string, string>;
    /** what the current state is, in words, when it is not a revision ("the content of ConfigMap shop/app-config") */
    what?: string;
  };
  refusal?: Refusal;
  summary: string;
  /** the target revision's ConfigMaps and Secrets that changed after it was created (src/config-deps/check.ts) */
  configDrift?: ConfigDrift[];
  /** the rule's migration rollback Job, run before the writes (src/migrations/stage.ts) */
  migration?: PlannedMigration;
  /**
   * This plan goes on with the same record's rollback, cut off after some of its writes landed (a
   * replica died mid-way): planned only when ActionContext.recovering, for that record (its change
   * cause), and executed by its recovery instead of being taken as applied, under the locks of
   * every object it writes, all of which the record's first plan wrote (src/engine/scheduler.ts).
   * The ConfigMap kind's restarts after its restore.
   */
  resumes?: true;
  /** Kubernetes writes execute() will send, in order */
  writes?: PlannedWrite[];
  /** the argv execute() will run (Helm) */
  command?: string[];
  /** the Helm release the command rolls back (its objects are whatever the release holds) */
  release?: { namespace: string; name: string };
  /**
   * Objects execute() does not write itself but changes all the same, whose GitOps owners
   * reconcile the target too: a Helm release's workloads, which the Flux HelmRelease that installs
   * the release labels as its own (src/gitops/stage.ts looks for owners on them as on `writes`;
   * src/actions/helm-workloads.ts)
   */
  changes?: ChangedObject[];
  /** why the GitOps owners of what the plan changes could not be looked for (the stage refuses, unless gitops: ignore) */
  ownersUnchecked?: string;
  plannedAt: number;
}

/** An object a plan changes without writing it itself (RollbackPlan.changes). */
export interface ChangedObject {
  resource: ResourceType;
  namespace: string;
  name: string;
  /** as read at plan time (the stage does not read it again) */
  read?: KubeObject;
  /** the Helm release it was found as a workload of: an owner counts only if it installs that release */
  release?: { namespace: string; name: string };
}

export interface ExecuteResult {
  applied: boolean;
  message: string;
  /** metadata.generation of the main object after the write (verify waits for it to be observed) */
  newGeneration?: number;
  /** metadata.generation of each object the plan changes (RollbackPlan.changes) after it ran, by `Kind/namespace/name` */
  generations?: Record<string, number>;
  /** when the write was accepted (ms since epoch) */
  at: number;
  /** attempts made (a 409 Conflict re-plans from a fresh read and tries again, at most 3 attempts) */
  attempts: number;
  /** the plan actually applied, when a conflict made us re-plan */
  replanned?: RollbackPlan;
  /**
   * not applied, yet writes of an earlier attempt landed before a conflict's re-plan refused (a
   * ConfigMap restored, a first traffic step): what they were. The rollback is then not "nothing
   * written": its cooldown stays
   */
  partlyWritten?: string[];
  /**
   * not applied: configuration restored before the workload's write, written back to the content
   * it had before the restore (its `configBefore`, guarded by the resourceVersion the restore left),
   * in words (or found written back by someone else); in `leftAsIs`, each one given newer content
   * after the restore (a release's own configuration: left, never overwritten) or deleted; and, in
   * `notPutBack`, each one that could not be put back, saying why and what it holds now
   */
  putBack?: string[];
  notPutBack?: string[];
  leftAsIs?: string[];
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
