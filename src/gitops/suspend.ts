// Pausing and resuming an owner's reconciliation exactly as its own CLI does, one field each:
//  - Argo CD Application: spec.syncPolicy.automated.enabled = false (prune and selfHeal kept), as
//    Argo CD 3.x turns automated sync off;
//  - Flux Kustomization / HelmRelease: spec.suspend = true, as `flux suspend`.
// What was there before is remembered and put back exactly on resume: a field that was absent is
// removed again (a merge patch with null), a value is written back; but only while the field still
// holds what rollguard set. A field someone else changed since (a human who turned Argo CD automated
// sync off by removing `automated`, resumed or changed the Flux suspension) is left as they left it
// and said so: a blind merge patch would override them, and under a removed `automated` would
// create `automated: {}`, which Argo CD reads as automated sync ON.
import type { Kube, KubeObject, RequestOptions } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { describeApplication, ENABLED_FIELD } from './argocd.js';
import { describeFlux, SUSPEND_FIELD } from './flux.js';
import { OWNER_RESOURCES, ownerName, type Owner, type Suspension } from './types.js';

/**
 * The annotations rollguard writes on an owner in the very write that suspends it: the rollback that
 * suspended it, and the field's value before (JSON, or `unset`). A replica that dies after that write
 * and before it saves the record leaves an owner suspended that no record holds; the replica going on
 * with the rollback tells that suspension as its own by them (until 2026-12-07 it was taken for a
 * human's pause, left suspended and never resumed), and whoever reads the owner sees who paused it and
 * how to undo it. Both are removed by the write that resumes it.
 */
export const SUSPENDED_BY = 'rollguard.io/suspended-by';
export const SUSPENDED_BEFORE = 'rollguard.io/suspended-before';
/** A rollback id as SUSPENDED_BY holds it (the admin API's form): any other value names no rollback. */
const ROLLBACK_ID = /^rb-[a-z0-9-]{1,40}$/;

/** {"spec":{"suspend":v}} from "/spec/suspend" and v; metadata: the resourceVersion precondition and annotations (null: removed). */
function mergeAt(pointer: string, value: unknown, resourceVersion?: string, annotations?: Record<string, string | null>): Record<string, unknown> {
  const parts = pointer.split('/').slice(1);
  let body: unknown = value;
  for (const p of parts.reverse()) body = { [p]: body };
  const out = body as Record<string, unknown>;
  if (resourceVersion || annotations) out.metadata = { ...(resourceVersion ? { resourceVersion } : {}), ...(annotations ? { annotations } : {}) };
  return out;
}

/**
 * The value before that the annotations on `obj` give for a suspension by rollback `record` still in
 * place (the field holds rollguard's value): `{ before }` (undefined: unset); null when they name
 * another rollback or none, the field was changed since, or the value is not one the field takes.
 */
function ownSuspension(obj: KubeObject, kind: Owner['kind'], record: string): { before: boolean | undefined } | null {
  const a = obj.metadata.annotations ?? {};
  if (a[SUSPENDED_BY] !== record || readAt(obj, FIELD[kind]) !== PAUSED[kind]) return null;
  const v = a[SUSPENDED_BEFORE];
  if (v === 'unset') return { before: undefined };
  if (v === 'true' || v === 'false') return { before: v === 'true' };
  return null;
}

/** What suspendOwners is told and tells back, beside the owners. */
export interface SuspendHooks {
  /** the rollback suspending them: written on each owner (SUSPENDED_BY), and an owner found suspended by it is its own */
  record?: string;
  /** an owner found paused by someone else: left alone, with its sync settings in words */
  foundPaused?: (owner: Owner, sync: string) => void;
  /** an owner found suspended by `record` already (its replica stopped before saving the record): returned among the suspensions */
  foundOwn?: (s: Suspension) => void;
}

function readAt(obj: unknown, pointer: string): unknown {
  let cur = obj;
  for (const p of pointer.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

const FIELD = { Application: ENABLED_FIELD, Kustomization: SUSPEND_FIELD, HelmRelease: SUSPEND_FIELD } as const;
const PAUSED = { Application: false, Kustomization: true, HelmRelease: true } as const;

/** Attempts of one owner's read and write: its controller updates its status on every run (a new
 * resourceVersion), so a 409 is read again and written again, at most this often. */
const ATTEMPTS = 3;

/**
 * Suspends each owner that is not paused already, in order; the resourceVersion read with the value
 * makes the write fail (409) rather than overwrite a change made in between (then the owner is read
 * again, and the value before is the one of that read). An owner that the read before the write
 * finds paused already (a human removed Argo CD's `automated` or ran `flux suspend` since the plan)
 * is not written: a merge patch under a removed `automated` would create `automated: {enabled:
 * false}`, and its resume `automated: {}`, which Argo CD reads as automated sync ON. It is passed
 * to `hooks.foundPaused` with its sync settings in words, and not among the suspensions returned, so
 * that resume leaves it as that human left it; unless its annotations say `hooks.record` suspended it
 * (SUSPENDED_BY): then it is returned with the value before they give, and passed to `hooks.foundOwn`.
 * Returns what was changed; on an error the owners suspended so far are in `err.suspended` so that
 * the caller can record them.
 */
export async function suspendOwners(kube: Kube, owners: Owner[], now: () => number, opts: RequestOptions = {}, hooks: SuspendHooks = {}): Promise<Suspension[]> {
  const done: Suspension[] = [];
  for (const o of owners) {
    if (o.paused || !o.found) continue;
    const rt = OWNER_RESOURCES[o.kind];
    const field = FIELD[o.kind];
    for (let attempt = 1; ; attempt++) {
      try {
        const obj = await kube.get(rt, o.namespace, o.name, opts);
        const fresh = describeNow(o, obj);
        const own = hooks.record === undefined ? null : ownSuspension(obj, o.kind, hooks.record);
        // what this rollback set on the owner, and the value before it
        const suspensionOf = (before: unknown): Suspension => ({ kind: o.kind, namespace: o.namespace, name: o.name, field, ...(before === undefined ? {} : { before }), set: PAUSED[o.kind], at: now() });
        if (own) {
          const s = suspensionOf(own.before);
          done.push(s);
          hooks.foundOwn?.(s);
          break;
        }
        if (fresh.paused) {
          hooks.foundPaused?.(o, fresh.sync);
          break;
        }
        const before = readAt(obj, field);
        const marks = hooks.record === undefined ? undefined : { [SUSPENDED_BY]: hooks.record, [SUSPENDED_BEFORE]: before === undefined ? 'unset' : JSON.stringify(before) };
        const suspension = suspensionOf(before);
        let patched: KubeObject;
        try {
          patched = await kube.patch(rt, o.namespace, o.name, mergeAt(field, PAUSED[o.kind], obj.metadata.resourceVersion, marks), 'merge', opts);
        } catch (err) {
          // a write that may have landed with its answer lost (a timeout, a reset, a 5xx): read
          // again, and if it did (this rollback's annotations on the owner, the field at rollguard's
          // value), it is this rollback's suspension, recorded, and the rollback goes on
          if (err instanceof KubeApiError && err.isConflict) throw err;
          if (hooks.record === undefined || !(await landed(kube, o, hooks.record, opts))) throw err;
          done.push(suspension);
          break;
        }
        // The API server drops a field its CRD's schema does not know (an Application CRD from
        // before Argo CD 3.x has no automated.enabled) and still answers 200: it is suspended only
        // if the field reads back as set; the annotations written with it are taken off again.
        const after = readAt(patched, field);
        if (after !== PAUSED[o.kind]) {
          if (marks) await kube.patch(rt, o.namespace, o.name, { metadata: { resourceVersion: patched.metadata.resourceVersion, annotations: { [SUSPENDED_BY]: null, [SUSPENDED_BEFORE]: null } } }, 'merge', opts).catch(() => undefined);
          throw new Error(notSetWords(o.kind, field, after));
        }
        done.push(suspension);
        break;
      } catch (err) {
        if (err instanceof KubeApiError && err.isConflict && attempt < ATTEMPTS) continue;
        throw Object.assign(new Error(`could not suspend ${ownerName(o)}: ${(err as Error).message}`), { suspended: done });
      }
    }
  }
  return done;
}

/** Whether this rollback's suspension of `o` is in place (read again after a write whose answer was lost); false when it cannot be read. */
async function landed(kube: Kube, o: Owner, record: string, opts: RequestOptions): Promise<boolean> {
  const obj = await kube.get(OWNER_RESOURCES[o.kind], o.namespace, o.name, opts).catch(() => null);
  return obj !== null && ownSuspension(obj, o.kind, record) !== null;
}

/** The owner as Argo CD or Flux reads it from `obj`, paused or not: the same rule as at plan time. */
function describeNow(o: Owner, obj: KubeObject): Owner {
  return o.kind === 'Application' ? describeApplication(o, obj, undefined, o.objects) : describeFlux(o, obj, o.objects);
}

/** Whether the owner reads as paused now. */
export async function pausedNow(kube: Kube, o: Owner, opts: RequestOptions = {}): Promise<boolean> {
  return describeNow(o, await kube.get(OWNER_RESOURCES[o.kind], o.namespace, o.name, opts)).paused;
}

/** A suspended field in words: `/spec/suspend` → `spec.suspend`. */
export const fieldWords = (field: string) => field.split('/').slice(1).join('.');
/** A field's value in words: `unset` when absent. */
export const valueWords = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));
/** The owner a suspension is on, by name (`Flux Kustomization ns/name`). */
export const suspendedOwnerName = (s: Suspension) => ownerName({ tool: s.kind === 'Application' ? 'Argo CD' : 'Flux', ...s });

function notSetWords(kind: Owner['kind'], field: string, now: unknown): string {
  const why =
    kind === 'Application' && now === undefined
      ? 'the API server dropped it, so its Application CRD predates Argo CD 3.x (which added automated.enabled) and automated sync stays on; install the CRDs of Argo CD 3.x, or set gitops: refuse or ignore on the rule'
      : 'the owner is not suspended';
  return `${fieldWords(field)} reads back ${valueWords(now)} after it was set to ${JSON.stringify(PAUSED[kind])}: ${why}`;
}

/**
 * Puts back exactly what suspendOwners changed, each owner read first: only a field that still holds
 * what rollguard set is written, with the resourceVersion of that read (a 409 is read, checked and
 * written again, at most ATTEMPTS times), removing rollguard's annotations (SUSPENDED_BY) in the
 * same write. A field changed since, or whose parent object is gone, is left alone. So is one whose
 * annotations say another rollback suspended it (`record`: the rollback resuming): resumed by hand
 * since and suspended again by that rollback, whose record holds that suspension and its value
 * before; or, with a second resume of `record` racing this one, suspended by that rollback in
 * between. `holds` says whether that rollback's record bears the annotation out: one naming a
 * rollback that holds no suspension of the owner (written by whoever may edit it, or left by a
 * replica that stopped before recording it) is not taken, and the owner is resumed. Until
 * 2026-12-08 any id was taken: the owner was left suspended for good, the record saying to resume
 * it through a rollback that had nothing to resume. Returns, in words, what became of each owner.
 */
export async function resumeOwners(kube: Kube, suspended: Suspension[], opts: RequestOptions = {}, record?: string, holds?: (rollback: string, s: Suspension) => Promise<boolean>): Promise<string[]> {
  const restored: string[] = [];
  for (const s of suspended) {
    const rt = OWNER_RESOURCES[s.kind];
    const name = `${suspendedOwnerName(s)}: `;
    for (let attempt = 1; ; attempt++) {
      try {
        const obj = await kube.get(rt, s.namespace, s.name, opts);
        const now = readAt(obj, s.field);
        if (now !== s.set) {
          const parent = s.field.slice(0, s.field.lastIndexOf('/'));
          const gone = now === undefined && readAt(obj, parent) === undefined ? `: ${fieldWords(parent)} is gone` : '';
          restored.push(`${name}${fieldWords(s.field)} left alone: changed by someone else since rollguard set it to ${JSON.stringify(s.set)} (now ${valueWords(now)}${gone})`);
          break;
        }
        const a = obj.metadata.annotations ?? {};
        const by = a[SUSPENDED_BY];
        const other = record !== undefined && by !== undefined && by !== record && ROLLBACK_ID.test(by);
        // the annotation is anyone's word who may edit the owner: taken only when that rollback's record bears it out
        const heldBy = other && (holds === undefined || (await holds(by, s)));
        if (heldBy) {
          restored.push(`${name}${fieldWords(s.field)} left alone: suspended again since by rollback ${by} (its annotation ${SUSPENDED_BY}), whose record holds that suspension: resume it through that rollback (rollguard rollbacks resume-gitops ${by})`);
          break;
        }
        const unheld = other ? ` (its annotation ${SUSPENDED_BY} named rollback ${by}, whose record holds no suspension of it)` : '';
        const marks = SUSPENDED_BY in a || SUSPENDED_BEFORE in a ? { [SUSPENDED_BY]: null, [SUSPENDED_BEFORE]: null } : undefined;
        await kube.patch(rt, s.namespace, s.name, mergeAt(s.field, s.before === undefined ? null : s.before, obj.metadata.resourceVersion, marks), 'merge', opts);
        restored.push(`${name}${fieldWords(s.field)} ${s.before === undefined ? 'removed (as before)' : `= ${JSON.stringify(s.before)}`}${unheld}`);
        break;
      } catch (err) {
        if (err instanceof KubeApiError && err.isConflict && attempt < ATTEMPTS) continue;
        if (err instanceof KubeApiError && err.isNotFound) {
          restored.push(`${name}not found (deleted since): nothing put back`);
          break;
        }
        throw err;
      }
    }
  }
  return restored;
}
