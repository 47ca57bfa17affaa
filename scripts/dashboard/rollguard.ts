/**
 * The Grafana dashboard the chart ships (helm/rollguard/dashboards/rollguard.json), built with
 * Grafana's own Foundation SDK: `npm run dashboard` writes the JSON, and
 * test/integration/dashboard.test.ts fails when the committed file differs from what this builds
 * (and runs every query against a real Prometheus).
 *
 * It uses the SDK's classic dashboard schema (`dashboard`, the JSON every Grafana and the chart's
 * ConfigMap sidecar load) rather than `dashboardv2`, which only Grafana 12's v2 API takes.
 *
 * Adding a panel: one entry in a row below, with its PromQL; ids, refIds and grid positions are
 * given here, rows wrap panels at 24 columns (the SDK's layout).
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import { AnnotationQueryBuilder, DashboardBuilder, DatasourceVariableBuilder, QueryVariableBuilder, RowBuilder, ThresholdsConfigBuilder, ThresholdsMode, VariableRefresh, VariableSort, type Dashboard, type Threshold } from '@grafana/grafana-foundation-sdk/dashboard';
import { PanelBuilder as BarGaugeBuilder } from '@grafana/grafana-foundation-sdk/bargauge';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatBuilder } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TimeseriesBuilder } from '@grafana/grafana-foundation-sdk/timeseries';

const DS = { type: 'prometheus', uid: '${datasource}' };

/** The runbook's targets, in seconds: detect < 5 min, decide < 10 min, roll back < 15 min, recover < 30 min. */
const TARGET = { detect: 300, decide: 600, rollback: 900, recover: 1800 } as const;
/** The rollback runbook's drills: practise a rollback quarterly; a drill recovers in under 5 minutes. */
const DRILL = { every: 90 * 86_400, recover: 300 } as const;

interface Query {
  expr: string;
  legend: string;
}

interface PanelSpec {
  kind: 'stat' | 'timeseries' | 'bargauge';
  title: string;
  description: string;
  w: number;
  h: number;
  unit: string;
  queries: Query[];
  /** threshold steps after the base colour: [base colour, ...[colour, value]] */
  thresholds?: [string, ...Array<[string, number]>];
  /** timeseries: draw the thresholds as lines (the target line) */
  thresholdLine?: boolean;
  min?: number;
  max?: number;
}

interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

const mean = (metric: string) => `sum(increase(${metric}_sum[$__range])) / sum(increase(${metric}_count[$__range]))`;
const quantile = (q: number, metric: string, fn = 'increase') => `histogram_quantile(${q}, sum by (le) (${fn}(${metric}_bucket[$__rate_interval])))`;
const within = (metric: string, le: number) => `sum(increase(${metric}_bucket{le="${le}"}[$__range])) / sum(increase(${metric}_count[$__range]))`;
const redAbove = (v: number): PanelSpec['thresholds'] => ['green', ['red', v]];

function meanStat(title: string, metric: string, target: number, description: string): PanelSpec {
  return { kind: 'stat', title, description, w: 6, h: 4, unit: 's', thresholds: redAbove(target), queries: [{ expr: mean(metric), legend: 'mean' }] };
}

function quantiles(title: string, metric: string, target: number, what: string): PanelSpec {
  return {
    kind: 'timeseries',
    title,
    description: `Quantiles estimated from the histogram buckets; the red line is the runbook's ${what} target (${target}s).`,
    w: 8,
    h: 7,
    unit: 's',
    thresholds: redAbove(target),
    thresholdLine: true,
    queries: [
      { expr: quantile(0.9, metric), legend: 'p90' },
      { expr: quantile(0.5, metric), legend: 'p50' },
    ],
  };
}

export const ROWS: RowSpec[] = [
  {
    title: "Recovery against the runbook's targets (TTD < 5m, decide < 10m, TTR < 15m, MTTR < 30m)",
    panels: [
      meanStat('MTTR (mean, target < 30m)', 'rollguard_time_to_recover_seconds', TARGET.recover, "From the alert starting to the service verified healthy or the alert resolved, averaged over the dashboard's range. The runbook's target: mean time to recover < 30 min."),
      meanStat('Time to detect (mean, target < 5m)', 'rollguard_time_to_detect_seconds', TARGET.detect, "From the alert starting (startsAt) to rollguard receiving it. The runbook's target: time to detect < 5 min."),
      meanStat('Time to decide (mean, target < 10m)', 'rollguard_time_to_decide_seconds', TARGET.decide, "From receiving the alert to the rollback decision. The runbook's target: time to decide < 10 min."),
      meanStat('Time to rollback (mean, target < 15m)', 'rollguard_time_to_rollback_seconds', TARGET.rollback, "From the decision to the rollout complete. The runbook's target: time to rollback < 15 min."),
      quantiles('MTTR p90 (target line 30m)', 'rollguard_time_to_recover_seconds', TARGET.recover, 'MTTR'),
      quantiles('TTD p90 (target line 5m)', 'rollguard_time_to_detect_seconds', TARGET.detect, 'time-to-detect'),
      quantiles('TTR p90 (target line 15m)', 'rollguard_time_to_rollback_seconds', TARGET.rollback, 'time-to-rollback'),
      {
        kind: 'bargauge',
        title: 'Rollbacks within target (share, over the range)',
        description: "Share of rollbacks that met each of the runbook's targets over the dashboard's range.",
        w: 24,
        h: 5,
        unit: 'percentunit',
        min: 0,
        max: 1,
        thresholds: ['red', ['orange', 0.9], ['green', 0.99]],
        queries: [
          { expr: within('rollguard_time_to_detect_seconds', TARGET.detect), legend: 'detected < 5m' },
          { expr: within('rollguard_time_to_decide_seconds', TARGET.decide), legend: 'decided < 10m' },
          { expr: within('rollguard_time_to_rollback_seconds', TARGET.rollback), legend: 'rolled back < 15m' },
          { expr: within('rollguard_time_to_recover_seconds', TARGET.recover), legend: 'recovered < 30m' },
        ],
      },
    ],
  },
  {
    title: 'Rollbacks and guards',
    panels: [
      {
        kind: 'timeseries',
        title: 'Rollbacks by outcome',
        description: 'Rollbacks that reached an end, by outcome (succeeded, failed, unverified, dry_run, refused, blocked, ...).',
        w: 12,
        h: 8,
        unit: 'short',
        queries: [{ expr: 'sum by (outcome) (increase(rollguard_rollbacks_total{namespace=~"$namespace"}[$__rate_interval]))', legend: '{{outcome}}' }],
      },
      {
        kind: 'bargauge',
        title: 'Rollbacks by rule and outcome (over the range)',
        description: "Rollbacks that reached an end over the dashboard's range, by rule and outcome.",
        w: 12,
        h: 8,
        unit: 'short',
        thresholds: ['blue'],
        queries: [{ expr: 'sum by (rule, outcome) (increase(rollguard_rollbacks_total{namespace=~"$namespace"}[$__range]))', legend: '{{rule}} {{outcome}}' }],
      },
      {
        kind: 'timeseries',
        title: 'Guard blocks by guard',
        description: 'Rollbacks stopped by a guard (cooldown, budget, lock, pause, scope, approval, dry-run, ...).',
        w: 12,
        h: 7,
        unit: 'short',
        queries: [{ expr: 'sum by (guard) (increase(rollguard_guard_blocked_total[$__rate_interval]))', legend: '{{guard}}' }],
      },
      {
        kind: 'stat',
        title: 'Pending approvals',
        description: 'Rollbacks waiting for a human approval (max over replicas: each reports what it last saw). `rollguard rollbacks list --state pending_approval` lists them.',
        w: 4,
        h: 7,
        unit: 'short',
        thresholds: ['green', ['orange', 1]],
        queries: [{ expr: 'max(rollguard_pending_approvals)', legend: 'pending' }],
      },
      {
        kind: 'stat',
        title: 'Rollbacks in progress',
        description: 'Rollbacks being executed or verified now, over all replicas.',
        w: 4,
        h: 7,
        unit: 'short',
        thresholds: ['green', ['orange', 1]],
        queries: [{ expr: 'sum(rollguard_rollbacks_in_progress)', legend: 'in progress' }],
      },
      {
        kind: 'stat',
        title: 'Since the last rollback',
        description: 'Time since rollguard last changed the cluster to roll something back.',
        w: 4,
        h: 7,
        unit: 's',
        thresholds: ['orange', ['green', 3600]],
        queries: [{ expr: 'time() - max(rollguard_last_rollback_timestamp_seconds > 0)', legend: 'since' }],
      },
      {
        kind: 'timeseries',
        title: 'Escalations by reason',
        description: 'Rollbacks handed to humans: failed (service not recovered), interrupted, dead events.',
        w: 24,
        h: 6,
        unit: 'short',
        thresholds: redAbove(1),
        thresholdLine: true,
        queries: [{ expr: 'sum by (reason) (increase(rollguard_escalations_total[$__rate_interval]))', legend: '{{reason}}' }],
      },
    ],
  },
  {
    title: 'Alertmanager webhook',
    panels: [
      {
        kind: 'timeseries',
        title: 'Webhook requests by code',
        description: 'Requests per second on POST /v1/alerts by HTTP status; 503 means the store was unavailable and Alertmanager retries.',
        w: 12,
        h: 8,
        unit: 'reqps',
        queries: [{ expr: 'sum by (code) (rate(rollguard_webhook_requests_total[$__rate_interval]))', legend: '{{code}}' }],
      },
      {
        kind: 'timeseries',
        title: 'Webhook latency',
        description: 'Time to answer Alertmanager, durable queueing included.',
        w: 12,
        h: 8,
        unit: 's',
        queries: [
          { expr: quantile(0.99, 'rollguard_webhook_request_duration_seconds', 'rate'), legend: 'p99' },
          { expr: quantile(0.5, 'rollguard_webhook_request_duration_seconds', 'rate'), legend: 'p50' },
          { expr: 'sum(rate(rollguard_webhook_request_duration_seconds_sum[$__rate_interval])) / sum(rate(rollguard_webhook_request_duration_seconds_count[$__rate_interval]))', legend: 'mean' },
        ],
      },
      {
        kind: 'timeseries',
        title: 'Alerts left out by max_alerts',
        description:
          "Alerts a receiver's max_alerts left out of webhook notifications (truncatedAlerts), those fetched back from Alertmanager's API (ALERTMANAGER_URL) and queued, fetches that failed, and fetches stopped by a full queue (the rest wait for the group's next resend). Left out but never fetched: raise or remove max_alerts, or set ALERTMANAGER_URL.",
        w: 12,
        h: 6,
        unit: 'short',
        queries: [
          { expr: 'sum(increase(rollguard_alerts_truncated_total[$__rate_interval]))', legend: 'left out' },
          { expr: 'sum(increase(rollguard_alerts_recovered_total[$__rate_interval]))', legend: 'fetched and queued' },
          { expr: 'sum(increase(rollguard_alertmanager_fetches_total{outcome="failed"}[$__rate_interval]))', legend: 'fetches failed' },
          { expr: 'sum(increase(rollguard_alertmanager_fetches_total{outcome="queue_full"}[$__rate_interval]))', legend: 'fetches stopped by a full queue' },
        ],
      },
      {
        kind: 'timeseries',
        title: 'Alerts refused by an intake limit',
        description:
          'Alerts not queued because they pass a per-alert limit (too many labels, a label, fingerprint or generatorURL over ALERT_MAX_LABEL_BYTES, or all of them together over ALERT_MAX_BYTES), by setting: those of webhook batches (the rest of the batch is queued) and those fetched back from Alertmanager. Each is an alert rollguard never acts on: the warning log names the group and the alert; raise the setting or fix the labels its source sends.',
        w: 12,
        h: 6,
        unit: 'short',
        thresholds: redAbove(1),
        thresholdLine: true,
        queries: [
          { expr: 'sum by (limit) (increase(rollguard_alerts_refused_total[$__rate_interval]))', legend: 'webhook {{limit}}' },
          { expr: 'sum by (limit) (increase(rollguard_alertmanager_alerts_refused_total[$__rate_interval]))', legend: 'fetched {{limit}}' },
        ],
      },
      {
        kind: 'timeseries',
        title: 'Calls waiting their turn at Prometheus and the API server',
        description:
          "Queries and reads waiting because a replica's bound of calls at once is reached (PROMETHEUS_MAX_CONCURRENT, KUBE_MAX_CONCURRENT_READS), P0 alerts' first. Above 0 for long during a storm: the dependency, not rollguard's queue, sets the pace; a query that waits all of PROMETHEUS_TIMEOUT counts as Prometheus down.",
        w: 12,
        h: 6,
        unit: 'short',
        queries: [{ expr: 'sum by (dependency) (rollguard_dependency_calls_waiting)', legend: '{{dependency}}' }],
      },
    ],
  },
  {
    title: 'GitOps owners (Argo CD, Flux)',
    panels: [
      {
        kind: 'stat',
        title: 'Owners left suspended',
        description:
          'Argo CD Applications and Flux Kustomizations / HelmReleases that rollbacks suspended and nobody resumed through rollguard yet (every replica reports the same count, read from the store). Revert the bad commit in git, then `rollguard rollbacks resume-gitops ID`.',
        w: 4,
        h: 7,
        unit: 'short',
        thresholds: ['green', ['orange', 1]],
        queries: [{ expr: 'max(rollguard_gitops_suspended)', legend: 'suspended' }],
      },
      {
        kind: 'timeseries',
        title: 'Owners suspended by kind',
        description: "GitOps owners suspended before a rollback's write (gitops: suspend): Argo CD automated sync turned off, Flux spec.suspend set.",
        w: 10,
        h: 7,
        unit: 'short',
        queries: [{ expr: 'sum by (owner_kind) (increase(rollguard_gitops_suspensions_total[$__rate_interval]))', legend: '{{owner_kind}}' }],
      },
      {
        kind: 'timeseries',
        title: 'Rollbacks re-applied by their owner',
        description: 'Rollbacks that verification failed because the target was changed back after the write ("re-applied by"), by the kind of owner whose controller wrote it (unknown: another writer). With gitops: ignore, the owner corrects drift: use suspend.',
        w: 10,
        h: 7,
        unit: 'short',
        thresholds: redAbove(1),
        thresholdLine: true,
        queries: [{ expr: 'sum by (owner_kind) (increase(rollguard_gitops_reapplied_total[$__rate_interval]))', legend: '{{owner_kind}}' }],
      },
    ],
  },
  {
    title: "Rollback drills (the runbook: practise quarterly, recover in under 5m)",
    panels: [
      {
        kind: 'bargauge',
        title: 'Since the last drill, per target (and its result)',
        description: "Time since each target's last drill ended, labelled with that drill's result (the newest over all replicas). Orange: no drill for a quarter, the runbook's practice interval.",
        w: 12,
        h: 7,
        unit: 's',
        thresholds: ['green', ['orange', DRILL.every]],
        queries: [{ expr: 'time() - topk by (target) (1, max by (target, result) (rollguard_drill_last_end_timestamp_seconds))', legend: '{{target}} ({{result}})' }],
      },
      {
        kind: 'stat',
        title: 'Drills by result (over the range)',
        description: "Drills that ended over the dashboard's range: passed (back on the pre-drill revision, healthy, trigger cleared in time) or failed (a link broke; the drill restored the workload itself).",
        w: 4,
        h: 7,
        unit: 'short',
        thresholds: ['blue'],
        queries: [{ expr: 'sum by (result) (increase(rollguard_drills_total[$__range]))', legend: '{{result}}' }],
      },
      { ...quantiles('Drill time to recover p90 (target line 5m)', 'rollguard_drill_time_to_recover_seconds', DRILL.recover, 'drill time-to-recover'), w: 8 },
    ],
  },
];

function thresholds(spec: NonNullable<PanelSpec['thresholds']>): ThresholdsConfigBuilder {
  const [base, ...steps] = spec;
  const all: Threshold[] = [{ color: base, value: null as unknown as number }, ...steps.map(([color, value]) => ({ color, value }))];
  return new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(all);
}

function panel(spec: PanelSpec, id: number) {
  const targets = spec.queries.map((q, i) => new DataqueryBuilder().refId(String.fromCharCode(65 + i)).datasource(DS).expr(q.expr).legendFormat(q.legend).range());
  const reduce = new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).fields('').values(false);
  const base = <B extends StatBuilder | TimeseriesBuilder | BarGaugeBuilder>(b: B): B => {
    b.id(id).title(spec.title).description(spec.description).datasource(DS).span(spec.w).height(spec.h).unit(spec.unit);
    if (spec.thresholds) b.thresholds(thresholds(spec.thresholds));
    if (spec.min !== undefined) b.min(spec.min);
    if (spec.max !== undefined) b.max(spec.max);
    for (const t of targets) b.withTarget(t);
    return b;
  };
  switch (spec.kind) {
    case 'stat':
      return base(new StatBuilder())
        .reduceOptions(reduce)
        .colorMode(common.BigValueColorMode.Background)
        .graphMode(common.BigValueGraphMode.None)
        .textMode(common.BigValueTextMode.ValueAndName)
        .orientation(common.VizOrientation.Auto)
        .justifyMode(common.BigValueJustifyMode.Auto);
    case 'bargauge':
      return base(new BarGaugeBuilder()).reduceOptions(reduce).orientation(common.VizOrientation.Horizontal).displayMode(common.BarGaugeDisplayMode.Basic).showUnfilled(true);
    case 'timeseries':
      return base(new TimeseriesBuilder())
        .drawStyle(common.GraphDrawStyle.Line)
        .lineWidth(1)
        .fillOpacity(10)
        .showPoints(common.VisibilityMode.Never)
        .thresholdsStyle(new common.GraphThresholdsStyleConfigBuilder().mode(spec.thresholdLine ? common.GraphThresholdsStyleMode.Line : common.GraphThresholdsStyleMode.Off))
        .legend(new common.VizLegendOptionsBuilder().displayMode(common.LegendDisplayMode.List).placement(common.LegendPlacement.Bottom).showLegend(true))
        .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.None));
  }
}

export function buildDashboard(): Dashboard {
  const b = new DashboardBuilder('rollguard')
    .uid('rollguard-overview')
    .description("rollguard: Prometheus alerts to guarded, audited Kubernetes rollbacks. Times against the rollback runbook's targets, rollbacks, guards, approvals, the Alertmanager webhook, GitOps owners, drills.")
    .tags(['rollguard', 'rollback', 'kubernetes'])
    .editable()
    .tooltip(1)
    .time({ from: 'now-24h', to: 'now' })
    .refresh('30s')
    .timezone('utc')
    .annotation(new AnnotationQueryBuilder().name('Annotations & Alerts').builtIn(1).datasource({ type: 'grafana', uid: '-- Grafana --' }).enable(true).hide(true).iconColor('rgba(0, 211, 255, 1)').type('dashboard'))
    .withVariable(new DatasourceVariableBuilder('datasource').label('Prometheus').type('prometheus'))
    .withVariable(
      new QueryVariableBuilder('namespace')
        .label('Namespace')
        .datasource(DS)
        .query('label_values(rollguard_rollbacks_total, namespace)')
        .definition('label_values(rollguard_rollbacks_total, namespace)')
        .includeAll(true)
        .allValue('.*')
        .multi(true)
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc),
    );
  let id = 0;
  for (const row of ROWS) {
    b.withRow(new RowBuilder(row.title).id(++id));
    for (const p of row.panels) b.withPanel(panel(p, ++id));
  }
  return b.build();
}

/** The JSON file's text: two-space indentation and a final newline. */
export function dashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}
