// Pausing and resuming an owner's reconciliation exactly as its own CLI does, one field each:
//  - Argo CD Application: spec.syncPolicy.automated.enabled = false (prune and selfHeal kept), as
//    Argo CD 3.x turns automated sync off;
//  - Flux Kustomization / HelmRelease: spec.suspend = true, as `flux suspend`.
// What was there before is remembered and put back exactly on resume: a field that was absent is
// removed again (a merge patch with null), a value is written back.
import type { Kube, RequestOptions } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { ENABLED_FIELD } from './argocd.js';
import { SUSPEND_FIELD } from './flux.js';
import { OWNER_RESOURCES, ownerName, type Owner, type Suspension } from './types.js';

/** {"spec":{"suspend":v}} from "/spec/suspend" and v. */
function mergeAt(pointer: string, value: unknown, resourceVersion?: string): Record<string, unknown> {
  const parts = pointer.split('/').slice(1);
  let body: unknown = value;
  for (const p of parts.reverse()) body = { [p]: body };
  const out = body as Record<string, unknown>;
  if (resourceVersion) out.metadata = { resourceVersion };
  return out;
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
 * again, and the value before is the one of that read). Returns what was
 * changed; on an error the owners suspended so far are in `err.suspended` so that the caller can
 * record them.
 */
export async function suspendOwners(kube: Kube, owners: Owner[], now: () => number, opts: RequestOptions = {}): Promise<Suspension[]> {
  const done: Suspension[] = [];
  for (const o of owners) {
    if (o.paused || !o.found) continue;
    const rt = OWNER_RESOURCES[o.kind];
    const field = FIELD[o.kind];
    for (let attempt = 1; ; attempt++) {
      try {
        const obj = await kube.get(rt, o.namespace, o.name, opts);
        const before = readAt(obj, field);
        await kube.patch(rt, o.namespace, o.name, mergeAt(field, PAUSED[o.kind], obj.metadata.resourceVersion), 'merge', opts);
        done.push({ kind: o.kind, namespace: o.namespace, name: o.name, field, ...(before === undefined ? {} : { before }), set: PAUSED[o.kind], at: now() });
        break;
      } catch (err) {
        if (err instanceof KubeApiError && err.isConflict && attempt < ATTEMPTS) continue;
        throw Object.assign(new Error(`could not suspend ${ownerName(o)}: ${(err as Error).message}`), { suspended: done });
      }
    }
  }
  return done;
}

/** Puts back exactly what suspendOwners changed; returns the owners restored, in words. */
export async function resumeOwners(kube: Kube, suspended: Suspension[], opts: RequestOptions = {}): Promise<string[]> {
  const restored: string[] = [];
  for (const s of suspended) {
    const tool = s.kind === 'Application' ? 'Argo CD' : 'Flux';
    await kube.patch(OWNER_RESOURCES[s.kind], s.namespace, s.name, mergeAt(s.field, s.before === undefined ? null : s.before), 'merge', opts);
    restored.push(`${ownerName({ tool, ...s })}: ${s.field.split('/').slice(1).join('.')} ${s.before === undefined ? 'removed (as before)' : `= ${JSON.stringify(s.before)}`}`);
  }
  return restored;
}
