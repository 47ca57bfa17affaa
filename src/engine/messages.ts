import type { RollbackPlan } from '../actions/action.js';
import type { Config } from '../config.js';
import { wouldAsk } from '../guards/approval.js';
import { fmtDuration } from '../guards/guard.js';
import type { Notification } from '../notify/notifier.js';
import type { RollbackRecord } from './record.js';

/**
 * Every notification the engine sends, written once here. The texts follow the runbooks'
 * messages: "rollback in progress" names the service, the reason with the measured value, the
 * impact, the action, the ETA and where to follow it; "rollback completed" the value after and
 * the health; a failure says to escalate.
 */
export type Message = Pick<Notification, 'kind' | 'severity' | 'title' | 'lines'>;

/** What stands for an alert the queue gave up on (dead.ts): a record, or a replica evaluating it. */
export interface Standing {
  id: string;
  target: string;
  state?: string;
  by?: string;
}

export const messages = {
  notifyOnly: (rec: RollbackRecord, priority: string, reason: string): Message => ({
    kind: 'notify_only',
    severity: 'warning',
    title: `${priority} alert on ${rec.target}: hotfix forward, no rollback`,
    lines: [reason],
  }),

  /** The action refused (kubectl's words); a paused target is critical when found at planning. */
  refused: (rec: RollbackRecord, message: string, critical = false): Message => ({
    kind: 'rollback_refused',
    severity: critical ? 'critical' : 'warning',
    title: `Rollback of ${rec.target} refused`,
    lines: [message],
  }),

  blocked: (rec: RollbackRecord, guard: string, reason: string): Message => ({
    kind: 'rollback_blocked',
    severity: 'warning',
    title: `Rollback of ${rec.target} blocked by the ${guard} guard`,
    lines: [reason],
  }),

  /** A dry run that a rollback would have asked approval for says so first (approvalGuard's WOULD_ASK). */
  dryRun: (rec: RollbackRecord, plan: RollbackPlan | undefined, reason: string): Message => {
    const ask = wouldAsk(rec.guards);
    return {
      kind: 'dry_run',
      severity: 'info',
      title: ask ? `Dry run: would ask for approval to roll back ${rec.target}` : `Dry run: would roll back ${rec.target}`,
      lines: [plan?.summary ?? '', reason, ...(ask ? [ask.reason] : []), ...driftLines(plan)],
    };
  },

  approvalRequested: (rec: RollbackRecord, plan: RollbackPlan | undefined, reason: string): Message => ({
    kind: 'approval_requested',
    severity: 'warning',
    title: `Approval needed: roll back ${rec.target}?`,
    lines: [reason, plan?.summary ?? '', `Answer: rollguard rollbacks approve ${rec.id} (or reject ${rec.id}) [--comment TEXT], or POST /v1/rollbacks/${rec.id}/approve (/reject) with the admin token`],
  }),

  started: (rec: RollbackRecord, plan: RollbackPlan, triggerKind: string | undefined, config: Config): Message => ({
    kind: 'rollback_started',
    severity: 'warning',
    title: `Rollback in progress: ${rec.target}`,
    lines: startedLines(rec, plan, triggerKind, config),
  }),

  succeeded: (rec: RollbackRecord, message: string, lines: string[]): Message => ({
    kind: 'rollback_succeeded',
    severity: 'info',
    title: `Rollback completed: ${rec.target}`,
    lines: [...lines, message, ...(rec.plan ? [rec.plan.summary] : [])],
  }),

  /**
   * An alert the queue gave up on (dead.ts): the records written for it, and what stands for it
   * instead (an evaluation's record, a replica evaluating it); `storeDown`: its records could not
   * be written yet.
   */
  eventDead: (alertname: string, giveUp: string, written: readonly RollbackRecord[], standing: readonly Standing[], storeDown: boolean): Message => ({
    kind: 'event_dead',
    severity: 'critical',
    title: `rollguard could not handle alert ${alertname}${written[0] ? ` for ${written[0].target}` : ''}`,
    lines: [
      `not handled: ${giveUp}`,
      ...written.map((r) => `recorded as ${r.id} (error) on ${r.target}`),
      ...standing.map((s) => (s.by !== undefined ? `being evaluated by replica ${s.by} (record ${s.id} on ${s.target})` : `its record ${s.id} on ${s.target} stands (${s.state})`)),
      storeDown ? 'the store is failing: its record is written once it answers' : written.length + standing.length === 0 ? 'no record: no rule and target of it to record' : '',
      'check the rollguard log and act by hand',
    ],
  }),

  /** Rolled back, but the trigger still holds: escalated once, never retried in a loop. */
  didNotRecover: (rec: RollbackRecord, message: string, lines: string[]): Message => ({
    kind: 'rollback_failed',
    severity: 'critical',
    title: `Rollback of ${rec.target} did not recover the service: escalate`,
    lines: [message, ...lines, 'Failed Rollback Recovery: stop traffic, then restore the last good version by hand'],
  }),

  unverified: (rec: RollbackRecord, message: string, lines: string[]): Message => ({
    kind: 'rollback_unverified',
    severity: 'warning',
    title: `Rollback of ${rec.target} done, recovery not verified`,
    lines: [message, ...lines],
  }),

  /** An error stopped a rollback that had started: escalate. */
  failed: (rec: RollbackRecord, error: string): Message => ({
    kind: 'rollback_failed',
    severity: 'critical',
    title: `Rollback of ${rec.target} FAILED: escalate`,
    lines: [error],
  }),

  /** The trigger could not be evaluated (an error answer, a query that cannot be built): held, a human looks. */
  triggerError: (rec: RollbackRecord, reason: string): Message => ({
    kind: 'trigger_error',
    severity: 'critical',
    title: `Rollback of ${rec.target} held: its trigger could not be checked in Prometheus`,
    lines: [reason, 'rollguard holds (never acts on an unconfirmed trigger) and looks again every minute; fix the query or the Prometheus credentials, or act by hand'],
  }),

  /** A P0 rule's trigger got no turn at Prometheus (rollguard's own line was full): held, a human hears of it now. */
  triggerBusy: (rec: RollbackRecord, reason: string): Message => ({
    kind: 'trigger_busy',
    severity: 'critical',
    title: `P0 rollback of ${rec.target} held: rollguard could not ask Prometheus in time`,
    lines: [
      reason,
      'rollguard had PROMETHEUS_MAX_CONCURRENT queries in flight for all of PROMETHEUS_TIMEOUT; it holds (never acts on an unconfirmed trigger) and looks again every minute, its query ahead of every P1 and P2 query',
      'check rollguard_dependency_calls_waiting{dependency="prometheus"} (many P0 alerts at once fill the line too: raise PROMETHEUS_MAX_CONCURRENT if Prometheus has room) and Prometheus\' query latency',
      `if this cannot wait, roll back by hand (rollguard rollbacks create ${rec.target} --reason "…", or kubectl rollout undo): the held rollback then finds a revision newer than the alert and leaves it (recent-deploy guard)`,
    ],
  }),

  heldTooLong: (rec: RollbackRecord, maxAge: number): Message => ({
    kind: 'held_too_long',
    severity: 'critical',
    title: `Rollback of ${rec.target} not done: held for ${fmtDuration(maxAge)}`,
    lines: [
      `rollguard held it since ${new Date(rec.heldSince ?? rec.createdAt).toISOString()} (${rec.confirmation?.reason ?? 'its trigger could not be confirmed'}) and no longer looks at it (HOLD_MAX_AGE)`,
      'decide by hand: roll back (rollguard rollbacks create, or kubectl rollout undo) or leave it',
    ],
  }),

  /**
   * A rollback cut off mid-way that the replica taking it up did not go on with (`stop`: the setting
   * that says so, scheduler.ts whyNotGoOn); `job`: its migration rollback Job, if created; `lines`: its GitOps lines.
   */
  stoppedMidWay: (rec: RollbackRecord, stop: string, job: { namespace: string; job: string } | undefined, lines: string[]): Message => ({
    kind: 'rollback_interrupted',
    severity: 'critical',
    title: `Rollback of ${rec.target} stopped mid-way, not gone on (${stop}): check it by hand`,
    lines: [
      `the replica running it (${rec.owner ?? '?'}) died mid-way, and the replica that took it up did not go on: ${stop}`,
      job
        ? `its migration rollback Job ${job.namespace}/${job.job} was created and may still be running (kubectl -n ${job.namespace} describe job ${job.job}): check the database before rolling the workload back by hand`
        : 'what it wrote stays, the rest is left undone: finish it by hand, or ask for a new rollback once the setting allows it',
      ...lines,
    ],
  }),

  /** `detail`: what the replica that took it up found, when it found part of it written (a Canary's first write) */
  interrupted: (rec: RollbackRecord, detail?: string): Message => ({
    kind: 'rollback_interrupted',
    severity: 'critical',
    title: `Rollback of ${rec.target} was interrupted: check it by hand`,
    lines: detail
      ? [`the replica running it (${rec.owner ?? '?'}) stopped mid-way, and the replica that took it up did not go on: ${detail}`]
      : [`the replica running it (${rec.owner ?? '?'}) stopped before the change was confirmed applied; rollguard does not execute it a second time`],
  }),
};

/** kubernetes.io/change-cause (and helm's --description) of a rollback: who or what asked for it. */
export function changeCause(rec: RollbackRecord): string {
  if (rec.source === 'manual') return `rollguard: manual rollback ${rec.id} by ${rec.requestedBy ?? '?'}: ${rec.reason ?? ''}`.slice(0, 250);
  const a = rec.alert;
  return `rollguard: rule ${rec.rule}, alert ${a?.labels.alertname ?? '?'} (fingerprint ${a?.fingerprint ?? '?'}), rollback ${rec.id}`;
}

/** "Configuration: ConfigMap shop/app-config changed at 14:02 UTC, after revision 3 was created: …" */
function driftLines(plan: RollbackPlan | undefined): string[] {
  return (plan?.configDrift ?? []).map((d) => `Configuration: ${d.message}`);
}

function startedLines(rec: RollbackRecord, plan: RollbackPlan, kind: string | undefined, config: Config): string[] {
  const lines = [`Service: ${rec.target}`];
  const c = rec.confirmation;
  const measured = c?.value !== undefined && kind ? ` (${measureName(kind).toLowerCase()} ${fmtValue(kind, c.value)}${c.limit !== undefined ? `, limit ${fmtValue(kind, c.limit)}` : ''})` : '';
  if (rec.alert) lines.push(`Reason: ${rec.alert.labels.alertname ?? 'alert'}${measured}`);
  if (rec.reason) lines.push(`Reason: ${rec.reason}`);
  if (rec.alert?.annotations.summary) lines.push(`Impact: ${rec.alert.annotations.summary}`);
  lines.push(`Action: ${plan.summary}`);
  lines.push(...driftLines(plan));
  lines.push(`ETA: rollout within ${fmtDuration(config.VERIFY_TIMEOUT)}, recovery confirmed within ${fmtDuration(config.RECOVERY_TIMEOUT)} after`);
  lines.push(`Status: follow rollback ${rec.id} (GET /v1/rollbacks/${rec.id}); completion or failure is announced here`);
  return lines;
}

/** "Error rate: 0.10% (limit 5.00%)": the trigger's value as measured after the rollback. */
export function measuredLine(kind: string, value: number | undefined, limit: number | undefined): string[] {
  if (value === undefined) return [];
  return [`${measureName(kind)}: ${fmtValue(kind, value)}${limit === undefined ? '' : ` (limit ${fmtValue(kind, limit)})`}`];
}

const RATIO_KINDS = new Set(['error_rate', 'health_check', 'memory']);

/** A trigger value as people read it: ratios as percentages, latencies in seconds. */
export function fmtValue(kind: string, v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (RATIO_KINDS.has(kind)) return `${(v * 100).toFixed(v < 0.001 ? 3 : 2)}%`;
  if (kind === 'latency') return `${v.toFixed(3)} s`;
  return String(Number(v.toPrecision(4)));
}

function measureName(kind: string): string {
  return ({ error_rate: 'Error rate', latency: 'Latency', health_check: 'Failing health checks', memory: 'Memory use', crash_loop: 'Restarts', deployment_failed: 'Failed rollouts' } as Record<string, string>)[kind] ?? 'Value';
}

/** "Health: rollout complete, 3/3 replicas available" from the rollout status verify read. */
export function healthLine(details: Record<string, unknown> | undefined): string {
  const st = (details?.status ?? {}) as { replicas?: number; availableReplicas?: number; numberAvailable?: number; desiredNumberScheduled?: number };
  const total = st.replicas ?? st.desiredNumberScheduled;
  const avail = st.availableReplicas ?? st.numberAvailable;
  return total !== undefined ? `Health: rollout complete, ${avail ?? 0}/${total} replicas available` : 'Health: rollout complete';
}
