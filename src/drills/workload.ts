// What a drill reads of its target: the workload, its revision, a fingerprint of its pod template
// (compared as kubectl compares templates, never stored as text: a template holds env values),
// whether its rollout is complete, and which revision of its history holds a given template.
// The fingerprint leaves out the pod template's kubectl.kubernetes.io/restartedAt annotation, the
// only change `kubectl rollout restart` (and Argo CD's restart action) makes: a restart during a
// drill keeps the fault running, so it is still the drill's fault. Any other change of the template,
// its other annotations and labels included, makes it another template.
import { createHash } from 'node:crypto';
import { revisionTemplate } from '../actions/controller-revision.js';
import { getOrNull, RESOURCES, type Kube, type KubeObject, type RequestOptions, type ResourceType } from '../kube/kube.js';
import {
  annotationRevision,
  controllerRevisionNumber,
  DEPLOYMENT_REVISION,
  ownedControllerRevisions,
  ownedReplicaSets,
  POD_TEMPLATE_HASH,
  templateWithoutLabel,
} from '../kube/revision.js';
import { daemonSetState, deploymentState, statefulSetState, type RolloutState } from '../kube/rollout-status.js';

/** The workloads a drill may break: those rolled back as `kubectl rollout undo` does. */
export const DRILL_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;
export type DrillKind = (typeof DRILL_KINDS)[number];

export interface WorkloadRef {
  kind: DrillKind;
  namespace: string;
  name: string;
}

export const RESOURCE: Record<DrillKind, ResourceType> = {
  Deployment: RESOURCES.deployments,
  StatefulSet: RESOURCES.statefulsets,
  DaemonSet: RESOURCES.daemonsets,
};

const STATE: Record<DrillKind, (o: KubeObject) => RolloutState> = {
  Deployment: (o) => deploymentState(o),
  StatefulSet: (o) => statefulSetState(o),
  DaemonSet: (o) => daemonSetState(o),
};

/** JSON with empty values (null, {}, []) dropped and keys sorted: two templates semanticEqual calls equal print the same. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const c = canonical((v as Record<string, unknown>)[k]);
      const empty = c === undefined || c === null || (Array.isArray(c) && c.length === 0) || (typeof c === 'object' && c !== null && !Array.isArray(c) && Object.keys(c).length === 0);
      if (!empty) out[k] = c;
    }
    return out;
  }
  return v;
}

/** The pod-template annotation `kubectl rollout restart` sets (the time of the restart): it changes no container. */
export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';

type Template = { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> } };

function fingerprint(kind: DrillKind, template: unknown, withRestartedAt: boolean): string {
  const t = (kind === 'Deployment' ? templateWithoutLabel((template ?? {}) as Template, POD_TEMPLATE_HASH) : structuredClone(template ?? {})) as Template;
  if (!withRestartedAt && t.metadata?.annotations) delete t.metadata.annotations[RESTARTED_AT];
  return `sha256:${createHash('sha256').update(JSON.stringify(canonical(t) ?? {})).digest('hex').slice(0, 32)}`;
}

/**
 * A fingerprint of a pod template, equal for two templates exactly when kubectl calls them equal
 * (a Deployment's compared without the pod-template-hash label, as its rollout undo does), a
 * restart's restartedAt annotation left out (see the top of this file).
 */
export function templateHash(kind: DrillKind, template: unknown): string {
  return fingerprint(kind, template, false);
}

/**
 * Whether a fingerprint a drill's record holds is this template's. Records written before
 * 2026-12-07 hold fingerprints taken with the restartedAt annotation: those match the template as
 * it is, annotation included (a restart since then cannot be told from another change for them).
 */
export function hasFingerprint(kind: DrillKind, template: unknown, recorded: string): boolean {
  return fingerprints(kind, template).includes(recorded);
}

/** A template's fingerprint (templateHash) first, then as a record from before 2026-12-07 holds it (restartedAt kept). */
function fingerprints(kind: DrillKind, template: unknown): [string, string] {
  return [fingerprint(kind, template, false), fingerprint(kind, template, true)];
}

export interface Workload {
  obj: KubeObject;
  /** the revision number kubectl rollout history shows as current */
  revision: number;
  /** templateHash of its pod template; compare a recorded fingerprint with isTemplate, which takes older records' too */
  templateHash: string;
  /** whether a fingerprint a drill recorded (templateHash, or one from before 2026-12-07) is this pod template's */
  isTemplate(recorded: string): boolean;
  rollout: RolloutState;
  /** the containers' images (what a report may show of a template) */
  images: string[];
}

/** The workload as it is now, or null when it does not exist. */
export async function readWorkload(kube: Kube, ref: WorkloadRef, opts: RequestOptions = {}): Promise<Workload | null> {
  const obj = await getOrNull(kube, RESOURCE[ref.kind], ref.namespace, ref.name, opts);
  if (!obj) return null;
  const template = obj.spec?.template;
  const revision = ref.kind === 'Deployment' ? (annotationRevision(obj, DEPLOYMENT_REVISION) ?? 0) : await newestControllerRevision(kube, obj, opts);
  const containers = (template?.spec?.containers ?? []) as Array<{ image?: string }>;
  // both fingerprints once: the restore and the drill's watch ask isTemplate several times per read
  const fps = fingerprints(ref.kind, template);
  return { obj, revision, templateHash: fps[0], isTemplate: (recorded) => fps.includes(recorded), rollout: STATE[ref.kind](obj), images: containers.map((c) => c.image ?? '') };
}

async function newestControllerRevision(kube: Kube, obj: KubeObject, opts: RequestOptions): Promise<number> {
  const history = await ownedControllerRevisions(kube, obj, opts);
  return history.reduce((m, h) => Math.max(m, controllerRevisionNumber(h)), 0);
}

/** The revision of the workload's history whose template has this fingerprint (the newest such; hasFingerprint), or undefined. */
export async function revisionWithTemplate(kube: Kube, ref: WorkloadRef, obj: KubeObject, hash: string, opts: RequestOptions = {}): Promise<number | undefined> {
  const found: number[] = [];
  if (ref.kind === 'Deployment') {
    const { all } = await ownedReplicaSets(kube, obj, POD_TEMPLATE_HASH, opts);
    for (const rs of all) {
      const rev = annotationRevision(rs, DEPLOYMENT_REVISION);
      if (rev !== null && hasFingerprint('Deployment', rs.spec?.template, hash)) found.push(rev);
    }
  } else {
    for (const cr of await ownedControllerRevisions(kube, obj, opts)) {
      if (hasFingerprint(ref.kind, revisionTemplate(cr), hash)) found.push(controllerRevisionNumber(cr));
    }
  }
  return found.length ? Math.max(...found) : undefined;
}
