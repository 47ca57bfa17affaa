import { LocalPrometheus } from '../../src/prometheus/local.js';
import { toOpenMetrics } from '../../src/cli/series.js';

/**
 * Starts Debian's `prometheus` on a free 127.0.0.1 port with a temporary TSDB backfilled with the
 * given series (promtool tsdb create-blocks-from openmetrics), and stops it on teardown.
 * A missing binary fails the test loudly: it is never skipped. Query at the backfilled times.
 */

export interface TestSeries {
  metric: string;
  labels?: Record<string, string>;
  /** [ms, value] pairs */
  samples: Array<[number, number]>;
}

export interface Teardownable {
  teardown(fn: () => unknown): void;
}

export async function startPrometheus(t: Teardownable, series: TestSeries[] = []): Promise<LocalPrometheus> {
  const om = series.length
    ? toOpenMetrics(series.map((s) => ({ metric: s.metric, labels: s.labels ?? {}, samples: s.samples.map(([t, v]) => ({ t, v })) })))
    : undefined;
  const prom = await LocalPrometheus.start(om === undefined ? {} : { openMetrics: om });
  t.teardown(() => prom.stop());
  return prom;
}

/** Samples every `stepMs` from `startMs`, value from `f(i, tMs)` (undefined = no sample). */
export function samples(startMs: number, count: number, stepMs: number, f: (i: number, t: number) => number | undefined): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < count; i++) {
    const t = startMs + i * stepMs;
    const v = f(i, t);
    if (v !== undefined) out.push([t, v]);
  }
  return out;
}

/**
 * http_requests_total of namespace `namespace` with a steady error rate (20 % by default: 100
 * requests per 15 s step, `errorPercent` of them code 500, the rest 200), for `count` steps from
 * `startMs`: an error_rate trigger over it is confirmed at any time in the window.
 */
export function errorRateSeries(startMs: number, opts: { namespace?: string; count?: number; errorPercent?: number } = {}): TestSeries[] {
  const namespace = opts.namespace ?? 'prod';
  const count = opts.count ?? 720;
  const bad = opts.errorPercent ?? 20;
  const counter = (perStep: number) => samples(startMs, count, 15_000, (i) => i * perStep);
  return [
    { metric: 'http_requests_total', labels: { namespace, code: '500' }, samples: counter(bad) },
    { metric: 'http_requests_total', labels: { namespace, code: '200' }, samples: counter(100 - bad) },
  ];
}
