import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { LAST_LANE, StoreFullError, type IntakeResult, type Lane, type Store } from '../store/store.js';
import { dedupeKey, normaliseAlert, type Alert } from './alert.js';
import { forLog, intakeLimits, refusedBySetting, splitByLimits, type IntakeLimits, type Refusal } from './limits.js';
import { AlertmanagerApi } from './api.js';
import type { WebhookPayload } from './schema.js';
import { keyDigest } from '../store/keys.js';

/** What this needs of a pino logger (the request's, so lines carry its request id). */
interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface TruncatedDeps {
  store: Store;
  metrics: Pick<Metrics, 'alertsTruncated' | 'alertmanagerFetches' | 'alertmanagerFetchesDeferred' | 'alertmanagerFetchesDropped' | 'alertsRecovered' | 'alertsDeduplicated' | 'alertsUnmatched' | 'alertmanagerAlertsRefused'>;
  config: Pick<
    Config,
    'ALERTMANAGER_URL' | 'ALERTMANAGER_MAX_FETCHES' | 'DEDUPE_TTL' | 'BODY_LIMIT_BYTES' | 'ALERT_MAX_PER_BATCH' | 'ALERT_MAX_LABELS' | 'ALERT_MAX_LABEL_BYTES' | 'ALERT_MAX_BYTES' | 'ALERT_MAX_ANNOTATION_BYTES' | 'ALERT_ANNOTATIONS' | 'ALERT_MAX_CLOCK_SKEW'
  >;
  now: () => number;
  /**
   * The webhook's pre-match (src/http/alerts.ts): the queue lane of an alert, or null when no rule
   * matches it (counted, not queued). Absent: the last lane.
   */
  laneFor?: (alert: Alert) => Lane | null;
  /** a client other than the one ALERTMANAGER_URL gives (tests) */
  api?: AlertmanagerApi | null;
  /** waits between attempts of one fetch, ms (default 500, 2000: three attempts) */
  retryDelays?: number[];
}

/** Groups at most waiting for a fetch on one replica (each holds what the fetch needs of its latest notification: a Notice). */
export const MAX_WAITING_GROUPS = 256;

/**
 * What a fetch needs of a truncated notification, kept in place of the notification itself while
 * the fetch waits and runs: its receiver, groupKey and externalURL (each within
 * ALERT_MAX_LABEL_BYTES: the webhook refuses a batch past it), its group labels (the fetch's
 * filter; within the limits of groupLabelsOver), how many alerts it left out and delivered, and the
 * delivered alerts' fingerprints as digests (keyDigest: a sender's fingerprint may have up to
 * ALERT_MAX_LABEL_BYTES). Until 2026-12-08 the whole notification was kept: up to BODY_LIMIT_BYTES
 * (4 MiB) each, its alerts' labels and every annotation and field a sender adds included, for each
 * of MAX_WAITING_GROUPS groups, about 1 GiB of JSON on a replica whose memory limit is 256 MiB.
 */
interface Notice {
  receiver: string;
  groupKey: string;
  externalURL: string;
  groupLabels: Record<string, string>;
  truncatedAlerts: number;
  /** alerts the notification delivered */
  delivered: number;
  /** keyDigest of each delivered alert's fingerprint */
  deliveredDigests: Set<string>;
}

function noticeOf(p: WebhookPayload): Notice {
  return {
    receiver: p.receiver,
    groupKey: p.groupKey,
    externalURL: p.externalURL,
    groupLabels: { ...p.groupLabels },
    truncatedAlerts: p.truncatedAlerts,
    delivered: p.alerts.length,
    deliveredDigests: new Set(p.alerts.map((a) => keyDigest(a.fingerprint))),
  };
}

/**
 * Why a notification's group labels are not sent to Alertmanager as a fetch's filter (undefined:
 * they may be): more than ALERT_MAX_LABELS of them, or more than ALERT_MAX_LABEL_BYTES of names and
 * values in all. Alertmanager's group labels are within its groupKey, which the webhook holds to
 * ALERT_MAX_LABEL_BYTES; larger ones were not written by Alertmanager, and a group waiting for its
 * fetch keeps them.
 */
export function groupLabelsOver(labels: Record<string, string>, l: Pick<IntakeLimits, 'maxLabels' | 'maxLabelBytes'>): string | undefined {
  const names = Object.keys(labels);
  if (names.length > l.maxLabels) return `body.groupLabels: ${names.length} labels, over the ${l.maxLabels} an alert may have (ALERT_MAX_LABELS)`;
  let bytes = 0;
  for (const name of names) bytes += Buffer.byteLength(name) + Buffer.byteLength(labels[name]!);
  if (bytes > l.maxLabelBytes) return `body.groupLabels: ${bytes} bytes of names and values, over the ${l.maxLabelBytes} ALERT_MAX_LABEL_BYTES allows them (Alertmanager's group labels are within its groupKey)`;
  return undefined;
}

/**
 * Alertmanager's `max_alerts` on a webhook receiver sends only the first N alerts of a group and
 * says how many it left out in `truncatedAlerts`. Those left out may be the very alert a rule
 * acts on, so none is dropped silently: each is counted (rollguard_alerts_truncated_total) and a
 * warning names the group and the receiver setting to change; with ALERTMANAGER_URL set, the
 * group's current alerts are fetched from Alertmanager's API v2 and the missing ones queued
 * through the webhook's own intake (same dedupe keys, so a later untruncated resend or another
 * replica doing the same never queues one twice). The fetch runs after the webhook has answered;
 * a failing fetch is logged and counted, and the alerts that did arrive stay queued. What is
 * fetched is held to the webhook's limits: an answer over BODY_LIMIT_BYTES is not read, an alert
 * over ALERT_MAX_LABELS or ALERT_MAX_LABEL_BYTES is not queued, and only the allowed annotations
 * are kept (ALERT_ANNOTATIONS, cut to ALERT_MAX_ANNOTATION_BYTES); each alert refused is counted by
 * its limit and the refusal logged with the group. Alerts no rule matches are counted and left out
 * first; of the rest (P0 lane first, Alertmanager's order within a lane) one fetch newly queues
 * about ALERT_MAX_PER_BATCH (fewer than twice it: recover()), alerts already queued by an earlier
 * resend not counted, so one big
 * group never fills the queue (QUEUE_MAX_DEPTH) and locks the other groups and lanes out, and each
 * resend of the group moves on past what is queued: every alert of it is queued after enough
 * resends, ALERT_MAX_PER_BATCH new per fetch. A queue full partway stops the fetch: what was queued
 * stays queued, and the rest waits for the next resend (rollguard_alertmanager_fetches_total
 * {outcome="queue_full"}, a warning saying how many were queued). Until 2026-12-07 only the first
 * ALERT_MAX_PER_BATCH of what was fetched were, before duplicates and unmatched alerts were left
 * out: Alertmanager answers a group in a stable order, so every resend took the same ones and the
 * alerts past them were never queued while the group fired; and for part of that day one fetch
 * queued the whole group, which could fill the queue and have every webhook after (P0 included)
 * refused until it drained.
 *
 * What the fetches cost is bounded too: every resend of a truncated notification asks for one, and
 * each reads up to BODY_LIMIT_BYTES, with retries. At most one fetch per (receiver, groupKey) runs
 * at a time, and at most ALERTMANAGER_MAX_FETCHES at once on a replica. A notification that cannot
 * be fetched now waits (counted: rollguard_alertmanager_fetches_deferred_total{reason}: in_progress,
 * busy; logged): the group is fetched once more when its fetch ends, or once a place frees, oldest
 * first; resends of a waiting group are one wait. At most MAX_WAITING_GROUPS groups wait: past
 * that the oldest is dropped (rollguard_alertmanager_fetches_dropped_total, a warning), and its
 * left-out alerts are handled when Alertmanager sends the group again.
 *
 * The receiver asked for is the notification's own (`receiver` of the body): rollguard's
 * configuration does not know which Alertmanager receivers point at it (one Alertmanager may have
 * several, one per route). That grants nothing the webhook credential does not: whoever holds it
 * can post any alert outright. The name is matched exactly, never as a pattern (api.ts), and
 * bounded by ALERT_MAX_LABEL_BYTES at the webhook.
 */
export class TruncatedGroups {
  private readonly api: AlertmanagerApi | null;
  /** the fetches running, by (receiver, groupKey) */
  private readonly running = new Map<string, Promise<void>>();
  /** the latest notification of each group waiting for its fetch, oldest first */
  private readonly waiting = new Map<string, { payload: Notice; log: Log }>();
  private readonly delays: number[];

  constructor(private readonly d: TruncatedDeps) {
    this.api =
      d.api !== undefined
        ? d.api
        : d.config.ALERTMANAGER_URL
          ? new AlertmanagerApi({ url: d.config.ALERTMANAGER_URL, maxBody: { bytes: d.config.BODY_LIMIT_BYTES, setting: 'BODY_LIMIT_BYTES' } })
          : null;
    this.delays = d.retryDelays ?? [500, 2000];
  }

  /** Called once the delivered alerts of `payload` are durably queued. Returns at once. */
  notice(payload: WebhookPayload, log: Log): void {
    const left = payload.truncatedAlerts;
    if (left <= 0) return;
    this.d.metrics.alertsTruncated.inc(left);
    // the group and receiver as a log line names them: cut (forLog), as each may have ALERT_MAX_LABEL_BYTES
    const group = forLog(payload.groupKey);
    const what = { groupKey: group, receiver: forLog(payload.receiver), truncatedAlerts: left, delivered: payload.alerts.length };
    const change = `raise or remove max_alerts in the webhook_configs of Alertmanager receiver "${what.receiver}"`;
    if (!this.api) {
      log.warn(what, `Alertmanager left ${left} alert(s) of group ${group} out of this notification; they are not handled: ${change}, or set ALERTMANAGER_URL so rollguard fetches them`);
      return;
    }
    const over = groupLabelsOver(payload.groupLabels, intakeLimits(this.d.config));
    if (over) {
      log.warn({ ...what, limit: over }, `Alertmanager left ${left} alert(s) of group ${group} out of this notification; not fetched from ALERTMANAGER_URL, as its group labels are over an intake limit: ${over}; they are not handled: ${change}`);
      return;
    }
    const notice = noticeOf(payload);
    const key = JSON.stringify([payload.receiver, payload.groupKey]);
    const max = this.d.config.ALERTMANAGER_MAX_FETCHES;
    if (this.running.has(key)) {
      this.d.metrics.alertmanagerFetchesDeferred.inc({ reason: 'in_progress' });
      log.info(
        { ...what, deferred: 'in_progress' },
        `Alertmanager left ${left} alert(s) of group ${group} out of this notification; a fetch of this group from ALERTMANAGER_URL is running: fetched once more when it ends (${change} to avoid the fetches)`,
      );
      this.wait(key, notice, log);
      return;
    }
    if (this.running.size >= max) {
      this.d.metrics.alertmanagerFetchesDeferred.inc({ reason: 'busy' });
      log.warn(
        { ...what, deferred: 'busy', running: this.running.size },
        `Alertmanager left ${left} alert(s) of group ${group} out of this notification; ${max} fetches from ALERTMANAGER_URL are running, as many as ALERTMANAGER_MAX_FETCHES allows: fetched once one ends (${change}, or raise ALERTMANAGER_MAX_FETCHES)`,
      );
      this.wait(key, notice, log);
      return;
    }
    log.warn(what, `Alertmanager left ${left} alert(s) of group ${group} out of this notification; fetching them from ALERTMANAGER_URL (${change} to avoid the extra fetch)`);
    this.start(key, notice, log);
  }

  /** Resolves once every fetch started so far, and every one waiting, has ended (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  private start(key: string, payload: Notice, log: Log): void {
    const p = this.recover(this.api!, payload, log).finally(() => {
      this.running.delete(key);
      this.next();
    });
    this.running.set(key, p);
  }

  /** The group waits for its fetch (its latest notification only), at most MAX_WAITING_GROUPS of them. */
  private wait(key: string, payload: Notice, log: Log): void {
    this.waiting.delete(key); // to the end: its latest notification, in order of arrival
    this.waiting.set(key, { payload, log });
    if (this.waiting.size <= MAX_WAITING_GROUPS) return;
    const [oldest, w] = this.waiting.entries().next().value!;
    this.waiting.delete(oldest);
    this.d.metrics.alertmanagerFetchesDropped.inc();
    w.log.warn(
      { groupKey: forLog(w.payload.groupKey), receiver: forLog(w.payload.receiver), truncatedAlerts: w.payload.truncatedAlerts },
      `Alertmanager left ${w.payload.truncatedAlerts} alert(s) of group ${forLog(w.payload.groupKey)} out of a notification; not fetched: more than ${MAX_WAITING_GROUPS} groups wait for a fetch (ALERTMANAGER_MAX_FETCHES: raise it, or raise max_alerts in the webhook_configs of Alertmanager receiver "${forLog(w.payload.receiver)}"); handled when Alertmanager sends the group again`,
    );
  }

  /** Starts the oldest waiting fetches whose group is not being fetched, while places are free. */
  private next(): void {
    for (const [key, w] of this.waiting) {
      if (this.running.size >= this.d.config.ALERTMANAGER_MAX_FETCHES) return;
      if (this.running.has(key)) continue;
      this.waiting.delete(key);
      this.start(key, w.payload, w.log);
    }
  }

  /** Counts the refused alerts by limit and logs one line naming the group and the first reasons. */
  private noteRefused(payload: Notice, refused: Refusal[], log: Log): void {
    const bySetting = refusedBySetting(refused);
    for (const [limit, n] of bySetting) this.d.metrics.alertmanagerAlertsRefused.inc({ limit }, n);
    log.warn(
      { groupKey: forLog(payload.groupKey), receiver: forLog(payload.receiver), refused: refused.length, limits: Object.fromEntries(bySetting), reasons: refused.slice(0, 3).map((r) => r.message) },
      `${refused.length} alert(s) fetched from Alertmanager for group ${forLog(payload.groupKey)} pass an intake limit and are not queued (${[...bySetting.keys()].join(', ')}), as the webhook would refuse them`,
    );
  }

  private async recover(api: AlertmanagerApi, payload: Notice, log: Log): Promise<void> {
    const delivered = payload.deliveredDigests;
    const budget = this.d.config.ALERT_MAX_PER_BATCH;
    // alerts this fetch newly queued, over its attempts: fewer than twice ALERT_MAX_PER_BATCH
    const res: IntakeResult = { queued: 0, duplicates: 0 };
    let lastErr: unknown;
    for (let attempt = 0; attempt <= this.delays.length; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, this.delays[attempt - 1]));
      try {
        const current = await api.groupAlerts(payload.receiver, payload.groupLabels);
        const receivedAt = this.d.now();
        const limits = intakeLimits(this.d.config);
        // the per-alert limits only: ALERT_MAX_PER_BATCH bounds what is newly queued below, not what is read
        const { kept, keptStartsAt, refused } = splitByLimits(current.filter((a) => !delivered.has(keyDigest(a.fingerprint))), { ...limits, maxAlerts: Infinity }, (i) => `alerts fetched[${i}]`, receivedAt);
        if (refused.length > 0) this.noteRefused(payload, refused, log);
        const items = kept.map((a, i) => {
          const alert = normaliseAlert(payload, { status: 'firing', labels: a.labels, annotations: a.annotations, startsAt: a.startsAt, generatorURL: a.generatorURL, fingerprint: a.fingerprint }, receivedAt, limits, keptStartsAt[i]);
          // the webhook's lane: a recovered P0 alert is taken before a storm's P1 and P2 ones
          return { key: dedupeKey(alert), alert, lane: this.d.laneFor ? this.d.laneFor(alert) : LAST_LANE };
        });
        // alerts no rule matches are counted and never queued (as the stores' intake does): left out
        // first, so they take nothing of the bound. The rest lane by lane (a stable sort keeps
        // Alertmanager's order within a lane): a P0 alert of a mixed group is queued before P1 and P2 ones.
        const matched = items.filter((i) => i.lane !== null).sort((a, b) => a.lane! - b.lane!);
        const unmatched = items.length - matched.length;
        // About ALERT_MAX_PER_BATCH alerts newly queued per fetch, duplicates (queued by an earlier
        // resend) not counted: one big group never takes the queue (QUEUE_MAX_DEPTH) from the other
        // groups and lanes, and Alertmanager's resends of the group (stable order) each move on past
        // what is already queued. Each intake call takes ALERT_MAX_PER_BATCH alerts, and no call is
        // made once the bound is reached: so the last one may queue up to ALERT_MAX_PER_BATCH - 1
        // more, and a fetch makes at most one call per ALERT_MAX_PER_BATCH alerts it found (a call
        // sized to what is left of the bound walked a long run of queued ones one alert at a time).
        let at = 0;
        let full: unknown;
        while (at < matched.length && res.queued < budget) {
          const chunk = matched.slice(at, at + budget);
          let r: IntakeResult;
          try {
            r = await this.d.store.intake(chunk, this.d.config.DEDUPE_TTL);
          } catch (err) {
            // a full queue: what is queued stays queued, the rest waits for the group's next resend
            // (a retry now would find the queue as full)
            if (err instanceof StoreFullError) {
              full = err;
              break;
            }
            throw err;
          }
          at += chunk.length;
          // counted as each call lands: a later one failing (the fetch tried again) does not unsay it
          res.queued += r.queued;
          res.duplicates += r.duplicates;
          this.d.metrics.alertsRecovered.inc(r.queued);
          this.d.metrics.alertsDeduplicated.inc(r.duplicates);
        }
        if (unmatched > 0) this.d.metrics.alertsUnmatched.inc(unmatched);
        // matched alerts this fetch did not take (some may be queued already, by an earlier resend)
        const left = matched.length - at;
        const found = kept.length + refused.length;
        const what = { groupKey: forLog(payload.groupKey), receiver: forLog(payload.receiver), truncatedAlerts: payload.truncatedAlerts, found, refused: refused.length, queued: res.queued, duplicates: res.duplicates, unmatched, notTaken: left };
        if (full !== undefined) {
          this.d.metrics.alertmanagerFetches.inc({ outcome: 'queue_full' });
          log.warn(
            { ...what, err: full instanceof Error ? full.message : String(full) },
            `the queue is full (QUEUE_MAX_DEPTH): this fetch from Alertmanager for group ${what.groupKey} queued ${res.queued} alert(s); the other ${left} it found wait for Alertmanager's next resend of the group (those not queued already)`,
          );
          return;
        }
        this.d.metrics.alertmanagerFetches.inc({ outcome: 'ok' });
        if (left > 0) {
          log.info(what, `this fetch from Alertmanager for group ${what.groupKey} queued ${res.queued} alert(s), as many as one fetch queues (ALERT_MAX_PER_BATCH); the other ${left} it found are queued by Alertmanager's next resends of the group (those not queued already)`);
        } else if (found < payload.truncatedAlerts) {
          log.warn(what, `found ${found} of the ${payload.truncatedAlerts} alert(s) left out in Alertmanager's group (the others resolved since, or are resolved alerts, which its API does not list)`);
        } else {
          log.info(what, 'alerts left out of the notification fetched from Alertmanager and queued');
        }
        return;
      } catch (err) {
        lastErr = err;
      }
    }
    this.d.metrics.alertmanagerFetches.inc({ outcome: 'failed' });
    const some = res.queued > 0 ? `; ${res.queued} of them queued before the failure, the rest` : ': they';
    log.error(
      { groupKey: forLog(payload.groupKey), receiver: forLog(payload.receiver), truncatedAlerts: payload.truncatedAlerts, queued: res.queued, err: lastErr instanceof Error ? lastErr.message : String(lastErr) },
      `could not fetch the ${payload.truncatedAlerts} alert(s) Alertmanager left out of group ${forLog(payload.groupKey)}${some} are not handled until Alertmanager sends them (check ALERTMANAGER_URL; raise or remove max_alerts on receiver "${forLog(payload.receiver)}"); the ${payload.delivered} delivered stay queued`,
    );
  }
}
