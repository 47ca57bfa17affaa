import { seriesRenderer } from './promql.js';
import { metricName, selectorField, type TriggerKind } from './types.js';

/**
 * health_check: the ratio of failing probes, from a 0/1 probe metric (1 = passing), by default the
 * blackbox exporter's probe_success:
 *   1 - avg(METRIC{SELECTOR})
 * For pod readiness use e.g. metric: kube_pod_status_ready with selector condition: "true".
 */
export const healthCheck: TriggerKind = {
  kind: 'health_check',
  summary: 'ratio of failing health-check probes',
  fields: {
    metric: metricName.default('probe_success'),
    selector: selectorField,
  },
  compile(f) {
    const metric = f.metric as string;
    const series = seriesRenderer([metric], f.selector);
    return (labels) => `1 - avg(${series(metric, labels)})`;
  },
};
