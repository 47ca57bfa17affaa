// Who reconciles the objects a rollback plan writes (and those it changes: a Helm release's
// workloads, RollbackPlan.changes, whose HelmRelease counts only if it installs that release:
// verify.ts notInstalling): reads each object, follows its Argo CD
// tracking annotation (or instance label) and its Flux labels to the owners, reads the owners' sync
// settings, and checks that each owner's own status lists the object (verify.ts): the labels only
// say where to look. Used at plan time; reads only.
//
// Which claims count, per object (claimsOf):
//  - a tracking annotation that names this very object names its Application. Flux labels beside
//    it count too where that Flux owner shows it applies the object (its inventory lists it, or
//    cannot tell: then it is unverified, and the rollback refused): kustomize-controller would put
//    it back whatever Argo CD does. They are dropped where the Flux owner does not exist or lists
//    other objects (labels left over from a move to Argo CD). An annotation naming an Application
//    that does not exist (stale, or set by whoever may edit the object) leaves the Flux labels to
//    count as if it were absent: it never hides the owner that really applies the object;
//  - otherwise the Flux labels (Kustomization or HelmRelease: explicit, set by Flux's controllers)
//    and the Argo CD instance label of label tracking both count. The instance label is ambiguous
//    (Helm charts set the same label): it names an owner only if that Application exists, and
//    beside Flux labels only if that Application's status.resources does not show it to manage
//    something else instead (it lists the object, or cannot tell). So an object with Flux labels
//    always keeps its Flux owner, whatever its instance label says, and both are kept when both
//    may reconcile it;
//  - a tracking annotation that names another object (copied) counts for nothing, as in Argo CD:
//    the Flux labels are read as if it were absent.
import { resourceKey } from '../guards/guard.js';
import { getOrNull, type Kube, type KubeObject, type RequestOptions, type ResourceType } from '../kube/kube.js';
import { applicationSetOf, argoOwnerRef, describeApplication, type ArgoSettings } from './argocd.js';
import { describeFlux, fluxOwnerRef } from './flux.js';
import { OWNER_RESOURCES, type Owner, type OwnerRef } from './types.js';
import { appliesElsewhere, argoDestinationElsewhere, notInstalling, notListedBy, type ObjectIdentity } from './verify.js';

export interface ObjectRef {
  resource: ResourceType;
  namespace: string;
  name: string;
  /** the object as the plan read it a moment ago (PlannedWrite.before): not read again */
  read?: KubeObject;
  /** a workload of this Helm release (RollbackPlan.changes): a HelmRelease it names counts only if it installs this release */
  release?: { namespace: string; name: string };
}

const key = (r: Pick<OwnerRef, 'kind' | 'namespace' | 'name'>) => `${r.kind}/${r.namespace}/${r.name}`;

/** An owner an object names, and how firmly. */
interface Claim {
  ref: OwnerRef;
  /** named only by the instance label of Argo CD label tracking: no such Application, no owner */
  byLabel: boolean;
  /** that label, on an object Flux labels too: not counted where the Application's status lists other objects but not it */
  besideFlux: boolean;
  /** Flux labels on an object whose tracking annotation names it: the Application it names. Counted beside that Application, if it exists, only where the Flux owner exists and does not show it manages other objects instead; checked as if alone otherwise */
  besideApp?: OwnerRef;
}

/** The owners an object names (see the top of this file), the explicit one first. */
function claimsOf(obj: KubeObject, argo: ArgoSettings): Claim[] {
  const a = argoOwnerRef(obj, argo);
  const flux = fluxOwnerRef(obj);
  if (a && !a.byLabel) {
    const { byLabel: _, ...ref } = a;
    const claims: Claim[] = [{ ref, byLabel: false, besideFlux: false }];
    if (flux) claims.push({ ref: flux, byLabel: false, besideFlux: false, besideApp: ref });
    return claims;
  }
  const claims: Claim[] = [];
  if (flux) claims.push({ ref: flux, byLabel: false, besideFlux: false });
  if (a) {
    const { byLabel: _, ...ref } = a;
    claims.push({ ref, byLabel: true, besideFlux: !!flux });
  }
  return claims;
}

/** Whether the owner's status has the list that tells which objects it manages (verify.ts). */
function hasListing(ref: OwnerRef, owner: KubeObject): boolean {
  return Array.isArray(ref.kind === 'Application' ? owner.status?.resources : owner.status?.inventory?.entries);
}

/** Whether the owner shows that it does not manage the object: it applies to another cluster, or its status lists other objects but not it. */
function showsNotManaging(ref: OwnerRef, owner: KubeObject, identity: ObjectIdentity, inCluster: readonly string[]): boolean {
  // notListedBy asks appliesElsewhere first: with a listing it answers both
  return hasListing(ref, owner) ? !!notListedBy(ref, owner, [identity], inCluster) : !!appliesElsewhere(ref, owner, inCluster);
}

/** The owner, marked unverified when its own status does not list every object that names it (with the destination, for an Application deploying to one not known as this cluster). */
function withListing(owner: Owner, obj: KubeObject, ids: ObjectIdentity[], inCluster: readonly string[]): Owner {
  const why = notListedBy(owner, obj, ids, inCluster);
  if (!why) return owner;
  const destination = owner.kind === 'Application' ? argoDestinationElsewhere(obj, inCluster) : undefined;
  return { ...owner, unverified: why, ...(destination ? { destination } : {}) };
}

/**
 * The GitOps owners of the given objects (each at most once). An owner named by a label that does
 * not exist is dropped when the label alone is ambiguous (Argo CD label tracking: Helm charts set
 * the same label) and kept as not found otherwise. A failed read of an owner (e.g. 403 without the
 * chart's gitops RBAC) is kept with its error: the caller refuses to act on what it cannot see.
 */
export async function findOwners(kube: Kube, objects: ObjectRef[], argo: ArgoSettings, opts: RequestOptions = {}): Promise<Owner[]> {
  type Named = { id: string; identity: ObjectIdentity; via: string; byLabel: boolean; besideFlux: boolean; besideApp?: OwnerRef; release?: { namespace: string; name: string } };
  const refs = new Map<string, { ref: OwnerRef; by: Named[] }>();
  const seen = new Set<string>();
  for (const o of objects) {
    const id = resourceKey(o);
    if (seen.has(id)) continue;
    seen.add(id);
    const obj = o.read ? { ...o.read } : await getOrNull(kube, o.resource, o.namespace, o.name, opts);
    if (!obj) continue;
    if (!obj.kind) obj.kind = o.resource.kind;
    if (!obj.apiVersion) obj.apiVersion = o.resource.group ? `${o.resource.group}/${o.resource.version}` : o.resource.version;
    const identity = { group: o.resource.group, kind: o.resource.kind, namespace: o.namespace, name: o.name };
    for (const { ref, byLabel, besideFlux, besideApp } of claimsOf(obj, argo)) {
      const k = key(ref);
      const entry = refs.get(k) ?? { ref, by: [] };
      entry.by.push({ id, identity, via: ref.via, byLabel, besideFlux, ...(besideApp ? { besideApp } : {}), ...(o.release ? { release: o.release } : {}) });
      refs.set(k, entry);
    }
  }
  // each owner read once (an Application is read first when the Flux labels beside its annotation are weighed)
  const reads = new Map<string, Promise<KubeObject | null>>();
  const read = (r: OwnerRef) => {
    const k = key(r);
    const p = reads.get(k) ?? getOrNull(kube, OWNER_RESOURCES[r.kind], r.namespace, r.name, opts);
    reads.set(k, p);
    return p;
  };
  const owners: Owner[] = [];
  for (const { ref: named, by } of refs.values()) {
    // a claim beside another's: an instance label beside Flux labels; Flux labels beside the
    // annotation of an Application that exists (one that does not, or cannot be read, leaves them alone)
    const beside = new Set<Named>();
    for (const n of by) if (n.besideFlux || (n.besideApp && (await read(n.besideApp).catch(() => null)))) beside.add(n);
    // named by an annotation or Flux labels, not beside another claim: kept even if not found, and named so
    const firm = by.find((n) => !n.byLabel && !beside.has(n));
    const ref = firm ? { ...named, via: firm.via } : named;
    const objs = () => by.map((n) => n.id);
    try {
      const obj = await read(ref);
      if (!obj) {
        if (firm) owners.push({ ...ref, found: false, sync: 'not found', correctsDrift: false, paused: false, settleMs: 0, objects: objs() });
        continue;
      }
      // beside another claim, on an object this owner shows it does not manage (another cluster's, or not listed):
      // a Helm chart's instance label, or Flux labels left over on an object Argo CD now applies
      const counted = by.filter((n) => !beside.has(n) || !showsNotManaging(ref, obj, n.identity, argo.inCluster));
      if (counted.length === 0) continue;
      const ids = counted.map((n) => n.identity);
      const names = counted.map((n) => n.id);
      if (ref.kind === 'Application') {
        const setName = applicationSetOf(obj);
        const appset = setName ? { name: setName, obj: await getOrNull(kube, OWNER_RESOURCES.ApplicationSet, ref.namespace, setName, opts) } : undefined;
        owners.push(withListing(describeApplication(ref, obj, appset, names), obj, ids, argo.inCluster));
      } else {
        const owner = withListing(describeFlux(ref, obj, names), obj, ids, argo.inCluster);
        // a Helm release's workload: its HelmRelease must be the one that installs that release
        let notIts: string | undefined;
        if (ref.kind === 'HelmRelease' && !owner.unverified) for (const n of counted) if (n.release && (notIts = notInstalling(ref, obj, n.release, n.identity))) break;
        owners.push(notIts ? { ...owner, unverified: notIts } : owner);
      }
    } catch (err) {
      owners.push({ ...ref, found: false, sync: 'unreadable', correctsDrift: false, paused: false, settleMs: 0, objects: objs(), error: (err as Error).message });
    }
  }
  return owners;
}
