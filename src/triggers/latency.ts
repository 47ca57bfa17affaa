import { z } from 'zod';
import { durationSchema, promqlDuration } from '../rules/duration.js';
import { seriesRenderer } from './promql.js';
import { metricName, selectorField, type TriggerKind } from './types.js';

/**
 * latency: a quantile (0.95 or 0.99) of a Prometheus histogram, in seconds.
 *   histogram_quantile(QUANTILE, sum by (le) (rate(METRIC_bucket{SELECTOR}[RATE_WINDOW])))
 * `metric` is the histogram's base name (without _bucket).
 */
export const latency: TriggerKind = {
  kind: 'latency',
  summary: 'p95 or p99 of a latency histogram, in seconds',
  fields: {
    metric: metricName.default('http_request_duration_seconds'),
    quantile: z.union([z.literal(0.95), z.literal(0.99)]).default(0.99),
    rateWindow: durationSchema.default(60_000),
    selector: selectorField,
  },
  compile(f) {
    const bucket = `${f.metric as string}_bucket`;
    const series = seriesRenderer([bucket], f.selector);
    const w = promqlDuration(f.rateWindow as number);
    return (labels) => `histogram_quantile(${f.quantile as number}, sum by (le) (rate(${series(bucket, labels)}[${w}])))`;
  },
};
