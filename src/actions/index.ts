// The registry of rollback kinds: one line per kind. The rule schema (src/rules/targets.ts), the
// manual API's options (parseOptions) and the action list all follow from it.
import { z } from 'zod';
import type { Action, ActionDeps, KindDefinition } from './action.js';
import { rolloutKind } from './argo-rollout.js';
import { blueGreenKind } from './blue-green.js';
import { canaryKind } from './canary.js';
import { configMapKind } from './configmap.js';
import { daemonSetKind } from './daemonset.js';
import { deploymentKind } from './deployment.js';
import { helmReleaseKind } from './helm.js';
import { virtualServiceKind } from './istio.js';
import { statefulSetKind } from './statefulset.js';

export const KINDS = [
  deploymentKind,
  statefulSetKind,
  daemonSetKind,
  rolloutKind,
  blueGreenKind,
  canaryKind,
  virtualServiceKind,
  helmReleaseKind,
  configMapKind,
] as const;

type Def = (typeof KINDS)[number];
/** Each kind's options (TargetRef.options), by kind name. */
export type KindOptions = { [D in Def as D['kind']]: D extends KindDefinition<string, infer O> ? O : never };

export type { Action, ActionContext, ExecuteResult, RollbackPlan, TargetKind, TargetRef, VerifyResult } from './action.js';
export { putBackBefore, writtenObjects, wroteNothing, type WrittenObject } from './common.js';
import type { TargetKind } from './action.js';

/** Every kind name, in registry order (for z.enum). */
export const targetKinds = KINDS.map((k) => k.kind) as unknown as [TargetKind, ...TargetKind[]];

const byKind = new Map<string, KindDefinition>(KINDS.map((k) => [k.kind, k as unknown as KindDefinition]));

/** One kind's definition; throws for a name that is not a kind (the schemas keep those out). */
export function kindDefinition(kind: TargetKind): KindDefinition {
  const d = byKind.get(kind);
  if (!d) throw new Error(`unknown rollback kind ${JSON.stringify(kind)}`);
  return d;
}

/** Every action kind; pass helm options (binary, kubeconfig) when rollguard's cluster is not helm's default. */
export function createActions(deps: ActionDeps = {}): Record<TargetKind, Action> {
  return Object.fromEntries(KINDS.map((k) => [k.kind, k.create(deps)])) as Record<TargetKind, Action>;
}

/** Options that are not what their kind takes: `field` is the path under `options` ("stableReplicas"). */
export class OptionsError extends Error {
  override readonly name = 'OptionsError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A kind's options as given by a person or a program (POST /v1/rollbacks `options`), through the
 * kind's own schema: the validated options, or OptionsError naming the first bad field
 * ("options.stable: expected a DNS-1123 subdomain …", "options.colour: not an option of BlueGreen").
 */
export function parseOptions<K extends TargetKind>(kind: K, options: unknown): KindOptions[K] | undefined {
  if (options === undefined) return undefined;
  const r = kindDefinition(kind).options.safeParse(options);
  if (r.success) return r.data as KindOptions[K];
  const issue = r.error.issues[0]!;
  const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
  const field = ['options', ...issue.path.map(String), ...keys.slice(0, 1)].join('.');
  const message = keys.length
    ? `${field}: not an option of ${kind} (it takes ${Object.keys((kindDefinition(kind).options as unknown as z.ZodObject).shape ?? {}).join(', ') || 'none'})`
    : `${field}: ${issue.message}`;
  throw new OptionsError(field, message);
}
