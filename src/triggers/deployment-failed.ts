import { seriesRenderer } from './promql.js';
import { metricName, selectorField, type TriggerKind } from './types.js';

/**
 * deployment_failed: the Deployment's Progressing condition is False (progress deadline exceeded),
 * from kube-state-metrics; 1 while it is, 0 otherwise:
 *   max(METRIC{SELECTOR,condition="Progressing",status="false"})
 * The threshold defaults to 0 (op >).
 */
export const deploymentFailed: TriggerKind = {
  kind: 'deployment_failed',
  summary: 'Deployment condition Progressing=false',
  defaultThreshold: 0,
  fields: {
    metric: metricName.default('kube_deployment_status_condition'),
    selector: selectorField,
  },
  compile(f) {
    const metric = f.metric as string;
    const series = seriesRenderer([metric], f.selector);
    return (labels) => `max(${series(metric, labels, ['condition="Progressing"', 'status="false"'])})`;
  },
};
