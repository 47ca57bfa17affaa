import type { Alert } from '../alertmanager/alert.js';
import type { Metrics } from '../metrics.js';
import {
  PrometheusBusyError,
  PrometheusQueryError,
  PrometheusUnavailableError,
  type InstantSample,
  type PrometheusApi,
} from '../prometheus/client.js';
import { promqlDuration } from '../rules/duration.js';
import type { OnPrometheusDown, Rule } from '../rules/schema.js';
import { MissingLabelError } from '../rules/template.js';
import { judge, type Judgement } from '../triggers/judge.js';
import { laneOf } from '../store/store.js';

/**
 * Confirming a matched rule's trigger against Prometheus before acting, so that a stale or
 * flapping alert rolls nothing back.
 *
 * The trigger's query is evaluated with query_range over [now - for, now] at the trigger's step;
 * the condition must hold at every sample, with enough samples (see triggers/judge.ts). With a
 * baseline, the same query is first averaged (avg_over_time subquery) over the baseline window
 * ending just before the rollout began (relativeTo: rollout_start, needs `rolloutStartedAt`) or
 * ending `offset` before now (relativeTo: offset), and the threshold is a factor of it.
 *
 * When Prometheus is down (unreachable, no answer within PROMETHEUS_TIMEOUT, a 5xx without
 * Prometheus' JSON error, its error `unavailable`), the outcome is `prometheus_down` and
 * `onPrometheusDown` carries the rule's policy (act / hold / notify) for the decision tree. An
 * answer that is an error (a query Prometheus rejects or cannot answer: its JSON error at any
 * status, `timeout` at 503 included; an auth proxy's 401/403, a 413, any other 4xx; see
 * prometheus/client.ts) is `error`: held and escalated, never acted on. A query that
 * never got its turn (PROMETHEUS_MAX_CONCURRENT in flight for all of PROMETHEUS_TIMEOUT:
 * PrometheusBusyError) is `prometheus_down` held for a re-check, whatever onPrometheusDown says:
 * Prometheus was answering, rollguard was asking faster, and that never decides a rollback
 * unconfirmed. Reasons name Prometheus by its redacted URL, never its credentials.
 */

export type ConfirmOutcome = 'confirmed' | 'not_confirmed' | 'insufficient_data' | 'prometheus_down' | 'error';

export interface Confirmation {
  rule: string;
  outcome: ConfirmOutcome;
  reason: string;
  /** the rule's policy, set when outcome is prometheus_down */
  onPrometheusDown?: OnPrometheusDown;
  /**
   * prometheus_down because a query got no turn (PrometheusBusyError): Prometheus was answering,
   * rollguard asked faster. Held whatever onPrometheusDown says; counted as outcome prometheus_busy.
   */
  busy?: true;
  /** the PromQL evaluated (absent when it could not be built for this alert) */
  query?: string;
  /** the evaluation time and window, ms */
  evaluatedAt: number;
  window: { startMs: number; endMs: number; stepMs: number };
  baseline?: { query: string; atMs: number; value?: number };
  /** the rollout start a baseline relativeTo rollout_start was read before (the input's): the record keeps it for the recovery check */
  rolloutStartedAt?: number;
  /** the last value of the deciding series, and the limit it was compared with */
  value?: number;
  limit?: number;
  judgement?: Judgement;
}

export interface ConfirmInput {
  rule: Rule;
  alert: Pick<Alert, 'labels'>;
  /** evaluation time, ms (tests evaluate at backfilled times) */
  now: number;
  /** when the target's current rollout began, ms (needed by baseline relativeTo: rollout_start) */
  rolloutStartedAt?: number;
}

export interface ConfirmDeps {
  prometheus: PrometheusApi;
  metrics?: Pick<Metrics, 'triggerConfirmations'>;
}

export async function confirmTrigger(input: ConfirmInput, deps: ConfirmDeps): Promise<Confirmation> {
  const c = await evaluate(input, deps);
  deps.metrics?.triggerConfirmations.inc({ rule: input.rule.name, outcome: c.busy ? 'prometheus_busy' : c.outcome });
  return c;
}

function labelKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== '__name__').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

async function evaluate(input: ConfirmInput, deps: ConfirmDeps): Promise<Confirmation> {
  const { rule, now } = input;
  const t = rule.trigger;
  const window = { startMs: now - t.forMs, endMs: now, stepMs: t.stepMs };
  const base: Confirmation = { rule: rule.name, outcome: 'error', reason: '', evaluatedAt: now, window };

  let query: string;
  try {
    query = t.query(input.alert.labels);
  } catch (e) {
    if (e instanceof MissingLabelError) return { ...base, reason: `cannot build the query for this alert: ${e.message}` };
    throw e;
  }
  base.query = query;
  // past PROMETHEUS_MAX_CONCURRENT queries in flight, the rule's priority sets who goes first (src/turns.ts)
  const turn = { precedence: laneOf(input.rule.priority) };

  const down = (e: PrometheusUnavailableError): Confirmation =>
    e instanceof PrometheusBusyError
      ? { ...base, outcome: 'prometheus_down', onPrometheusDown: 'hold', busy: true, reason: `${e.message}; held for a re-check whatever onPrometheusDown (${rule.onPrometheusDown}) says: Prometheus is answering, only slower than rollguard asks` }
      : { ...base, outcome: 'prometheus_down', onPrometheusDown: rule.onPrometheusDown, reason: `${e.message}; onPrometheusDown: ${rule.onPrometheusDown}` };

  try {
    let baselineOf: ((labels: Record<string, string>) => number | undefined) | undefined;
    if (t.baseline) {
      const b = t.baseline;
      let atMs: number;
      if (b.relativeTo === 'rollout_start') {
        if (input.rolloutStartedAt === undefined) {
          return { ...base, outcome: 'insufficient_data', reason: 'baseline relativeTo rollout_start, but the rollout start time is unknown' };
        }
        atMs = input.rolloutStartedAt - 1000;
        base.rolloutStartedAt = input.rolloutStartedAt;
      } else atMs = now - (b.offsetMs ?? 0);
      const bq = `avg_over_time((${query})[${promqlDuration(b.windowMs)}:${promqlDuration(t.stepMs)}])`;
      const samples = await deps.prometheus.query(bq, atMs, turn);
      // NaN and ±Inf are no baseline (x/0): one of +Inf would let every value meet a '<' threshold
      const finite = samples.filter((s) => Number.isFinite(s.v));
      base.baseline = { query: bq, atMs };
      if (finite.length === 0) {
        return { ...base, outcome: 'insufficient_data', reason: `no baseline: the query had no data (or only NaN or ±Inf) in the ${promqlDuration(b.windowMs)} before ${new Date(atMs).toISOString()}` };
      }
      const byKey = new Map(finite.map((s: InstantSample) => [labelKey(s.labels), s.v]));
      baselineOf = (labels) => byKey.get(labelKey(labels)) ?? (finite.length === 1 ? finite[0]!.v : undefined);
      if (finite.length === 1) base.baseline.value = finite[0]!.v;
    }
    const result = await deps.prometheus.queryRange(query, window.startMs, window.endMs, window.stepMs, turn);
    const j = judge(result, {
      ...window,
      op: t.op,
      threshold: t.threshold,
      minCoverage: t.minCoverage,
      ...(baselineOf ? { baseline: baselineOf } : {}),
      ...(t.baseline?.minValue !== undefined ? { minValue: t.baseline.minValue } : {}),
    });
    const out: Confirmation = { ...base, outcome: j.outcome, reason: j.reason, judgement: j };
    if (j.series?.lastValue !== undefined) out.value = j.series.lastValue;
    if (j.series?.limit !== undefined) out.limit = j.series.limit;
    if (base.baseline && j.series?.baseline !== undefined) base.baseline.value = j.series.baseline;
    return out;
  } catch (e) {
    if (e instanceof PrometheusUnavailableError) return down(e);
    if (e instanceof PrometheusQueryError) return { ...base, outcome: 'error', reason: e.message };
    throw e;
  }
}
