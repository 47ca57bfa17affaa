import { seriesRenderer } from './promql.js';
import { metricName, selectorField, type TriggerKind } from './types.js';

/**
 * memory: the highest container working set over its memory limit (cAdvisor over kube-state-metrics):
 *   max(
 *     sum by (namespace, pod, container) (USAGE_METRIC{SELECTOR,container!=""})
 *     / sum by (namespace, pod, container) (LIMIT_METRIC{SELECTOR,resource="memory"}))
 * Containers without a limit have no ratio and do not count.
 */
export const memory: TriggerKind = {
  kind: 'memory',
  summary: 'highest container memory working set over its limit',
  fields: {
    usageMetric: metricName.default('container_memory_working_set_bytes'),
    limitMetric: metricName.default('kube_pod_container_resource_limits'),
    selector: selectorField,
  },
  compile(f) {
    const usage = f.usageMetric as string;
    const limit = f.limitMetric as string;
    const series = seriesRenderer([usage, limit], f.selector);
    return (labels) =>
      `max(sum by (namespace, pod, container) (${series(usage, labels, ['container!=""'])})` +
      ` / sum by (namespace, pod, container) (${series(limit, labels, ['resource="memory"'])}))`;
  },
};
