// What a revision's pod template depends on, checked at planning: the ConfigMaps and Secrets it
// references (refs.ts) must still exist (else the rolled-back pods could not start: the plan
// refuses), and each one changed after the revision was created is reported as drift (the old code
// would run with the new configuration; the rule's configDrift policy decides what follows, in
// policy.ts). Called by the Deployment, StatefulSet and DaemonSet actions at the end of plan().
//
// Only metadata is read (Kube.getMetadata: the API server's PartialObjectMetadata), for Secrets
// and ConfigMaps alike: a Secret's data never reaches rollguard. RBAC has no metadata-only right,
// though: with CONFIG_CHECK_SECRETS off (the chart's default cluster-wide, where `get secrets`
// would allow reading every Secret of the cluster) no Secret is read at all, and each one the
// revision uses is listed as drift that could not be checked.
import type { ActionContext, RollbackPlan } from '../actions/action.js';
import { refused, reqOpts } from '../actions/common.js';
import { RESOURCES, type Kube, type KubeObject } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { timestampMs } from '../kube/revision.js';
import pLimit from 'p-limit';
import { configRefs, type ConfigKind, type ConfigRef } from './refs.js';
import { withConfigRestore } from './restore.js';

/** One referenced object that changed after the target revision was created (or could not be read). */
export interface ConfigDrift {
  kind: ConfigKind;
  namespace: string;
  name: string;
  /** its last change (ms since epoch); absent when it could not be read */
  changedAt?: number;
  /** what the record, the notification and the report say */
  message: string;
  /** configDrift: restore, with a snapshot (restore.ts): the snapshot written back first, or already matching */
  restore?: { snapshot: string; since: number; written: boolean };
  /** configDrift: restore, and why this object cannot be restored (no snapshot, a Secret without CONFIG_SNAPSHOTS_SECRETS) */
  notRestored?: string;
}

/** The revision a rollback restores: its number, its creation time (ms) and its pod template. */
export interface TargetRevision {
  revision: number;
  createdAt: number | undefined;
  template: unknown;
}

/** How many of a revision's ConfigMaps and Secrets are read at once. */
const CHECK_CONCURRENCY = 8;

/** The resource of each kind a revision may depend on. */
export const CONFIG_RESOURCES = { ConfigMap: RESOURCES.configmaps, Secret: RESOURCES.secrets } as const;

/**
 * The last change of an object as its metadata shows it: the newest managedFields time (every
 * create, update, patch or apply records its manager's time there), else its creation. A hashed
 * name (kustomize, Helm checksums) is never edited, so its creation is its last change.
 */
export function lastChange(meta: KubeObject['metadata']): number | undefined {
  let last = timestampMs(meta.creationTimestamp);
  const mf = Array.isArray(meta.managedFields) ? (meta.managedFields as { time?: string }[]) : [];
  for (const f of mf) {
    const t = timestampMs(f.time);
    if (t !== undefined && (last === undefined || t > last)) last = t;
  }
  return last;
}

/** "14:02 UTC" on the revision's day, "2026-11-27 14:02 UTC" on another. */
export function fmtTime(ms: number, sameDayAs?: number): string {
  const iso = new Date(ms).toISOString();
  const day = iso.slice(0, 10);
  const hm = iso.slice(11, 16);
  return sameDayAs !== undefined && new Date(sameDayAs).toISOString().slice(0, 10) === day ? `${hm} UTC` : `${day} ${hm} UTC`;
}

export function missingMessage(revision: number, namespace: string, missing: ConfigRef[]): string {
  const names = missing.map((r) => `${r.kind} ${namespace}/${r.name}`);
  const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
  return `revision ${revision} needs ${list}, which no longer ${names.length === 1 ? 'exists' : 'exist'}; rolling back would leave its pods unable to start`;
}

export function driftMessage(ref: { kind: ConfigKind; name: string }, namespace: string, revision: number, changedAt: number, createdAt: number): string {
  return `${ref.kind} ${namespace}/${ref.name} changed at ${fmtTime(changedAt, createdAt)}, after revision ${revision} was created: the old code will run with the new configuration`;
}

/** Why a Secret is not read with CONFIG_CHECK_SECRETS off: configured, not a failure. */
export const SECRETS_NOT_CHECKED = 'CONFIG_CHECK_SECRETS is off (chart: actions.checkSecrets)';

export function notCheckedMessage(ref: { kind: ConfigKind; name: string }, namespace: string, revision: number): string {
  return `${ref.kind} ${namespace}/${ref.name}, used by revision ${revision}, not checked: ${SECRETS_NOT_CHECKED}: it may have changed since`;
}

async function readMeta(kube: Kube, ref: ConfigRef, namespace: string, ctx: ActionContext): Promise<KubeObject | null> {
  try {
    return await kube.getMetadata(CONFIG_RESOURCES[ref.kind], namespace, ref.name, reqOpts(ctx));
  } catch (err) {
    if (err instanceof KubeApiError && err.isNotFound) return null;
    throw err;
  }
}

/**
 * The plan, refused ('missing_config') when the target revision needs a ConfigMap or Secret that no
 * longer exists, else with `configDrift` listing what changed since the revision was created. An
 * object that cannot be read (403: the chart's RBAC, a timeout) is listed as drift that could not
 * be ruled out, so the policy still decides; the error is logged. With ctx.checkSecrets false
 * (CONFIG_CHECK_SECRETS off) no Secret is read: each is listed as drift that was not checked, with
 * no log line (it is configured, not a failure).
 */
export async function withConfigCheck(plan: RollbackPlan, ctx: ActionContext, target: TargetRevision): Promise<RollbackPlan> {
  if (plan.refusal || !ctx.kube) return plan;
  const ns = plan.target.namespace;
  const refs = configRefs(target.template);
  const missing: ConfigRef[] = [];
  const drift: ConfigDrift[] = [];
  // read together (a template names a handful; bounded all the same), judged in the template's order
  const kube = ctx.kube;
  const limit = pLimit(CHECK_CONCURRENCY);
  const unchecked = (ref: ConfigRef) => ref.kind === 'Secret' && ctx.checkSecrets === false;
  const reads = await Promise.all(
    refs.map((ref) => (unchecked(ref) ? { unchecked: true as const } : limit(() => readMeta(kube, ref, ns, ctx).then((meta) => ({ meta }), (err: unknown) => ({ err }))))),
  );
  for (const [i, ref] of refs.entries()) {
    const read = reads[i]!;
    let meta: KubeObject | null;
    if ('unchecked' in read) {
      drift.push({ kind: ref.kind, namespace: ns, name: ref.name, message: notCheckedMessage(ref, ns, target.revision) });
      continue;
    }
    if ('meta' in read) meta = read.meta;
    else {
      const why = (read.err as Error).message;
      ctx.logger.warn({ kind: ref.kind, object: `${ns}/${ref.name}`, err: why }, 'cannot read a ConfigMap or Secret the target revision uses');
      drift.push({ kind: ref.kind, namespace: ns, name: ref.name, message: `${ref.kind} ${ns}/${ref.name}, used by revision ${target.revision}, could not be checked (${why}): it may have changed since` });
      continue;
    }
    if (!meta) {
      if (!ref.optional) missing.push(ref);
      continue;
    }
    const changedAt = lastChange(meta.metadata);
    if (changedAt !== undefined && target.createdAt !== undefined && changedAt > target.createdAt) {
      drift.push({ kind: ref.kind, namespace: ns, name: ref.name, changedAt, message: driftMessage(ref, ns, target.revision, changedAt, target.createdAt) });
    }
  }
  const { refusal: _none, summary: _s, writes: _w, ...rest } = plan;
  if (missing.length > 0) return refused(plan.target, 'missing_config', missingMessage(target.revision, ns, missing), rest);
  if (drift.length === 0) return plan;
  const withDrift = { ...plan, configDrift: drift };
  return ctx.configRestore ? withConfigRestore(withDrift, ctx, target) : withDrift;
}
