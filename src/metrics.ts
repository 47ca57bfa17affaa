import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every rollguard metric, on one registry per app instance (tests build several apps in one
 * process, so nothing here is global). Names follow Prometheus' conventions: base units, _total
 * for counters, _seconds for durations.
 */
export function createMetrics(opts: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry });
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
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
