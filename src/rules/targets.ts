import { z } from 'zod';
import { MissingLabelError, parseTemplate, renderTemplate, type Template } from './template.js';

/**
 * Rollback targets. A rule names one target or a list, rolled back in order (the seeds' "rolling
 * back multiple services"). `namespace`, `name` and `params` are label templates
 * (`{{ $labels.deployment }}`), resolved per alert. Resolved values are validated as Kubernetes
 * names, so an alert label like "../x" or "a,b" cannot name anything: the alert is refused with
 * a reason instead.
 */

export const targetKinds = ['Deployment', 'StatefulSet', 'DaemonSet', 'Rollout', 'HelmRelease', 'BlueGreen', 'Canary'] as const;
export type TargetKind = (typeof targetKinds)[number];

/** params each kind accepts: BlueGreen switches Service `name`'s selector; Canary scales `name` to 0 and keeps `stable`. */
export const targetParams: Record<TargetKind, Record<string, NameKind>> = {
  // toRevision: kubectl's --to-revision (a number; absent = the previous revision)
  Deployment: { toRevision: 'labelValue' },
  StatefulSet: { toRevision: 'labelValue' },
  DaemonSet: { toRevision: 'labelValue' },
  // mode: abort (default, as `kubectl argo rollouts abort`), undo, or abort-undo
  Rollout: { toRevision: 'labelValue', mode: 'labelValue' },
  HelmRelease: { toRevision: 'labelValue' },
  BlueGreen: { selectorLabel: 'labelKey', previous: 'labelValue' },
  Canary: { stable: 'subdomain' },
};

type NameKind = 'label' | 'subdomain' | 'service' | 'helm' | 'labelKey' | 'labelValue';

export interface TargetSpec {
  kind: TargetKind;
  namespace: Template;
  name: Template;
  params: Record<string, Template>;
}

export interface ResolvedTarget {
  kind: TargetKind;
  namespace: string;
  name: string;
  params: Record<string, string>;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** Returns why `value` is not a valid name of this kind, or undefined when it is. */
export function invalidName(kind: NameKind, value: string): string | undefined {
  switch (kind) {
    case 'label':
      return value.length <= 63 && DNS1123_LABEL.test(value) ? undefined : 'a DNS-1123 label (lower-case letters, digits and "-", at most 63)';
    case 'subdomain':
      return value.length <= 253 && DNS1123_SUBDOMAIN.test(value) ? undefined : 'a DNS-1123 subdomain (lower-case letters, digits, "-" and ".", at most 253)';
    case 'service':
      return value.length <= 63 && DNS1035_LABEL.test(value) ? undefined : 'a DNS-1035 label (a Service name: starts with a letter, at most 63)';
    case 'helm':
      return value.length <= 53 && DNS1123_SUBDOMAIN.test(value) ? undefined : 'a Helm release name (DNS-1123, at most 53)';
    case 'labelKey':
      return value.length <= 317 && LABEL_KEY.test(value) ? undefined : 'a Kubernetes label key';
    case 'labelValue':
      return value.length <= 63 && LABEL_VALUE.test(value) ? undefined : 'a Kubernetes label value';
  }
}

export function nameKindFor(kind: TargetKind): NameKind {
  if (kind === 'HelmRelease') return 'helm';
  if (kind === 'BlueGreen') return 'service';
  return 'subdomain';
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
    // literal names are checked when the file loads
    const check = (field: (string | number)[], kind: NameKind, tpl: Template) => {
      if (!tpl.literal) return;
      const why = invalidName(kind, tpl.source);
      if (why) ctx.addIssue({ code: 'custom', path: field, message: `expected ${why}, got "${tpl.source}"` });
    };
    check(['namespace'], 'label', t.namespace);
    check(['name'], nameKindFor(t.kind), t.name);
    const allowed = targetParams[t.kind];
    for (const [k, v] of Object.entries(t.params)) {
      const kind = allowed[k];
      if (!kind) {
        const names = Object.keys(allowed);
        ctx.addIssue({
          code: 'custom',
          path: ['params', k],
          message: `unknown param for ${t.kind}${names.length ? ` (expected one of ${names.join(', ')})` : ' (it takes none)'}`,
        });
      } else check(['params', k], kind, v);
    }
  })
  .transform((t): TargetSpec => ({ kind: t.kind, namespace: t.namespace, name: t.name, params: t.params }));

export class TargetResolutionError extends Error {
  override name = 'TargetResolutionError';
}

/** Resolves targets for an alert; throws TargetResolutionError naming the target, field and why. */
export function resolveTargets(targets: readonly TargetSpec[], labels: Record<string, string>): ResolvedTarget[] {
  return targets.map((t, i) => {
    const where = targets.length > 1 ? `target[${i}]` : 'target';
    const render = (field: string, tpl: Template, kind: NameKind): string => {
      let v: string;
      try {
        v = renderTemplate(tpl, labels);
      } catch (e) {
        if (e instanceof MissingLabelError) throw new TargetResolutionError(`${where}.${field}: ${e.message}`);
        throw e;
      }
      const why = invalidName(kind, v);
      if (why) throw new TargetResolutionError(`${where}.${field}: resolved to ${JSON.stringify(v)}, which is not ${why}`);
      return v;
    };
    const params: Record<string, string> = {};
    for (const [k, tpl] of Object.entries(t.params)) params[k] = render(`params.${k}`, tpl, targetParams[t.kind][k] ?? 'labelValue');
    return {
      kind: t.kind,
      namespace: render('namespace', t.namespace, 'label'),
      name: render('name', t.name, nameKindFor(t.kind)),
      params,
    };
  });
}

export function formatTarget(t: ResolvedTarget): string {
  const p = Object.entries(t.params);
  return `${t.kind} ${t.namespace}/${t.name}${p.length ? ` (${p.map(([k, v]) => `${k}=${v}`).join(', ')})` : ''}`;
}
