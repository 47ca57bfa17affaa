import { durationSchema, promqlDuration } from '../rules/duration.js';
import { seriesRenderer } from './promql.js';
import { metricName, selectorField, type TriggerKind } from './types.js';

/**
 * crash_loop: container restarts over a window (kube-state-metrics):
 *   sum(increase(METRIC{SELECTOR}[RATE_WINDOW]))
 */
export const crashLoop: TriggerKind = {
  kind: 'crash_loop',
  summary: 'increase of container restarts over rateWindow',
  fields: {
    metric: metricName.default('kube_pod_container_status_restarts_total'),
    rateWindow: durationSchema.default(600_000),
    selector: selectorField,
  },
  compile(f) {
    const metric = f.metric as string;
    const series = seriesRenderer([metric], f.selector);
    const w = promqlDuration(f.rateWindow as number);
    return (labels) => `sum(increase(${series(metric, labels)}[${w}]))`;
  },
};
