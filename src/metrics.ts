import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every rollguard metric, on one registry per app instance (tests build several apps in one
 * process, so nothing here is global). Names follow Prometheus' conventions: base units, _total
 * for counters, _seconds for durations.
 */
export function createMetrics(opts: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaults !== false) {
    collectDefaultMetrics({ register: registry });
    // prom-client names these gauges *_total, which promtool check metrics rejects (a counter suffix on a gauge).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  }
  const r = [registry];
  return {
    registry,
    // intake
    alertsReceived: new Counter({
      name: 'rollguard_alerts_received_total',
      help: 'Alerts received on the Alertmanager webhook, by alert status.',
      labelNames: ['status'] as const,
      registers: r,
    }),
    alertsDeduplicated: new Counter({
      name: 'rollguard_alerts_deduplicated_total',
      help: 'Alerts dropped as resends of a notification already queued (fingerprint, startsAt, status).',
      registers: r,
    }),
    webhookRequests: new Counter({
      name: 'rollguard_webhook_requests_total',
      help: 'Requests to the Alertmanager webhook, by HTTP status code.',
      labelNames: ['code'] as const,
      registers: r,
    }),
    webhookDuration: new Histogram({
      name: 'rollguard_webhook_request_duration_seconds',
      help: 'Time to answer the Alertmanager webhook, durable queueing included.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
    queueDepth: new Gauge({
      name: 'rollguard_queue_depth',
      help: 'Alert events queued and not yet handled.',
      registers: r,
    }),
    storeErrors: new Counter({
      name: 'rollguard_store_errors_total',
      help: 'Store operations that failed because the store could not be reached, by operation.',
      labelNames: ['op'] as const,
      registers: r,
    }),
    eventsProcessed: new Counter({
      name: 'rollguard_events_processed_total',
      help: 'Queued alert events handled by the engine, by outcome (handled, failed, dead_lettered).',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    // rules and config
    configLastReloadSuccessful: new Gauge({
      name: 'rollguard_config_last_reload_successful',
      help: 'Whether the last rules reload succeeded (1) or failed and the previous rules stay in force (0).',
      registers: r,
    }),
    configLastReloadSuccessTimestamp: new Gauge({
      name: 'rollguard_config_last_reload_success_timestamp_seconds',
      help: 'Time of the last successful rules reload.',
      registers: r,
    }),
    rulesLoaded: new Gauge({
      name: 'rollguard_rules_loaded',
      help: 'Rules currently in force.',
      registers: r,
    }),
    // prometheus confirmation
    prometheusQueries: new Counter({
      name: 'rollguard_prometheus_queries_total',
      help: 'Queries sent to Prometheus, by outcome (ok, error, unreachable).',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    triggerConfirmations: new Counter({
      name: 'rollguard_trigger_confirmations_total',
      help: 'Trigger confirmations against Prometheus, by rule and outcome (confirmed, not_confirmed, insufficient_data, prometheus_down).',
      labelNames: ['rule', 'outcome'] as const,
      registers: r,
    }),
    decisions: new Counter({
      name: 'rollguard_decisions_total',
      help: 'Decisions taken for matched alerts, by rule and decision.',
      labelNames: ['rule', 'decision'] as const,
      registers: r,
    }),
    // rollbacks (issue 5/6). Time buckets bracket the seeds' targets: TTD 5 min, decide 10 min, TTR 15 min, MTTR 30 min.
    timeToDetect: new Histogram({
      name: 'rollguard_time_to_detect_seconds',
      help: 'From the alert starting (startsAt) to rollguard receiving it. Seeds target: under 5 minutes.',
      buckets: [5, 15, 30, 60, 120, 180, 300, 600, 900, 1800],
      registers: r,
    }),
    timeToDecide: new Histogram({
      name: 'rollguard_time_to_decide_seconds',
      help: 'From receiving the alert to the rollback decision (Prometheus confirmation, re-checks and windows included). Seeds target: under 10 minutes.',
      buckets: [0.01, 0.1, 1, 5, 30, 60, 300, 600, 900, 1800],
      registers: r,
    }),
    timeToRollback: new Histogram({
      name: 'rollguard_time_to_rollback_seconds',
      help: 'From the decision to the rollout complete. Seeds target: under 15 minutes.',
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 900, 1800],
      registers: r,
    }),
    timeToRecover: new Histogram({
      name: 'rollguard_time_to_recover_seconds',
      help: 'From the alert starting to the service verified healthy or the alert resolved. Seeds target (MTTR): under 30 minutes.',
      buckets: [30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200],
      registers: r,
    }),
    rollbacks: new Counter({
      name: 'rollguard_rollbacks_total',
      help: 'Rollbacks that reached an end, by rule, namespace, kind and outcome (succeeded, failed, unverified, dry_run, refused, blocked, interrupted, rejected, expired).',
      labelNames: ['rule', 'namespace', 'kind', 'outcome'] as const,
      registers: r,
    }),
    rollbacksInProgress: new Gauge({
      name: 'rollguard_rollbacks_in_progress',
      help: 'Rollbacks this replica is executing or verifying now.',
      registers: r,
    }),
    pendingApprovals: new Gauge({
      name: 'rollguard_pending_approvals',
      help: 'Rollbacks waiting for a human approval (as last seen by this replica).',
      registers: r,
    }),
    guardBlocked: new Counter({
      name: 'rollguard_guard_blocked_total',
      help: 'Rollbacks stopped by a guard, by guard.',
      labelNames: ['guard'] as const,
      registers: r,
    }),
    lastRollbackTimestamp: new Gauge({
      name: 'rollguard_last_rollback_timestamp_seconds',
      help: 'When rollguard last changed the cluster to roll something back.',
      registers: r,
    }),
    escalations: new Counter({
      name: 'rollguard_escalations_total',
      help: 'Rollbacks escalated to humans (failed, interrupted, dead events), by reason.',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    notifications: new Counter({
      name: 'rollguard_notifications_total',
      help: 'Notifications sent, by notifier and outcome (sent, failed).',
      labelNames: ['notifier', 'outcome'] as const,
      registers: r,
    }),
    kubeErrors: new Counter({
      name: 'rollguard_kube_api_errors_total',
      help: 'Kubernetes API calls that failed, by status (HTTP code, timeout, network).',
      labelNames: ['status'] as const,
      registers: r,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
