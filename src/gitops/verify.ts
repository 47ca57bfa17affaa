// Whether a GitOps owner really manages an object, from the owner's own status (never from the
// object's labels or annotations, which whoever may edit the object can set to any owner), and
// whether rollguard may suspend that owner at all (SCOPE_* and GITOPS_OWNER_ALLOW).
//
// - Flux Kustomization, and HelmRelease from the helm-controller releases that record one:
//   `status.inventory.entries[].id` = `<namespace>_<name>_<group>_<kind>` (the string form of
//   fluxcd/pkg ssa's ObjMetadata, from cli-utils: a `:` in the name is written `__`; the core group
//   is empty, so a Service is `shop_web__Service`).
// - Argo CD Application: `status.resources[]` = {group, version, kind, namespace, name} (group and
//   namespace absent for the core group and cluster-scoped objects).
// - A HelmRelease without `status.inventory` cannot be verified: its `status.history` names Helm
//   releases, not objects, and the objects of a release are only in Helm's release storage
//   Secrets, which hold the release's values (often credentials): rollguard's client does not read
//   them (the Helm action's helm does, and rollguard keeps only its workloads' names).
// - A HelmRelease reached from a Helm release's workload (a HelmRelease-kind rollback) must also
//   say it installs that release: its newest `status.history` entry names it, and
//   `status.storageNamespace` is where the release's records are.
import { ARGOCD_IN_CLUSTER, type Config } from '../config.js';
import { globMatches, outOfScope } from '../guards/scope.js';
import type { KubeObject } from '../kube/kube.js';
import type { OwnerRef } from './types.js';

/** An object as the owners' status lists it. */
export interface ObjectIdentity {
  group: string;
  kind: string;
  namespace: string;
  name: string;
}

/** `<namespace>_<name>_<group>_<kind>`, as Flux writes inventory entries. */
export function fluxInventoryId(o: ObjectIdentity): string {
  return `${o.namespace}_${o.name.replaceAll(':', '__')}_${o.group}_${o.kind}`;
}

const words = (o: ObjectIdentity) => `${o.kind}/${o.namespace}/${o.name}`;

const server = (s: string) => s.replace(/\/+$/, '');

/**
 * The destination of an Application that is not one `inCluster` (GITOPS_ARGOCD_IN_CLUSTER) names
 * as this cluster, in words; undefined when it deploys here or names no destination. An entry with
 * `://` is a server (spec.destination.server, compared without a trailing slash), any other a
 * cluster name (spec.destination.name); Argo CD takes one or the other.
 */
export function argoDestinationElsewhere(app: KubeObject, inCluster: readonly string[]): string | undefined {
  const d = (app.spec?.destination ?? {}) as { server?: unknown; name?: unknown };
  if (typeof d.server === 'string' && d.server !== '') {
    return inCluster.some((c) => c.includes('://') && server(c) === server(d.server as string)) ? undefined : `${d.server} (spec.destination.server)`;
  }
  if (typeof d.name === 'string' && d.name !== '') {
    return inCluster.some((c) => !c.includes('://') && c === d.name) ? undefined : `the cluster named ${d.name} (spec.destination.name)`;
  }
  return undefined;
}

/**
 * Why the owner applies its objects to another cluster than the one it lives in (and rollguard
 * reads), or undefined when it applies them here. Neither Argo CD's status.resources nor Flux's
 * inventory ids name a cluster, so an owner deploying elsewhere "lists" this cluster's object of
 * the same kind, namespace and name; it is not its owner. An Application deploys here only with a
 * destination `inCluster` (GITOPS_ARGOCD_IN_CLUSTER) names: by default spec.destination.server the
 * in-cluster address or spec.destination.name in-cluster; a Kustomization or HelmRelease with
 * spec.kubeConfig applies to the cluster that kubeconfig names.
 */
export function appliesElsewhere(ref: Pick<OwnerRef, 'kind'>, owner: KubeObject, inCluster: readonly string[] = ARGOCD_IN_CLUSTER): string | undefined {
  if (ref.kind === 'Application') {
    const d = (owner.spec?.destination ?? {}) as { server?: unknown; name?: unknown };
    if ((typeof d.server !== 'string' || d.server === '') && (typeof d.name !== 'string' || d.name === '')) {
      return 'that Application names no destination cluster (spec.destination), and its status.resources names no cluster';
    }
    const elsewhere = argoDestinationElsewhere(owner, inCluster);
    return elsewhere
      ? `that Application deploys to ${elsewhere}, not to a destination GITOPS_ARGOCD_IN_CLUSTER names as the cluster rollguard runs in (${inCluster.join(', ')}), and its status.resources names no cluster`
      : undefined;
  }
  return owner.spec?.kubeConfig ? `that ${ref.kind} applies to another cluster (spec.kubeConfig), and its status.inventory names no cluster` : undefined;
}

/**
 * Undefined when the owner applies to this cluster and its status lists every object; otherwise
 * why the owner is not shown to manage them (it applies to another cluster, an object it does not
 * list, or no field to tell), naming the label that claimed it. `inCluster`: GITOPS_ARGOCD_IN_CLUSTER.
 */
export function notListedBy(ref: OwnerRef, owner: KubeObject, objects: ObjectIdentity[], inCluster: readonly string[] = ARGOCD_IN_CLUSTER): string | undefined {
  const who = `${ref.tool} ${ref.kind} ${ref.namespace}/${ref.name}`;
  const elsewhere = appliesElsewhere(ref, owner, inCluster);
  if (elsewhere) return `${words(objects[0]!)} names ${who} by its ${ref.via}, but ${elsewhere}: it is not taken for the owner of this cluster's object`;
  let listed: (o: ObjectIdentity) => boolean;
  let field: string;
  if (ref.kind === 'Application') {
    const resources = owner.status?.resources;
    if (!Array.isArray(resources)) {
      return `${words(objects[0]!)} names ${who} by its ${ref.via}, but that Application's status.resources lists nothing (never synced?): its ownership cannot be verified`;
    }
    field = 'status.resources';
    listed = (o) =>
      resources.some(
        (r: { group?: string; kind?: string; namespace?: string; name?: string }) =>
          (r.group ?? '') === o.group && r.kind === o.kind && (r.namespace ?? '') === o.namespace && r.name === o.name,
      );
  } else {
    const entries = owner.status?.inventory?.entries;
    if (!Array.isArray(entries)) {
      return ref.kind === 'HelmRelease'
        ? `${words(objects[0]!)} names ${who} by its ${ref.via}, but that HelmRelease has no status.inventory (helm-controller records one only in recent releases; ` +
            `status.history names Helm releases, not objects, and rollguard does not read Helm's release Secrets, which hold the values): its ownership cannot be verified`
        : `${words(objects[0]!)} names ${who} by its ${ref.via}, but that Kustomization's status.inventory lists nothing (never applied?): its ownership cannot be verified`;
    }
    field = 'status.inventory';
    const ids = new Set(entries.map((e: { id?: string }) => e.id));
    listed = (o) => ids.has(fluxInventoryId(o));
  }
  const missing = objects.find((o) => !listed(o));
  return missing && `${words(missing)} names ${who} by its ${ref.via}, but that ${ref.kind}'s ${field} does not list it: being named by the object does not make it the owner`;
}

type OwnerScope = Pick<Config, 'SCOPE_NAMESPACES' | 'SCOPE_DENY_NAMESPACES' | 'SCOPE_DENY_TARGETS' | 'GITOPS_OWNER_ALLOW'>;

/**
 * Why rollguard may not suspend this owner, naming the setting; undefined when it may. The deny
 * lists always apply. GITOPS_OWNER_ALLOW, when set, is the allow list of owners (it may name
 * owners outside SCOPE_NAMESPACES, e.g. flux-system, without opening that namespace to
 * rollbacks); when empty, the owner's namespace must pass SCOPE_NAMESPACES like a target's.
 */
export function ownerOutOfScope(config: OwnerScope, ref: Pick<OwnerRef, 'kind' | 'namespace' | 'name'>): string | undefined {
  const key = `${ref.kind}/${ref.namespace}/${ref.name}`;
  const denied = outOfScope({ ...config, SCOPE_NAMESPACES: [] }, key, ref.namespace);
  if (denied) return denied;
  if (config.GITOPS_OWNER_ALLOW.length > 0) {
    return config.GITOPS_OWNER_ALLOW.some((g) => globMatches(g, key))
      ? undefined
      : `owner ${key} is not in GITOPS_OWNER_ALLOW (${config.GITOPS_OWNER_ALLOW.join(', ')})`;
  }
  return outOfScope({ ...config, SCOPE_DENY_NAMESPACES: [], SCOPE_DENY_TARGETS: [] }, key, ref.namespace);
}

/**
 * Undefined when the HelmRelease's own status says it installs this Helm release (its newest
 * status.history entry names the release, and status.storageNamespace is the release's
 * namespace); otherwise why it is not taken for the release's owner. A workload the release's
 * manifest names, labelled as a HelmRelease's and listed by it, may still be another release's
 * object: a failed install keeps its manifest, whatever objects it named.
 */
export function notInstalling(ref: OwnerRef, owner: KubeObject, release: { namespace: string; name: string }, via: ObjectIdentity): string | undefined {
  const history: { name?: unknown; version?: unknown }[] = Array.isArray(owner.status?.history) ? owner.status.history : [];
  const newest = history.reduce<{ name?: unknown; version?: unknown } | undefined>((m, h) => (!m || Number(h.version) > Number(m.version) ? h : m), undefined);
  const storage = owner.status?.storageNamespace;
  if (newest?.name === release.name && storage === release.namespace) return undefined;
  const says = typeof newest?.name === 'string' && typeof storage === 'string' ? `release ${storage}/${newest.name}` : 'no release yet';
  return (
    `${words(via)} of Helm release ${release.namespace}/${release.name} names ${ref.tool} ${ref.kind} ${ref.namespace}/${ref.name} by its ${ref.via}, ` +
    `but that HelmRelease's status says it installs ${says} (status.history, status.storageNamespace): it is not taken for the release's owner`
  );
}
