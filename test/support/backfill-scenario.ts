import { ALERTING_RULES, DAY, HOUR, MINUTE, type Scenario, type ServiceSpec } from './backfill.js';

/**
 * March 2024 (30 days from Friday 2024-03-01T00:00Z) of eight services, with the incidents a
 * replay must tell apart. Times are UTC; "bad during [a, b)" means the minutes whose requests
 * were counted at a, a+1m, ..., b-1m.
 *
 * - checkout: a bad deploy (03-04 10:00), 12 % errors during [10:05, 10:50), fixed by a deploy at 10:50.
 * - search: a flapping error rate after a deploy (03-06 14:00): 12 % errors during [14:10, 14:16),
 *   [14:24, 14:26), [14:36, 14:42) and [14:50, 14:56).
 * - catalog: a slow latency creep with no deploy behind it: p99 from 0.4 s (03-11 00:00) rising
 *   evenly to 3.0 s (03-14 00:00), held until a fix deployed 03-14 12:00; last deploy before it 03-08 09:00.
 * - payments: a deploy (03-18 15:00) that triples p95 (0.2 s to 0.6 s) during [15:03, 17:00).
 * - inventory: a deploy (03-20 15:00) with 3 % errors during [15:05, 03-21 06:00).
 * - coredns (kube-system): 20 % errors during [03-23 03:00, 03:20).
 * - reports: 12 % errors during [03-28 13:00, 13:30); kube-state-metrics does not scrape it.
 * - node-3's disk: DiskAlmostFull firing [03-26 08:00, 11:00), an alert no rule matches.
 * - frontend: no incident; deployed 03-12 11:00 and 03-26 16:30, and kube-state-metrics scrapes
 *   only its Deployment's generation (no ReplicaSet series).
 */

export const FROM = Date.UTC(2024, 2, 1);
export const TO = FROM + 30 * DAY;

/** A UTC time in March 2024: at(4, '10:07') = 2024-03-04T10:07:00Z. */
export function at(day: number, hhmm: string, ss = 0): number {
  const [h, m] = hhmm.split(':').map(Number);
  return Date.UTC(2024, 2, day, h, m, ss);
}

const during = (ranges: Array<[number, number]>, v: number) => (t: number) => (ranges.some(([a, b]) => t >= a && t < b) ? v : undefined);

const service = (s: Partial<ServiceSpec> & Pick<ServiceSpec, 'namespace' | 'name' | 'deploys'>): ServiceSpec => ({
  ksm: true,
  latency: false,
  requestsPerMinute: 3000,
  p95: 0.2,
  p99: 0.45,
  ...s,
});

export const SERVICES: ServiceSpec[] = [
  service({
    namespace: 'prod',
    name: 'checkout',
    latency: true,
    deploys: [at(1, '00:00') - 2 * DAY + 11 * HOUR, at(4, '10:00'), at(4, '10:50')],
    errorRatio: during([[at(4, '10:05'), at(4, '10:50')]], 0.12),
  }),
  service({
    namespace: 'prod',
    name: 'search',
    latency: true,
    deploys: [at(1, '00:00') - 4 * DAY + 9 * HOUR, at(6, '14:00'), at(6, '16:00')],
    errorRatio: during(
      [
        [at(6, '14:10'), at(6, '14:16')],
        [at(6, '14:24'), at(6, '14:26')],
        [at(6, '14:36'), at(6, '14:42')],
        [at(6, '14:50'), at(6, '14:56')],
      ],
      0.12,
    ),
  }),
  service({
    namespace: 'prod',
    name: 'catalog',
    latency: true,
    p99: 0.4,
    deploys: [at(1, '00:00') - 10 * DAY + 10 * HOUR, at(8, '09:00'), at(14, '12:00')],
    latencyAt: (t) => {
      if (t < at(11, '00:00') || t >= at(14, '12:00')) return undefined;
      return { p99: Math.min(3, 0.4 + (2.6 * (t - at(11, '00:00'))) / (3 * DAY)) };
    },
  }),
  service({
    namespace: 'prod',
    name: 'payments',
    latency: true,
    deploys: [at(1, '00:00') - DAY + 10 * HOUR, at(18, '15:00'), at(18, '17:00')],
    latencyAt: (t) => (t >= at(18, '15:03') && t < at(18, '17:00') ? { p95: 0.6, p99: 1.2 } : undefined),
  }),
  service({
    namespace: 'prod',
    name: 'inventory',
    deploys: [at(1, '00:00') - 5 * DAY + 10 * HOUR, at(20, '15:00'), at(21, '06:00')],
    errorRatio: during([[at(20, '15:05'), at(21, '06:00')]], 0.03),
  }),
  service({
    namespace: 'kube-system',
    name: 'coredns',
    ksm: false,
    deploys: [at(1, '00:00') - 60 * DAY],
    errorRatio: during([[at(23, '03:00'), at(23, '03:20')]], 0.2),
  }),
  service({
    namespace: 'prod',
    name: 'reports',
    ksm: false,
    requestsPerMinute: 600,
    deploys: [at(1, '00:00') - 15 * DAY],
    errorRatio: during([[at(28, '13:00'), at(28, '13:30')]], 0.12),
  }),
  service({ namespace: 'prod', name: 'frontend', latency: true, ksm: 'generation', deploys: [at(1, '00:00') - 3 * DAY, at(12, '11:00'), at(26, '16:30')] }),
];

export const SCENARIO: Scenario = {
  fromMs: FROM,
  toMs: TO,
  services: SERVICES,
  alertingRules: ALERTING_RULES,
  fixedAlerts: [
    {
      labels: { alertname: 'DiskAlmostFull', instance: 'node-3:9100', device: '/dev/sdb', mountpoint: '/var/lib/data', severity: 'warning' },
      fromMs: at(26, '08:00'),
      toMs: at(26, '11:00'),
    },
  ],
};

const target = `target:
      kind: Deployment
      namespace: "{{ $labels.namespace }}"
      name: "{{ $labels.deployment }}"`;
const selector = `selector:
        namespace: "{{ $labels.namespace }}"
        pod: { regex: "{{ $labels.deployment }}-[a-z0-9]+-[a-z0-9]{5}" }`;

/** The rollguard rules replayed against the scenario (a rule file). */
export const RULES_YAML = `rules:
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    ${target}
    trigger:
      kind: error_rate
      rateWindow: 2m
      ${selector}
      threshold: 0.05
      for: 2m
      step: 1m
    priority: P0
  - name: elevated-errors
    match: ['alertname="ElevatedErrorRate"']
    ${target}
    trigger:
      kind: error_rate
      rateWindow: 2m
      ${selector}
      threshold: 0.02
      for: 10m
      step: 1m
    priority: P2
    maintenanceWindow: "daily 02:00-04:00"
  - name: latency-p99
    match: ['alertname="HighLatencyP99"']
    ${target}
    trigger:
      kind: latency
      quantile: 0.99
      rateWindow: 2m
      ${selector}
      threshold: 2
      for: 5m
      step: 1m
    priority: P1
  - name: latency-baseline
    match: ['alertname="LatencyAboveBaseline"']
    ${target}
    trigger:
      kind: latency
      quantile: 0.95
      rateWindow: 2m
      ${selector}
      threshold: 2
      baseline: { relativeTo: rollout_start, window: 10m, minValue: 0.1 }
      for: 5m
      step: 1m
    priority: P1
    sloAtRisk: true
    recheckAfter: 10m
    guards:
      approval: { required: true }
  - name: deployment-failed
    match: ['alertname="KubeDeploymentFailed"']
    ${target}
    trigger:
      kind: deployment_failed
      selector:
        namespace: "{{ $labels.namespace }}"
        deployment: "{{ $labels.deployment }}"
      for: 5m
      step: 1m
    priority: P0
`;

export { MINUTE };
