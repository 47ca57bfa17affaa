import { z } from 'zod';
import { kindDefinition, targetKinds, type TargetKind, type TargetRef } from '../actions/index.js';
import type { ParamCheck } from '../actions/action.js';
import { invalidName, type NameKind } from '../kube/names.js';
import { MissingLabelError, parseTemplate, renderTemplate, type Template } from './template.js';

/**
 * Rollback targets. A rule names one target or a list, rolled back in order (the runbook's "rolling
 * back multiple services"). `namespace`, `name` and `params` are label templates
 * (`{{ $labels.deployment }}`), resolved per alert. Resolved values are validated as Kubernetes
 * names, so an alert label like "../x" or "a,b" cannot name anything: the alert is refused with
 * a reason instead.
 *
 * What each kind takes is its own file's business (src/actions/<kind>.ts: its KindDefinition's
 * `name`, `revisions` and `params`, and `fromParams` onto its options); this file only applies it.
 */

export { targetKinds, type TargetKind };

export interface TargetSpec {
  kind: TargetKind;
  namespace: Template;
  name: Template;
  params: Record<string, Template>;
}

/** kubectl's --to-revision as a rule param: a revision number (absent = the previous revision). */
const checkRevision: ParamCheck = (v) => (/^[1-9]\d{0,8}$/.test(v) ? undefined : 'a revision number (1 or more)');

/** The params a kind takes, each with the check of its value. */
function paramChecks(kind: TargetKind): Record<string, ParamCheck> {
  const def = kindDefinition(kind);
  return def.revisions ? { toRevision: checkRevision, ...def.params } : def.params;
}

const templateString = z.string().transform((s, ctx) => {
  try {
    return parseTemplate(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

export const targetSchema = z
  .strictObject({
    kind: z.enum(targetKinds),
    namespace: templateString,
    name: templateString,
    params: z.record(z.string(), templateString).default({}),
  })
  .superRefine((t, ctx) => {
    // literal values are checked when the file loads
    const check = (field: (string | number)[], why: (v: string) => string | undefined, tpl: Template) => {
      if (!tpl.literal) return;
      const bad = why(tpl.source);
      if (bad) ctx.addIssue({ code: 'custom', path: field, message: `expected ${bad}, got "${tpl.source}"` });
    };
    check(['namespace'], (v) => invalidName('label', v), t.namespace);
    check(['name'], (v) => invalidName(kindDefinition(t.kind).name, v), t.name);
    const allowed = paramChecks(t.kind);
    for (const [k, v] of Object.entries(t.params)) {
      const checkParam = Object.hasOwn(allowed, k) ? allowed[k] : undefined;
      if (!checkParam) {
        const names = Object.keys(allowed);
        ctx.addIssue({
          code: 'custom',
          path: ['params', k],
          message: `unknown param for ${t.kind}${names.length ? ` (expected one of ${names.join(', ')})` : ' (it takes none)'}`,
        });
      } else check(['params', k], checkParam, v);
    }
  })
  .transform((t): TargetSpec => ({ kind: t.kind, namespace: t.namespace, name: t.name, params: t.params }));

export class TargetResolutionError extends Error {
  override name = 'TargetResolutionError';
}

/**
 * Resolves a rule's targets for an alert into what the actions take; throws TargetResolutionError
 * naming the target, field and why.
 */
export function resolveTargets(targets: readonly TargetSpec[], labels: Record<string, string>): TargetRef[] {
  return targets.map((t, i) => {
    const where = targets.length > 1 ? `target[${i}]` : 'target';
    const render = (field: string, tpl: Template, why: (v: string) => string | undefined): string => {
      let v: string;
      try {
        v = renderTemplate(tpl, labels);
      } catch (e) {
        if (e instanceof MissingLabelError) throw new TargetResolutionError(`${where}.${field}: ${e.message}`);
        throw e;
      }
      const bad = why(v);
      if (bad) throw new TargetResolutionError(`${where}.${field}: resolved to ${JSON.stringify(v)}, which is not ${bad}`);
      return v;
    };
    const def = kindDefinition(t.kind);
    const checks = paramChecks(t.kind);
    const byName = (kind: NameKind) => (v: string) => invalidName(kind, v);
    const namespace = render('namespace', t.namespace, byName('label'));
    const name = render('name', t.name, byName(def.name));
    const params: Record<string, string> = {};
    for (const [k, tpl] of Object.entries(t.params)) params[k] = render(`params.${k}`, tpl, (Object.hasOwn(checks, k) ? checks[k] : undefined) ?? byName('labelValue'));
    const { toRevision, ...rest } = params;
    const parsed = def.options.safeParse(def.fromParams(name, rest));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new TargetResolutionError(`${where}.params: ${issue?.path.join('.') || 'options'}: ${issue?.message ?? 'invalid'}`);
    }
    const options = parsed.data as Record<string, unknown>;
    return {
      kind: t.kind,
      namespace,
      name,
      ...(toRevision !== undefined ? { toRevision: Number(toRevision) } : {}),
      ...(Object.keys(options).length > 0 ? { options } : {}),
    } as TargetRef;
  });
}

/** "Deployment shop/api", "Canary shop/api-canary (canary=api-canary, stable=api)", "StatefulSet shop/db (toRevision=3)". */
export function formatTarget(t: TargetRef): string {
  const p: [string, unknown][] = [...(t.toRevision !== undefined ? [['toRevision', t.toRevision] as [string, unknown]] : []), ...Object.entries(t.options ?? {})];
  return `${t.kind} ${t.namespace}/${t.name}${p.length ? ` (${p.map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('/') : String(v)}`).join(', ')})` : ''}`;
}
