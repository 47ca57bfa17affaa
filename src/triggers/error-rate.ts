import { z } from 'zod';
import { durationSchema, promqlDuration } from '../rules/duration.js';
import { escapePromqlString, invalidRegex, seriesRenderer } from './promql.js';
import { labelName, metricName, selectorField, TriggerFieldError, type TriggerKind } from './types.js';

/**
 * error_rate: the ratio of 5xx responses to all responses.
 *   (sum(rate(METRIC{SELECTOR,STATUS_LABEL=~"ERROR_STATUS"}[RATE_WINDOW])) or vector(0))
 *     / sum(rate(METRIC{SELECTOR}[RATE_WINDOW]))
 * `or vector(0)` makes "no 5xx series at all" a ratio of 0 rather than no data.
 */
export const errorRate: TriggerKind = {
  kind: 'error_rate',
  summary: 'ratio of error (5xx) responses to all responses',
  fields: {
    metric: metricName.default('http_requests_total'),
    statusLabel: labelName.default('code'),
    errorStatus: z.string().default('5..'),
    rateWindow: durationSchema.default(60_000),
    selector: selectorField,
  },
  compile(f) {
    const metric = f.metric as string;
    const series = seriesRenderer([metric], f.selector);
    const w = promqlDuration(f.rateWindow as number);
    const bad = invalidRegex(f.errorStatus as string);
    if (bad) throw new TriggerFieldError('errorStatus', bad);
    const status = `${f.statusLabel as string}=~"${escapePromqlString(f.errorStatus as string)}"`;
    return (labels) =>
      `(sum(rate(${series(metric, labels, [status])}[${w}])) or vector(0))` + ` / sum(rate(${series(metric, labels)}[${w}]))`;
  },
};
