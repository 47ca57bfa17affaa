import type { TargetRef } from '../../actions/action.js';
import type { PrometheusApi } from '../../prometheus/client.js';
import { formatDuration, promqlDuration } from '../../rules/duration.js';
import { escapePromqlString } from '../../triggers/promql.js';

/**
 * When a target's current rollout began, at a past time, from kube-state-metrics' series: what the
 * engine reads from the cluster (the current ReplicaSet's or ControllerRevision's creation) for
 * the recent-deploy guard and for baselines relative to the rollout start.
 *
 * - Deployment: the newest ReplicaSet it owns at that time, `kube_replicaset_created` joined with
 *   `kube_replicaset_owner` (exact to the second).
 * - Otherwise (and for a Deployment without ReplicaSet series): the last change of
 *   `kube_<kind>_status_observed_generation` within the lookback, to within two minutes (a
 *   generation also changes on a scale, which counts as a rollout here). No change within the
 *   lookback: the rollout is at least that old.
 * - No such series (kube-state-metrics not scraped, another kind): unknown, and said so.
 */

export interface RolloutStart {
  /** ms; with atLeast, an upper bound (the rollout is older) */
  at?: number;
  atLeast?: boolean;
  /** where it was read: the ReplicaSet, or the series */
  source?: string;
  /** why it is unknown */
  unknown?: string;
}

const GENERATION: Partial<Record<TargetRef['kind'], { metric: string; label: string }>> = {
  Deployment: { metric: 'kube_deployment_status_observed_generation', label: 'deployment' },
  StatefulSet: { metric: 'kube_statefulset_status_observed_generation', label: 'statefulset' },
  DaemonSet: { metric: 'kube_daemonset_status_observed_generation', label: 'daemonset' },
};

export class RolloutHistory {
  private readonly cache = new Map<string, Promise<RolloutStart>>();

  /** `lookbackMs`: how far back a generation change is looked for */
  constructor(
    private readonly prometheus: PrometheusApi,
    private readonly lookbackMs: number,
  ) {}

  startOf(ref: Pick<TargetRef, 'kind' | 'namespace' | 'name'>, atMs: number): Promise<RolloutStart> {
    const key = `${ref.kind}/${ref.namespace}/${ref.name}@${Math.floor(atMs / 60_000)}`;
    let p = this.cache.get(key);
    if (!p) this.cache.set(key, (p = this.read(ref, atMs)));
    return p;
  }

  private async read(ref: Pick<TargetRef, 'kind' | 'namespace' | 'name'>, atMs: number): Promise<RolloutStart> {
    const ns = escapePromqlString(ref.namespace);
    const name = escapePromqlString(ref.name);
    if (ref.kind === 'Deployment') {
      const q =
        `max by (replicaset) (kube_replicaset_created{namespace="${ns}"})` +
        ` * on (replicaset) group_left() max by (replicaset) (kube_replicaset_owner{namespace="${ns}",owner_kind="Deployment",owner_name="${name}"})`;
      const rs = (await this.prometheus.query(q, atMs)).filter((s) => Number.isFinite(s.v)).sort((a, b) => b.v - a.v)[0];
      if (rs) return { at: rs.v * 1000, source: `ReplicaSet ${rs.labels.replicaset ?? '?'} created` };
    }
    const g = GENERATION[ref.kind];
    if (!g) return { unknown: `kube-state-metrics has no rollout series for a ${ref.kind}` };
    const sel = `${g.metric}{namespace="${ns}",${g.label}="${name}"}`;
    const changed = await this.prometheus.query(`max(max_over_time(timestamp(changes(${sel}[2m]) > 0)[${promqlDuration(this.lookbackMs)}:1m]))`, atMs);
    const at = changed.find((s) => Number.isFinite(s.v));
    if (at) return { at: at.v * 1000, source: `${g.metric} changed` };
    const present = await this.prometheus.query(`count(${sel})`, atMs);
    if (present.some((s) => s.v > 0)) {
      return { at: atMs - this.lookbackMs, atLeast: true, source: `${g.metric} unchanged for ${formatDuration(this.lookbackMs)}` };
    }
    const rsNote = ref.kind === 'Deployment' ? 'kube_replicaset_created/kube_replicaset_owner or ' : '';
    return { unknown: `no kube-state-metrics series (${rsNote}${g.metric}) for ${ref.kind} ${ref.namespace}/${ref.name} at ${new Date(atMs).toISOString()}` };
  }
}
