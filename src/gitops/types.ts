// The GitOps owner of a rollback target, as found at plan time and kept in the rollback record.
import type { ResourceType } from '../kube/kube.js';

/**
 * What a rule does about a target that a GitOps controller reconciles:
 *  - suspend (default): pause the owner's reconciliation the way its own CLI does, remember what it
 *    was, then roll back; a human reverts the bad commit in git, then resumes.
 *  - refuse: do not roll back; the record says who owns the target.
 *  - ignore: roll back anyway (for controllers that do not correct drift); verification still
 *    fails the rollback if the owner puts the old revision back.
 */
export const GITOPS_POLICIES = ['suspend', 'refuse', 'ignore'] as const;
export type GitOpsPolicy = (typeof GITOPS_POLICIES)[number];

export type OwnerKind = 'Application' | 'Kustomization' | 'HelmRelease';

export const OWNER_RESOURCES = {
  Application: { group: 'argoproj.io', version: 'v1alpha1', plural: 'applications', kind: 'Application' },
  ApplicationSet: { group: 'argoproj.io', version: 'v1alpha1', plural: 'applicationsets', kind: 'ApplicationSet' },
  Kustomization: { group: 'kustomize.toolkit.fluxcd.io', version: 'v1', plural: 'kustomizations', kind: 'Kustomization' },
  HelmRelease: { group: 'helm.toolkit.fluxcd.io', version: 'v2', plural: 'helmreleases', kind: 'HelmRelease' },
} as const satisfies Record<string, ResourceType>;

/** An owner named by an object's tracking annotation or labels (not read yet). */
export interface OwnerRef {
  tool: 'Argo CD' | 'Flux';
  kind: OwnerKind;
  namespace: string;
  name: string;
  /** the annotation or label that names it */
  via: string;
}

/** The owner as read at plan time. */
export interface Owner extends OwnerRef {
  /** the owner object exists and could be read */
  found: boolean;
  /** its sync settings in words, e.g. "automated sync with self-heal" */
  sync: string;
  /** it would put a changed object back on its own (self-heal, drift correction) */
  correctsDrift: boolean;
  /** it is already paused (Argo CD automated sync off, Flux suspended): nothing to suspend */
  paused: boolean;
  /** how long after a rollback to watch the target for the owner putting it back */
  settleMs: number;
  /** why it cannot be suspended on the owner itself (an ApplicationSet regenerates it), if so */
  cannotSuspend?: string;
  /** the objects of the plan that name it */
  objects: string[];
  /** the read failed (e.g. 403 without the chart's gitops RBAC): what the API server said */
  error?: string;
  /**
   * its own status (Flux inventory, Argo CD status.resources) does not list an object that names
   * it, or cannot tell: why. Such an owner is never suspended; the rollback is refused.
   */
  unverified?: string;
  /**
   * an Application unverified because its destination is not one GITOPS_ARGOCD_IN_CLUSTER names:
   * that destination in words ("the cluster named local (spec.destination.name)")
   */
  destination?: string;
}

/** What was changed on an owner to suspend it, and exactly what to put back. */
export interface Suspension {
  kind: OwnerKind;
  namespace: string;
  name: string;
  /** the field changed, as a JSON pointer */
  field: string;
  /** its value before (absent = undefined: removed again on resume) */
  before?: unknown;
  /** the value set */
  set: unknown;
  at: number;
}

/** The GitOps part of a rollback record. */
export interface GitOpsRecord {
  policy: GitOpsPolicy;
  owners: Owner[];
  suspended?: Suspension[];
  /** `reverted`: the other rollbacks relying on these owners that the resume named as reverted in git too; `allReverted`: it said every one was (resume.ts) */
  resumed?: { at: number; by: string; restored: string[]; reverted?: string[]; allReverted?: true };
}

/** "Flux Kustomization flux-system/checkout" */
export function ownerName(o: Pick<OwnerRef, 'tool' | 'kind' | 'namespace' | 'name'>): string {
  return `${o.tool} ${o.kind} ${o.namespace}/${o.name}`;
}
