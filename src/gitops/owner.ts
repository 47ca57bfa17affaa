// Who reconciles the objects a rollback plan writes: reads each object, follows its Argo CD
// tracking annotation (or instance label) or its Flux labels to the owner, reads the owner's sync
// settings, and checks that the owner's own status lists the object (verify.ts): the labels only
// say where to look. Used at plan time; reads only.
import type { Kube, KubeObject, RequestOptions, ResourceType } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { applicationSetOf, argoOwnerRef, describeApplication, type ArgoSettings } from './argocd.js';
import { describeFlux, fluxOwnerRef } from './flux.js';
import { OWNER_RESOURCES, type Owner, type OwnerRef } from './types.js';
import { notListedBy, type ObjectIdentity } from './verify.js';

export interface ObjectRef {
  resource: ResourceType;
  namespace: string;
  name: string;
  /** the object as the plan read it a moment ago (PlannedWrite.before): not read again */
  read?: KubeObject;
}

async function getOrNull(kube: Kube, rt: ResourceType, ns: string, name: string, opts: RequestOptions): Promise<KubeObject | null> {
  try {
    return await kube.get(rt, ns, name, opts);
  } catch (err) {
    if (err instanceof KubeApiError && err.isNotFound) return null;
    throw err;
  }
}

const key = (r: Pick<OwnerRef, 'kind' | 'namespace' | 'name'>) => `${r.kind}/${r.namespace}/${r.name}`;

/** The owner, marked unverified when its own status does not list every object that names it. */
function withListing(owner: Owner, obj: KubeObject, ids: ObjectIdentity[]): Owner {
  const why = notListedBy(owner, obj, ids);
  return why ? { ...owner, unverified: why } : owner;
}

/**
 * The GitOps owners of the given objects (each at most once). An owner named by a label that does
 * not exist is dropped when the label alone is ambiguous (Argo CD label tracking: Helm charts set
 * the same label) and kept as not found otherwise. A failed read of an owner (e.g. 403 without the
 * chart's gitops RBAC) is kept with its error: the caller refuses to act on what it cannot see.
 */
export async function findOwners(kube: Kube, objects: ObjectRef[], argo: ArgoSettings, opts: RequestOptions = {}): Promise<Owner[]> {
  const refs = new Map<string, { ref: OwnerRef; byLabel: boolean; objects: string[]; ids: ObjectIdentity[] }>();
  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.resource.kind}/${o.namespace}/${o.name}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const obj = o.read ? { ...o.read } : await getOrNull(kube, o.resource, o.namespace, o.name, opts);
    if (!obj) continue;
    if (!obj.kind) obj.kind = o.resource.kind;
    if (!obj.apiVersion) obj.apiVersion = o.resource.group ? `${o.resource.group}/${o.resource.version}` : o.resource.version;
    const found = argoOwnerRef(obj, argo) ?? (fluxOwnerRef(obj) && { ...fluxOwnerRef(obj)!, byLabel: false });
    if (!found) continue;
    const { byLabel, ...ref } = found;
    const k = key(ref);
    const entry = refs.get(k) ?? { ref, byLabel, objects: [], ids: [] };
    entry.objects.push(id);
    entry.ids.push({ group: o.resource.group, kind: o.resource.kind, namespace: o.namespace, name: o.name });
    refs.set(k, entry);
  }
  const owners: Owner[] = [];
  for (const { ref, byLabel, objects: objs, ids } of refs.values()) {
    try {
      const obj = await getOrNull(kube, OWNER_RESOURCES[ref.kind], ref.namespace, ref.name, opts);
      if (!obj) {
        if (!byLabel) owners.push({ ...ref, found: false, sync: 'not found', correctsDrift: false, paused: false, settleMs: 0, objects: objs });
        continue;
      }
      if (ref.kind === 'Application') {
        const setName = applicationSetOf(obj);
        const appset = setName ? { name: setName, obj: await getOrNull(kube, OWNER_RESOURCES.ApplicationSet, ref.namespace, setName, opts) } : undefined;
        owners.push(withListing(describeApplication(ref, obj, appset, objs), obj, ids));
      } else {
        owners.push(withListing(describeFlux(ref, obj, objs), obj, ids));
      }
    } catch (err) {
      owners.push({ ...ref, found: false, sync: 'unreadable', correctsDrift: false, paused: false, settleMs: 0, objects: objs, error: (err as Error).message });
    }
  }
  return owners;
}
