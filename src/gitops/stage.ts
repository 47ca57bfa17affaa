// Where the engine meets GitOps, three calls (src/engine/rollback.ts and verify.ts):
//  1. withGitOps(), right after the action planned: find who reconciles what the plan writes (and
//     what it changes otherwise: a Helm release's workloads, RollbackPlan.changes), put
//     it in the record and the plan summary, and apply the rule's `gitops` policy (refuse, or say
//     what will be suspended);
//  2. suspendBeforeWrite(), after the write-ahead and before the action writes: pause each owner
//     that reconciles (policy suspend), remembering what it was;
//  3. driftedBack(), when verifying: a rollback whose target was changed back after our write
//     within the owners' reconcile window failed ("re-applied by <owner>").
import { reqOpts, type ActionContext, type ExecuteResult, type RollbackPlan } from '../actions/action.js';
import { isConfigWrite } from '../actions/common.js';
import { objectKey, resourceKey } from '../guards/guard.js';
import type { EngineContext } from '../engine/context.js';
import type { RollbackRecord } from '../engine/record.js';
import { getOrNull, type KubeObject, type ResourceType } from '../kube/kube.js';
import { sleep } from '../kube/rollout-status.js';
import { findOwners, type ObjectRef } from './owner.js';
import { fieldWords, pausedNow, SUSPENDED_BY, suspendedOwnerName, suspendOwners, valueWords } from './suspend.js';
import { ownerOutOfScope } from './verify.js';
import { ownerName, type GitOpsPolicy, type GitOpsRecord, type Owner, type Suspension } from './types.js';

/** Field managers of the owners' controllers, for naming who changed an object. */
const OWNER_MANAGERS: Record<Owner['kind'], string[]> = {
  Application: ['argocd-controller', 'argocd-application-controller'],
  Kustomization: ['kustomize-controller'],
  HelmRelease: ['helm-controller'],
};

export function describeOwner(o: Owner): string {
  if (o.error) return `${ownerName(o)} (cannot be read: ${o.error})`;
  if (!o.found) return `${ownerName(o)} (named by its ${o.via}, but not found)`;
  if (o.unverified) return `${ownerName(o)} (named by its ${o.via}, but its status does not show that it manages it)`;
  return `${ownerName(o)}, ${o.sync}`;
}

/** The owners a suspend policy pauses: found, readable, shown by their own status to manage the target, reconciling now. */
const toSuspend = (owners: Owner[]) => owners.filter((o) => o.found && !o.error && !o.unverified && !o.paused);

/** Step 1: the plan, with its GitOps owners found and the rule's policy applied (a refusal when it says so). */
export async function withGitOps(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan, actx: ActionContext): Promise<RollbackPlan> {
  // Planned again (approved, re-checked after the lock guard sent it back, retried): the owners an
  // earlier plan found are not this plan's. Kept, suspendBeforeWrite suspended them when this plan
  // finds none (the target taken out of its Kustomization, a Canary's stable Deployment changed by
  // a reload). Nothing is suspended before the write-ahead, and a recovery does not plan here.
  const before = rec.gitops;
  if (before && !before.suspended?.length) delete rec.gitops;
  const noneNow = () => {
    if (before?.owners.length && !rec.gitops) ctx.records.step(rec, 'gitops', `no GitOps owner found now; the plan before found ${before.owners.map(ownerName).join(', ')}`);
    return plan;
  };
  if (!actx.kube || plan.refusal) return plan;
  const objects: ObjectRef[] = [
    ...(plan.writes ?? []).map((w) => ({ resource: w.resource, namespace: w.namespace, name: w.name, ...(w.before ? { read: w.before } : {}) })),
    ...(plan.changes ?? []),
  ];
  const policy: GitOpsPolicy = ctx.ruleFor(rec)?.gitops ?? 'suspend';
  const refuse = (message: string): RollbackPlan => ({ ...plan, summary: `refused: ${message}`, refusal: { code: 'gitops_owned', message } });
  if (plan.ownersUnchecked) {
    // a Helm release labelled as a HelmRelease's with no live workload of its own, or a manifest too large to read (src/actions/helm.ts)
    ctx.records.step(rec, 'gitops', `GitOps owner not checked: ${plan.ownersUnchecked} (gitops: ${policy})`);
    if (policy !== 'ignore') return refuse(`${plan.ownersUnchecked}; not rolled back: set gitops: ignore on the rule if no GitOps tool reconciles ${rec.target}`);
    if (objects.length === 0) return { ...noneNow(), summary: `${plan.summary}; GitOps owner not checked (gitops: ignore): ${plan.ownersUnchecked}` };
  }
  if (objects.length === 0) return noneNow();
  const owners = await findOwners(actx.kube, objects, { namespace: ctx.config.GITOPS_ARGOCD_NAMESPACE, instanceLabel: ctx.config.GITOPS_ARGOCD_INSTANCE_LABEL, inCluster: ctx.config.GITOPS_ARGOCD_IN_CLUSTER }, reqOpts(actx));
  if (owners.length === 0) return noneNow();
  const g: GitOpsRecord = { policy, owners };
  rec.gitops = g;
  const who = `reconciled by ${owners.map(describeOwner).join('; ')}`;
  ctx.records.step(rec, 'gitops', `${who} (gitops: ${policy})`, { owners: owners.map((o) => ({ tool: o.tool, kind: o.kind, namespace: o.namespace, name: o.name, sync: o.sync })) });

  const unverified = owners.find((o) => o.unverified);
  if (policy === 'ignore') {
    const note = unverified ? ` (${unverified.unverified}: not counted as its owner)` : '';
    return { ...plan, summary: `${plan.summary}; ${who}: not suspended (gitops: ignore), so verification fails if it puts the old revision back${note}` };
  }
  // A label or annotation on the target is not proof: whoever may edit the target can name any owner.
  if (unverified) {
    const stop = `${unverified.unverified}; not rolled back and ${ownerName(unverified)} not suspended`;
    // an Application deploying to a destination not known as this cluster: it may be this cluster
    // under another name (gitops: ignore would let its self-heal put the bad revision back)
    if (unverified.destination) {
      return refuse(
        `${stop}; if ${unverified.destination} is the one rollguard runs in (registered in Argo CD under another name, or by its external API address), ` +
          `add it to GITOPS_ARGOCD_IN_CLUSTER (chart gitops.argocd.inCluster)`,
      );
    }
    return refuse(`${stop}; remove the ${unverified.via} from ${rec.target}, or set gitops: ignore on the rule if no GitOps tool reconciles ${rec.target}`);
  }
  if (policy === 'refuse') return refuse(`${rec.target} is ${who}; the rule's gitops: refuse leaves GitOps-owned targets alone: revert the bad commit in git`);
  const unreadable = owners.find((o) => o.error);
  if (unreadable) {
    return refuse(
      `${rec.target} is named as reconciled by ${ownerName(unreadable)}, which cannot be read (${unreadable.error}): enable the chart's gitops RBAC ` +
        `(gitops.enabled, with the owner's namespace in gitops.argocd.namespace or gitops.flux.namespaces), or set gitops: ignore on the rule`,
    );
  }
  const stuck = owners.find((o) => o.cannotSuspend);
  if (stuck) return refuse(stuck.cannotSuspend!);
  const pause = toSuspend(owners);
  for (const o of pause) {
    const why = ownerOutOfScope(ctx.config, o);
    if (why) return refuse(`${rec.target} is ${who}, which rollguard may not suspend: ${why}; allow it there, or set gitops: refuse or ignore on the rule`);
  }
  return {
    ...plan,
    summary: pause.length
      ? `${plan.summary}; ${who}: first suspends ${pause.map(ownerName).join(', ')} (gitops: suspend)`
      : `${plan.summary}; ${who}: nothing to suspend`,
  };
}

/**
 * Step 2: suspends the owners (policy suspend) and records exactly what was changed. Throws if one
 * cannot be suspended. An owner the record already holds a suspension of (a recovery going on with
 * the rollback after its replica died: execute(..., resumed = true)) is not suspended again: its
 * field now holds rollguard's own value, which a second suspension would keep as the value before,
 * and resume would then leave the owner suspended.
 */
export async function suspendBeforeWrite(ctx: EngineContext, rec: RollbackRecord, actx: ActionContext): Promise<void> {
  const g = rec.gitops;
  if (!g || g.policy !== 'suspend' || !actx.kube || actx.dryRun) return;
  const held = g.suspended ?? [];
  const heldKeys = new Set(held.map(objectKey));
  // An owner paused at plan time is read again too: resumed since (another rollback's
  // resume-gitops, or a human), it would put this rollback's write back, so it is suspended now and
  // the record holds that suspension. Until 2026-12-07 it was taken as still paused.
  const pausedAtPlan = new Set(g.owners.filter((o) => o.paused).map(objectKey));
  const candidates = toSuspend(g.owners.map((o) => (o.paused ? { ...o, paused: false } : o))).filter((o) => !heldKeys.has(objectKey(o)));
  // One paused at plan time passed no scope check (nothing was to be suspended): if rollguard may
  // not suspend it (GITOPS_OWNER_ALLOW, the scope settings) it is only read; resumed since, the
  // write is not made, since its controller would put it back.
  const owners: Owner[] = [];
  for (const o of candidates) {
    const why = pausedAtPlan.has(objectKey(o)) ? ownerOutOfScope(ctx.config, o) : undefined;
    if (why === undefined) owners.push(o);
    else if (!(await pausedNow(actx.kube, o, reqOpts(actx)))) {
      throw new Error(`${ownerName(o)} was paused when the rollback was planned and has been resumed since, and rollguard may not suspend it (${why}): not written, as its controller would put the write back; allow it there, or roll back again once it is paused`);
    }
  }
  if (owners.length === 0) return;
  await actx.checkFence();
  // paused by someone else since the plan: recorded as found paused, never resumed by rollguard
  const foundPaused = (o: Owner, sync: string) => {
    if (pausedAtPlan.has(objectKey(o))) return; // as at plan time: nothing new to say
    const i = g.owners.findIndex((x) => objectKey(x) === objectKey(o));
    if (i >= 0) g.owners[i] = { ...g.owners[i]!, paused: true, sync };
    ctx.records.step(rec, 'gitops', `found ${ownerName(o)} already paused when suspending it (${sync}): left alone, and not resumed by rollguard`);
  };
  // suspended by this very rollback, its replica stopped before the record said so: its own, resumed with it
  const foundOwn = (s: Suspension) =>
    ctx.records.step(rec, 'gitops', `found ${suspendedOwnerName(s)} suspended by this rollback already (its annotation ${SUSPENDED_BY}: the replica that wrote it stopped before recording it): kept as this rollback's suspension, put back by resume-gitops`);
  let done: Suspension[];
  try {
    done = await suspendOwners(actx.kube, owners, ctx.now, reqOpts(actx), { record: rec.id, foundPaused, foundOwn });
  } catch (err) {
    const some = (err as { suspended?: Suspension[] }).suspended ?? [];
    g.suspended = [...held, ...some];
    countSuspended(ctx, some);
    throw err;
  }
  g.suspended = [...held, ...done];
  countSuspended(ctx, done);
  if (done.length) ctx.records.step(rec, 'gitops_suspended', `suspended ${done.map(suspensionWords).join('; ')}: ${NEXT(rec.id)}`, { suspended: done });
  await ctx.records.save(rec);
}

/** rollguard_gitops_suspensions_total; rollguard_gitops_suspended follows from the record (tally.ts). */
function countSuspended(ctx: EngineContext, done: Suspension[]): void {
  for (const s of done) ctx.metrics.gitopsSuspensions.inc({ owner_kind: s.kind });
}

const NEXT = (id: string) => `revert the bad commit in git, then resume (rollguard rollbacks resume-gitops ${id}, or POST /v1/rollbacks/${id}/resume-gitops)`;

function suspensionWords(s: Suspension): string {
  return `${suspendedOwnerName(s)} (${fieldWords(s.field)}: ${JSON.stringify(s.set)}; it was ${valueWords(s.before)})`;
}

/** Lines for the notifications and the report: what is suspended and what a human does next. */
export function gitopsLines(rec: RollbackRecord): string[] {
  const g = rec.gitops;
  if (!g) return [];
  if (g.suspended?.length && !g.resumed) return [`GitOps: suspended ${g.suspended.map(suspensionWords).join('; ')}. Next: ${NEXT(rec.id)}.`];
  if (g.resumed) return [`GitOps: resumed by ${g.resumed.by}: ${g.resumed.restored.join('; ')}`];
  return [`GitOps: reconciled by ${g.owners.map(describeOwner).join('; ')} (gitops: ${g.policy})`];
}

interface ManagedField {
  manager?: string;
  time?: string;
  subresource?: string;
  fieldsV1?: Record<string, unknown>;
}

/** The field managers of the rollback's own writes: rollguard's, and helm's (a Helm rollback). */
const OWN_WRITERS = ['rollguard', 'helm'];

/**
 * Whether every write of the object's spec since `since` (ms), but the rollback's own, went through
 * its scale subresource (an HPA or KEDA setting spec.replicas), by its managedFields: such a write
 * is no GitOps owner putting the template back. managedFields keep one entry per manager and
 * operation, timed by its last write (to the second); one without a time counts as a write since.
 */
function scaledOnly(obj: KubeObject, since: number): boolean {
  const recent = ((obj.metadata as { managedFields?: ManagedField[] }).managedFields ?? []).filter(
    (f) => f.fieldsV1 !== undefined && 'f:spec' in f.fieldsV1 && !OWN_WRITERS.includes(f.manager ?? '') && !(Date.parse(f.time ?? '') < since - 1000),
  );
  return recent.length > 0 && recent.every((f) => f.subresource === 'scale');
}

/**
 * The newest writer of an object's spec other than rollguard, from its managedFields. Writes that
 * own nothing under spec do not count: they never move the generation, and the Deployment
 * controller makes two after every change (the status, and the revision annotation).
 */
function lastWriter(obj: KubeObject, self: string): string | undefined {
  const fields = ((obj.metadata as { managedFields?: ManagedField[] }).managedFields ?? []).filter((f) => f.manager && f.manager !== self && !f.subresource && f.fieldsV1 !== undefined && 'f:spec' in f.fieldsV1);
  fields.sort((a, b) => Date.parse(b.time ?? '') - Date.parse(a.time ?? ''));
  return fields[0]?.manager;
}

/**
 * Step 3: did the rolled-back object change again after our write? Watches the plan's main object
 * (each of a Helm release's workloads when it writes none itself: RollbackPlan.changes; its
 * metadata.generation against the one our write, or helm's, produced) until the owners' reconcile window
 * after the write has passed (`wait`), or looks once. The main object is the first write that is
 * not a ConfigMap or Secret restored before the workload (configDrift: restore): those have no
 * generation, and ExecuteResult.newGeneration is the workload's (the first write only when all
 * are such, a ConfigMap target's). Returns why the rollback failed, or undefined.
 */
export async function driftedBack(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan, res: ExecuteResult, actx: ActionContext, wait: boolean): Promise<string | undefined> {
  const g = rec.gitops;
  const main = plan.writes?.find((x) => !isConfigWrite(x)) ?? plan.writes?.[0];
  // the written object, its baseline the generation our write produced; or, when the plan writes
  // nothing itself, each of a Helm release's workloads (RollbackPlan.changes), from what helm left
  // (a workload helm deleted, added by the bad revision, is gone: nothing to watch there)
  const watched: { resource: ResourceType; namespace: string; name: string; after: number | undefined; mayBeGone?: true }[] = main
    ? main.subresource
      ? []
      : [{ ...main, after: res.newGeneration }]
    : (plan.changes ?? []).map((c) => ({ ...c, after: res.generations?.[resourceKey(c)], mayBeGone: true }));
  if (!g || watched.length === 0 || !actx.kube) return undefined;
  const settle = Math.min(ctx.config.VERIFY_TIMEOUT, Math.max(0, ...g.owners.map((o) => o.settleMs)));
  const until = (rec.times.executedAt ?? res.at) + (wait ? settle : 0);
  for (;;) {
    for (const w of watched) {
      const obj = w.mayBeGone ? await getOrNull(actx.kube, w.resource, w.namespace, w.name, reqOpts(actx)) : await actx.kube.get(w.resource, w.namespace, w.name, reqOpts(actx));
      if (!obj) continue;
      const gen = obj.metadata.generation ?? 0;
      w.after ??= gen;
      // an autoscaler's write of spec.replicas (the scale subresource) moves the generation too: not a re-apply
      if (gen > w.after && scaledOnly(obj, rec.times.executedAt ?? res.at)) w.after = gen;
      if (gen > w.after) {
        const writer = lastWriter(obj, 'rollguard');
        const owner = g.owners.find((o) => writer && OWNER_MANAGERS[o.kind].includes(writer));
        const what = `${w.resource.plural} ${w.namespace}/${w.name} changed after the rollback (generation ${w.after} -> ${gen}, last written by ${writer ?? 'unknown'})`;
        const msg = owner ? `re-applied by ${ownerName(owner)}: ${what}` : `changed back after the rollback: ${what}; reconciled by ${g.owners.map(ownerName).join(', ')}`;
        ctx.records.step(rec, 'gitops_drift', msg);
        ctx.metrics.gitopsReapplied.inc({ owner_kind: owner?.kind ?? 'unknown' });
        return msg;
      }
    }
    if (ctx.now() >= until || ctx.stopped) return undefined;
    await sleep(Math.min(1000, Math.max(50, until - ctx.now())), actx.signal);
  }
}
