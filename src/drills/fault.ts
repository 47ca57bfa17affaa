// A drill's fault, applied as a new revision of the workload whose change-cause says it is a drill:
//   image  the container's image set to a tag that cannot be pulled
//   crash  the container made to exit at start
//   env    NAME=VALUE set on the container: a switch the application understands (a fault flag)
//   patch  a strategic-merge patch of spec.template that the team supplies
// image, crash and env are computed here from the template the drill read and written as one JSON
// Patch replacing /spec/template, whose first operation tests /metadata/generation (a deploy since
// the read fails the write); patch goes to the API server as the strategic-merge patch it is, with
// metadata.resourceVersion as its precondition. Every fault is first sent as a server-side dry run:
// a fault the API server refuses, or one that would leave the template as it is (no new revision),
// changes nothing and is refused naming the field.
import { z } from 'zod';
import type { PlannedWrite } from '../actions/action.js';
import { isConflict, refusedByServer } from '../actions/common.js';
import type { Kube, KubeObject } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { CHANGE_CAUSE } from '../kube/revision.js';
import { RESOURCE, templateHash, type WorkloadRef } from './workload.js';

const containerName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a container name (DNS-1123 label)').max(63);
const envName = z.string().regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, 'expected an environment variable name (letters, digits, "_", "-", "."; not starting with a digit)').max(256);

export const faultSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('image'),
    /** default: the pod template's first container */
    container: containerName.optional(),
    /** default: the container's image with the tag rollguard-drill-unpullable (a tag nobody pushes) */
    image: z.string().min(1).max(500).regex(/^\S+$/, 'expected an image reference without spaces').optional(),
  }),
  z.strictObject({ kind: z.literal('crash'), container: containerName.optional() }),
  z.strictObject({ kind: z.literal('env'), name: envName, value: z.string().max(4096), container: containerName.optional() }),
  z.strictObject({
    kind: z.literal('patch'),
    /** only spec.template: the drill restores the pod template, nothing else of the workload */
    patch: z.strictObject({ spec: z.strictObject({ template: z.record(z.string(), z.unknown()) }) }),
  }),
]);
export type Fault = z.infer<typeof faultSchema>;

/** The tag the image fault gives the container by default. */
export const UNPULLABLE_TAG = 'rollguard-drill-unpullable';
/** What the crash fault runs instead of the container's command: it exits at once (no shell in the image: it fails to start, which crashes as well). */
export const CRASH_COMMAND = ['/bin/sh', '-c', 'echo "rollguard drill: this container exits at start" >&2; exit 1'];

/** A bad fault: `field` is the body path to change (fault.container, fault.patch…). Nothing was written. */
export class FaultError extends Error {
  override readonly name = 'FaultError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** An image reference with its tag (and digest) replaced. */
export function withTag(image: string, tag: string): string {
  const noDigest = image.split('@')[0]!;
  const colon = noDigest.lastIndexOf(':');
  const repo = colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
  return `${repo}:${tag}`;
}

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  [k: string]: unknown;
}

function pick(template: KubeObject['spec'], name: string | undefined): Container {
  const containers = (template?.spec?.containers ?? []) as Container[];
  const c = name === undefined ? containers[0] : containers.find((x) => x.name === name);
  if (!c) {
    throw new FaultError('fault.container', name === undefined ? 'the pod template has no container' : `no container "${name}" in the pod template (it has: ${containers.map((x) => x.name).join(', ')})`);
  }
  return c;
}

/** The patch fault's keys below spec.template, two levels deep (what a report may say of it: no values). */
function patchPaths(patch: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(patch)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) for (const k2 of Object.keys(v)) out.push(`spec.template.${k}.${k2}`);
    else out.push(`spec.template.${k}`);
  }
  return out;
}

/**
 * What the fault does, in words that may be recorded: images, commands and paths, never an env
 * value (the value of the env fault is the workload's env value while the drill runs).
 */
export function describeFault(fault: Fault, template?: KubeObject['spec']): string {
  const which = (name: string | undefined) => {
    if (name !== undefined || template === undefined) return name ?? 'the first container';
    try {
      return pick(template, undefined).name;
    } catch {
      return 'the first container';
    }
  };
  switch (fault.kind) {
    case 'image': {
      const from = template ? pick(template, fault.container).image : undefined;
      const to = fault.image ?? (from ? withTag(from, UNPULLABLE_TAG) : `<image>:${UNPULLABLE_TAG}`);
      return `image of container ${which(fault.container)} set to ${to} (a tag that cannot be pulled)`;
    }
    case 'crash':
      return `container ${which(fault.container)} made to exit at start (command: exit 1)`;
    case 'env':
      return `env ${fault.name} set on container ${which(fault.container)} (its value is not recorded)`;
    case 'patch':
      return `strategic-merge patch of ${patchPaths(fault.patch.spec.template).join(', ') || 'spec.template'}`;
  }
}

/** The pod template with the fault (image, crash, env) applied; the template given is not changed. */
export function faultedTemplate(template: KubeObject['spec'], fault: Exclude<Fault, { kind: 'patch' }>): KubeObject['spec'] {
  const t = structuredClone(template ?? {});
  const c = pick(t, fault.container);
  switch (fault.kind) {
    case 'image':
      c.image = fault.image ?? withTag(c.image ?? '', UNPULLABLE_TAG);
      break;
    case 'crash':
      c.command = [...CRASH_COMMAND];
      delete c.args;
      break;
    case 'env': {
      const env = (c.env ?? []).filter((e) => e.name !== fault.name);
      env.push({ name: fault.name, value: fault.value });
      c.env = env;
      break;
    }
  }
  return t;
}

/** A fault checked by the API server's dry run, ready to be written. */
export interface PreparedFault {
  /** the fingerprint (templateHash) of the pod template the fault writes, as the dry run answered it */
  templateHash: string;
  /**
   * Writes it. Throws FaultError when the API server refused it (nothing written); any other error
   * may have come after the write landed (no answer, 408, 5xx: see refusedByServer).
   */
  write(): Promise<KubeObject>;
}

/**
 * Checks the fault on the workload `obj` (as read by the drill) with a server-side dry run, with
 * `changeCause` as its kubernetes.io/change-cause. Throws FaultError (nothing written) when the API
 * server refuses it or it would change nothing; whatever it throws, nothing was written.
 */
export async function prepareFault(kube: Kube, ref: WorkloadRef, obj: KubeObject, fault: Fault, changeCause: string, signal?: AbortSignal): Promise<PreparedFault> {
  const rt = RESOURCE[ref.kind];
  let body: unknown;
  let type: 'json' | 'strategic';
  if (fault.kind === 'patch') {
    type = 'strategic';
    body = { metadata: { resourceVersion: obj.metadata.resourceVersion, annotations: { [CHANGE_CAUSE]: changeCause } }, spec: { template: fault.patch.spec.template } };
  } else {
    type = 'json';
    const annotations = obj.metadata.annotations;
    body = [
      { op: 'test', path: '/metadata/generation', value: obj.metadata.generation },
      { op: 'replace', path: '/spec/template', value: faultedTemplate(obj.spec?.template, fault) },
      annotations ? { op: 'add', path: `/metadata/annotations/${CHANGE_CAUSE.replace('/', '~1')}`, value: changeCause } : { op: 'add', path: '/metadata/annotations', value: { [CHANGE_CAUSE]: changeCause } },
    ];
  }
  const field = fault.kind === 'patch' ? 'fault.patch' : 'fault';
  const write = async (dryRun: boolean) => {
    try {
      return await kube.patch(rt, ref.namespace, ref.name, body, type, { dryRun, ...(signal ? { signal } : {}) });
    } catch (err) {
      // 408: the server gave up waiting, and a write may still have landed (refusedByServer)
      if (refusedByServer(err) && err.status !== 401 && err.status !== 403) {
        const { status, message } = err;
        const why = isConflict(err, type === 'json' ? ({ precondition: 'json-test' } as PlannedWrite) : undefined) ? `${ref.kind} ${ref.namespace}/${ref.name} changed while the drill was starting; start it again` : message;
        throw new FaultError(field, `the API server refused the fault (${status}): ${why}; nothing was changed`);
      }
      throw err;
    }
  };
  const dry = await write(true);
  const hash = templateHash(ref.kind, dry.spec?.template);
  if (hash === templateHash(ref.kind, obj.spec?.template)) {
    throw new FaultError(field, `the fault leaves the pod template of ${ref.kind} ${ref.namespace}/${ref.name} as it is (no new revision to roll back); nothing was changed`);
  }
  return { templateHash: hash, write: () => write(false) };
}

/**
 * Writes the fault as a new revision of the workload `obj` (as read by the drill), with `changeCause`
 * as its kubernetes.io/change-cause. Returns the workload as the API server answered the write.
 * Throws FaultError (nothing written) when the API server refuses it or it would change nothing.
 */
export async function applyFault(kube: Kube, ref: WorkloadRef, obj: KubeObject, fault: Fault, changeCause: string, signal?: AbortSignal): Promise<KubeObject> {
  return (await prepareFault(kube, ref, obj, fault, changeCause, signal)).write();
}
