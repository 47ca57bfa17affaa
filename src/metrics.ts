import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from './config.js';
import { deniedNamespace } from './guards/scope.js';

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
  // Each metric below: its name, its help, then its buckets (histograms) and its label names.
  const registers = [registry];
  const counter = <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name, help, labelNames, registers });
  const gauge = <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers });
  const histogram = <L extends string = string>(name: string, help: string, buckets: number[], labelNames: readonly L[] = []) =>
    new Histogram<L>({ name, help, buckets, labelNames, registers });
  const heartbeatFailures = counter('rollguard_heartbeat_failures_total',
    "Problems with this replica's heartbeat, by reason: store (reading or writing it failed; other replicas take a replica whose heartbeat is unwritten for its TTL for gone and take up its work), name_in_use (another live process writes the heartbeat of the same CONSUMER_NAME).", ['reason']);
  // both reasons exported from the start at 0, so that increase() sees the first one (the alert RollguardReplicaNameInUse)
  for (const reason of ['store', 'name_in_use']) heartbeatFailures.inc({ reason }, 0);
  const alertsRefused = counter('rollguard_alerts_refused_total',
    "Alerts of webhook batches refused alone because they pass a per-alert intake limit, by the limit's setting (ALERT_MAX_LABELS, ALERT_MAX_LABEL_BYTES, ALERT_MAX_BYTES, ALERT_MAX_CLOCK_SKEW: startsAt too far ahead of rollguard's clock): not queued, stored or matched; the rest of their batch is queued. A batch over a batch limit is answered 413 and not counted here.", ['limit']);
  // every limit exported from the start at 0, so that increase() sees the first refusal
  for (const limit of ['ALERT_MAX_LABELS', 'ALERT_MAX_LABEL_BYTES', 'ALERT_MAX_BYTES', 'ALERT_MAX_CLOCK_SKEW']) alertsRefused.inc({ limit }, 0);
  const alertmanagerFetchesDeferred = counter('rollguard_alertmanager_fetches_deferred_total',
    "Truncated notifications whose group was not fetched from Alertmanager's API at once, by reason: in_progress (a fetch of the same receiver and groupKey was running: fetched once more when it ends), busy (ALERTMANAGER_MAX_FETCHES fetches were running: fetched once one ends, oldest first).", ['reason']);
  for (const reason of ['in_progress', 'busy']) alertmanagerFetchesDeferred.inc({ reason }, 0);
  return {
    registry,
    // intake
    alertsReceived: counter('rollguard_alerts_received_total',
      'Alerts received on the Alertmanager webhook and taken for intake, by alert status (those refused by a per-alert limit are counted in rollguard_alerts_refused_total instead).', ['status']),
    alertsRefused,
    alertsDeduplicated: counter('rollguard_alerts_deduplicated_total',
      'Alerts dropped as resends of a notification already queued (fingerprint, startsAt, status).'),
    alertsUnmatched: counter('rollguard_alerts_unmatched_total',
      'Firing alerts no loaded rule matches at intake, counted each time Alertmanager sends them: neither queued (the engine would do nothing with them) nor remembered.'),
    alertsCoalesced: counter('rollguard_alerts_coalesced_total',
      'Firing alerts taken together with an earlier alert of the same rule and target: one evaluation, each alert linked to its record (which follows the earlier alert\'s resolution).'),
    alertsTruncated: counter('rollguard_alerts_truncated_total',
      "Alerts Alertmanager left out of the webhook notifications received (truncatedAlerts: the receiver's max_alerts); a resent notification counts again."),
    alertmanagerFetches: counter('rollguard_alertmanager_fetches_total',
      "Fetches of a truncated notification's group from Alertmanager's API v2 (ALERTMANAGER_URL), by outcome (ok; queue_full: the queue took part or none of them, the rest wait for the next resend; failed) after retries.", ['outcome']),
    alertmanagerFetchesDeferred,
    alertmanagerFetchesDropped: counter('rollguard_alertmanager_fetches_dropped_total',
      'Truncated notifications whose group waited for a fetch and was dropped, over the 256 groups that may wait on a replica: their left-out alerts are handled when Alertmanager sends the group again.'),
    alertsRecovered: counter('rollguard_alerts_recovered_total',
      'Alerts left out of a notification by max_alerts, fetched from Alertmanager and queued (ones already queued are counted as deduplicated).'),
    alertmanagerAlertsRefused: counter('rollguard_alertmanager_alerts_refused_total',
      "Alerts fetched back from Alertmanager's API (a truncated notification's group) and not queued because they pass an intake limit, as the webhook would refuse them, by the limit's setting (ALERT_MAX_PER_BATCH, ALERT_MAX_LABELS, ALERT_MAX_LABEL_BYTES, ALERT_MAX_BYTES).", ['limit']),
    webhookRequests: counter('rollguard_webhook_requests_total',
      'Requests to the Alertmanager webhook, by HTTP status code.', ['code']),
    webhookDuration: histogram('rollguard_webhook_request_duration_seconds',
      'Time to answer the Alertmanager webhook, durable queueing included.', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]),
    queueDepth: gauge('rollguard_queue_depth',
      'Alert events queued and not yet handled.'),
    storeErrors: counter('rollguard_store_errors_total',
      'Store operations that failed because the store could not be reached, by operation.', ['op']),
    storeDropped: counter('rollguard_store_dropped_total',
      'What a store dropped to stay within its bounds: records (closed, oldest first; MEMORY_MAX_RECORDS, REDIS_MAX_RECORDS), dedupe keys (what=dedupe_keys; MEMORY_MAX_DEDUPE_KEYS) and keys (the claims, alert links and resolution marks written per alert; MEMORY_MAX_KEYS).', ['store', 'what']),
    eventsProcessed: counter('rollguard_events_processed_total',
      'Queued alert events handled by the engine, by outcome (handled, failed, deadline_exceeded: abandoned past EVENT_DEADLINE, dead_lettered).', ['outcome']),
    // rules and config
    configLastReloadSuccessful: gauge('rollguard_config_last_reload_successful',
      'Whether the last rules reload succeeded (1) or failed and the previous rules stay in force (0).'),
    configLastReloadSuccessTimestamp: gauge('rollguard_config_last_reload_success_timestamp_seconds',
      'Time of the last successful rules reload.'),
    rulesLoaded: gauge('rollguard_rules_loaded',
      'Rules currently in force.'),
    // prometheus confirmation
    prometheusQueries: counter('rollguard_prometheus_queries_total',
      'Queries to Prometheus, by outcome: ok, error, unreachable (sent), not_sent (waited PROMETHEUS_TIMEOUT for a turn, PROMETHEUS_MAX_CONCURRENT in flight all that time).', ['outcome']),
    dependencyCallsWaiting: gauge('rollguard_dependency_calls_waiting',
      'Calls to a dependency waiting for their turn because its bound of calls at once is reached (P0 alerts\' calls first), by dependency: prometheus (PROMETHEUS_MAX_CONCURRENT queries), kubernetes (KUBE_MAX_CONCURRENT_READS reads). Above 0 for long: the dependency, not the queue, sets the pace.', ['dependency']),
    triggerConfirmations: counter('rollguard_trigger_confirmations_total',
      'Trigger confirmations against Prometheus, by rule and outcome (confirmed, not_confirmed, insufficient_data, prometheus_down, prometheus_busy: a query got no turn within PROMETHEUS_TIMEOUT, error).', ['rule', 'outcome']),
    decisions: counter('rollguard_decisions_total',
      'Decisions taken for matched alerts, by rule and decision.', ['rule', 'decision']),
    // rollbacks. Time buckets bracket the rollback runbook's targets: TTD 5 min, decide 10 min, TTR 15 min, MTTR 30 min.
    timeToDetect: histogram('rollguard_time_to_detect_seconds',
      'From the alert starting (startsAt) to rollguard receiving it. Runbook target for time to detect: under 5 minutes.', [5, 15, 30, 60, 120, 180, 300, 600, 900, 1800]),
    timeToDecide: histogram('rollguard_time_to_decide_seconds',
      'From receiving the alert to the rollback decision (Prometheus confirmation, re-checks and windows included). Runbook target for time to decide: under 10 minutes.', [0.01, 0.1, 1, 5, 30, 60, 300, 600, 900, 1800]),
    timeToRollback: histogram('rollguard_time_to_rollback_seconds',
      'From the decision to the rollout complete. Runbook target for time to rollback: under 15 minutes.', [1, 5, 15, 30, 60, 120, 300, 600, 900, 1800]),
    timeToRecover: histogram('rollguard_time_to_recover_seconds',
      'From the alert starting to the service verified healthy or the alert resolved. Runbook target for mean time to recover (MTTR): under 30 minutes.', [30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200]),
    rollbacks: counter('rollguard_rollbacks_total',
      `Rollbacks that reached an end, by rule, namespace, kind and outcome (succeeded, failed, unverified, dry_run, refused, blocked, interrupted, rejected, expired). namespace is the target's when in scope (listed in SCOPE_NAMESPACES, or, with it unset, one where rollguard found a target), else ${OUT_OF_SCOPE} (denied, or outside SCOPE_NAMESPACES) or ${UNKNOWN_NAMESPACE}: alert labels never make series of their own.`, ['rule', 'namespace', 'kind', 'outcome']),
    rollbacksInProgress: gauge('rollguard_rollbacks_in_progress',
      'Rollbacks this replica is executing or verifying now.'),
    pendingApprovals: gauge('rollguard_pending_approvals',
      'Rollbacks waiting for a human approval (as last seen by this replica).'),
    guardBlocked: counter('rollguard_guard_blocked_total',
      'Rollbacks stopped by a guard, by guard.', ['guard']),
    guardDeferred: counter('rollguard_guard_deferred_total',
      'Rollbacks a guard sent back to be decided again later (the lock guard, behind another rollback of the target still being decided), by guard.', ['guard']),
    lastRollbackTimestamp: gauge('rollguard_last_rollback_timestamp_seconds',
      'When rollguard last changed the cluster to roll something back.'),
    escalations: counter('rollguard_escalations_total',
      'Rollbacks escalated to humans (failed, interrupted, held on a trigger that could not be evaluated, a P0 held for want of a turn at Prometheus, held for over HOLD_MAX_AGE, dead events), by reason.', ['reason']),
    heartbeatFailures,
    notifications: counter('rollguard_notifications_total',
      'Notifications by notifier and final outcome (sent, failed), each counted once, after its retries (NOTIFY_RETRY_FOR).', ['notifier', 'outcome']),
    notificationsFolded: counter('rollguard_notifications_folded_total',
      'Notifications of rollbacks not done (blocked, dry run, notify only) past NOTIFY_FOLD_AFTER in a minute: summed up in one summary notification instead of sent, by kind.', ['kind']),
    notificationAttemptsFailed: counter('rollguard_notification_attempts_failed_total',
      'Attempts to send a notification that failed, retried ones included, by notifier: rising while notifications_total{outcome="failed"} does not is a receiver that recovers within NOTIFY_RETRY_FOR.', ['notifier']),
    // GitOps owners (src/gitops/): Argo CD Applications, Flux Kustomizations and HelmReleases
    gitopsSuspensions: counter('rollguard_gitops_suspensions_total',
      "GitOps owners rollguard suspended before a rollback's write (Argo CD automated sync turned off, Flux spec.suspend), by owner kind (Application, Kustomization, HelmRelease).", ['owner_kind']),
    gitopsSuspended: gauge('rollguard_gitops_suspended',
      'GitOps owners left suspended by rollguard and not resumed through it (resume-gitops): what the rollback records hold, which are kept until resumed; read from the shared store on each scheduler tick, so every replica reports the same value.'),
    gitopsReapplied: counter('rollguard_gitops_reapplied_total',
      'Rollbacks that verification found changed back after the write (failed, "re-applied by"), by the kind of the owner whose controller wrote it last (unknown: another writer).', ['owner_kind']),
    // rollback drills (src/drills/): a fault applied on purpose, the whole chain watched
    drills: counter('rollguard_drills_total',
      'Rollback drills that ended, by result (passed: back on the pre-drill revision, healthy and the trigger cleared within the deadline; failed: a link broke or the deadline passed, and the drill restored the workload itself).', ['result']),
    drillTimeToRecover: histogram('rollguard_drill_time_to_recover_seconds',
      "Drills that passed: from the fault applied to the workload back on its pre-drill revision, healthy and its trigger cleared. The rollback runbook's drill target for the time to recover: under 5 minutes.", [15, 30, 60, 90, 120, 180, 240, 300, 450, 600, 900]),
    drillLastEnd: gauge('rollguard_drill_last_end_timestamp_seconds',
      'When the last drill of each target (Kind/namespace/name) run by this replica ended, labelled with its result; one series per target.', ['target', 'result']),
    kubeErrors: counter('rollguard_kube_api_errors_total',
      'Kubernetes API calls that failed, by status (HTTP code, timeout, network).', ['status']),
    httpConnectionsRefused: counter('rollguard_http_connections_refused_total',
      'Connections closed as they opened because a connection limit was reached, by the setting that refused them (HTTP_MAX_CONNECTIONS, HTTP_MAX_CONNECTIONS_PER_ADDRESS) and the listener (api, metrics).', ['setting', 'listener']),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Seconds from `fromMs` to `toMs` for the incident-clock histograms (time to detect, decide, roll
 * back, recover), never below 0: the two ends come from different clocks (an alert's startsAt is
 * Prometheus', within ALERT_MAX_CLOCK_SKEW of rollguard's), and one negative observation makes a
 * histogram's _sum go down, which increase() and rate() read as a counter reset (the dashboards'
 * means then count the whole sum again).
 */
export function elapsedSeconds(fromMs: number, toMs: number): number {
  return Math.max(0, toMs - fromMs) / 1000;
}

/** The namespace label of a namespace that is denied or outside SCOPE_NAMESPACES. */
export const OUT_OF_SCOPE = 'out_of_scope';
/** The namespace label of one in scope by the settings, where no target was found yet (SCOPE_NAMESPACES unset). */
export const UNKNOWN_NAMESPACE = 'unknown';

/**
 * A namespace taken from an alert's labels, as a metric label: itself only when it is in scope —
 * listed in SCOPE_NAMESPACES, or, with SCOPE_NAMESPACES unset (all namespaces), not denied and one
 * where rollguard has found a rollback target (`known`: real namespaces, which alerts cannot add
 * to). Anything else is one of two fixed values, so forged labels cannot grow the series.
 */
export function namespaceLabel(namespace: string, scope: Pick<Config, 'SCOPE_NAMESPACES' | 'SCOPE_DENY_NAMESPACES'>, known: ReadonlySet<string>): string {
  if (deniedNamespace(scope.SCOPE_DENY_NAMESPACES, namespace) !== undefined) return OUT_OF_SCOPE;
  if (scope.SCOPE_NAMESPACES.length > 0) return scope.SCOPE_NAMESPACES.includes(namespace) ? namespace : OUT_OF_SCOPE;
  return known.has(namespace) ? namespace : UNKNOWN_NAMESPACE;
}
