// Flux: which Kustomization or HelmRelease applied an object (the labels its controllers put on
// everything they apply), what its reconciliation does, and `spec.suspend` (what `flux suspend`
// and `flux resume` set).
//
// - kustomize-controller labels `kustomize.toolkit.fluxcd.io/name` and `/namespace`; it corrects
//   drift on every run (`spec.interval`) unless suspended.
// - helm-controller labels `helm.toolkit.fluxcd.io/name` and `/namespace`; it puts changed objects
//   back only with `spec.driftDetection.mode: enabled`, but an upgrade or a retry re-applies the
//   chart's revision whatever the mode.
import type { KubeObject } from '../kube/kube.js';
import type { Owner, OwnerRef } from './types.js';

export const SUSPEND_FIELD = '/spec/suspend';
const LABELS = [
  { kind: 'Kustomization', prefix: 'kustomize.toolkit.fluxcd.io' },
  { kind: 'HelmRelease', prefix: 'helm.toolkit.fluxcd.io' },
] as const;

/** The Kustomization or HelmRelease an object's Flux labels name, or null. */
export function fluxOwnerRef(obj: KubeObject): OwnerRef | null {
  const labels = obj.metadata.labels ?? {};
  for (const { kind, prefix } of LABELS) {
    const name = labels[`${prefix}/name`];
    const namespace = labels[`${prefix}/namespace`];
    if (name && namespace) return { tool: 'Flux', kind, namespace, name, via: `labels ${prefix}/name and /namespace` };
  }
  return null;
}

/** A Go duration as Flux writes intervals ("5m", "1h30m", "30s", "500ms") in ms; undefined if not one. */
export function parseGoDuration(s: unknown): number | undefined {
  if (typeof s !== 'string' || !/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s)) return undefined;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * (unit[m[2]!] ?? 0);
  return ms;
}

function words(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/** Reads the reconciliation settings of a found Kustomization or HelmRelease. */
export function describeFlux(ref: OwnerRef, obj: KubeObject, objects: string[]): Owner {
  const interval = parseGoDuration(obj.spec?.interval) ?? 10 * 60_000;
  const suspended = obj.spec?.suspend === true;
  let correctsDrift: boolean;
  let what: string;
  if (ref.kind === 'Kustomization') {
    correctsDrift = !suspended;
    what = `reconciled every ${words(interval)}, drift corrected on each run`;
  } else {
    const mode = obj.spec?.driftDetection?.mode ?? 'disabled';
    correctsDrift = !suspended && mode === 'enabled';
    what = `reconciled every ${words(interval)}, drift detection ${mode}${mode === 'enabled' ? '' : ' (an upgrade or retry still re-applies the chart)'}`;
  }
  return {
    ...ref,
    found: true,
    sync: suspended ? `suspended (spec.suspend: true); otherwise ${what}` : what,
    correctsDrift,
    paused: suspended,
    // two runs and a margin: a run started just before the rollback, and the next one
    settleMs: 2 * interval + 5_000,
    objects,
  };
}
