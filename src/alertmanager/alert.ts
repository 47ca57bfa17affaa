import { keptAnnotations, type IntakeLimits } from './limits.js';
import type { WebhookAlert, WebhookPayload } from './schema.js';

/** One alert as rollguard handles it, normalised from Alertmanager's webhook. */
export interface Alert {
  fingerprint: string;
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** ms since epoch */
  startsAt: number;
  /** ms since epoch; undefined while firing (Alertmanager sends the zero time) */
  endsAt?: number;
  generatorURL: string;
  receiver: string;
  groupKey: string;
  externalURL: string;
  /** ms since epoch, when rollguard accepted it */
  receivedAt: number;
}

const ZERO_TIME_MS = Date.parse('0001-01-01T00:00:00Z');

/**
 * The Alert of one webhook alert. `keep` (what intake passes) keeps only the allowed annotations,
 * each within its size limit, so nothing else of the alert's annotations is ever stored.
 * `startsAtMs`: its startsAt already parsed (splitByLimits' keptStartsAt), so it is not parsed twice.
 */
export function normaliseAlert(
  p: Pick<WebhookPayload, 'receiver' | 'groupKey' | 'externalURL'>,
  a: WebhookAlert,
  receivedAt: number,
  keep?: Pick<IntakeLimits, 'annotations' | 'maxAnnotationBytes'>,
  startsAtMs?: number,
): Alert {
  const alert: Alert = {
    fingerprint: a.fingerprint,
    status: a.status,
    labels: a.labels,
    annotations: keep ? keptAnnotations(a.annotations, keep) : a.annotations,
    startsAt: startsAtMs ?? Date.parse(a.startsAt),
    generatorURL: a.generatorURL,
    receiver: p.receiver,
    groupKey: p.groupKey,
    externalURL: p.externalURL,
    receivedAt,
  };
  // read only of a resolved alert: a firing one carries the zero time (or a future estimate), never kept
  if (a.status === 'resolved' && a.endsAt !== undefined) {
    const ends = Date.parse(a.endsAt);
    if (ends > ZERO_TIME_MS) alert.endsAt = ends;
  }
  return alert;
}

/**
 * When a resolved alert ended, as its records take it (resolvedAt, the time to recover): its
 * endsAt when that lies between its startsAt and when rollguard received the resolution (ahead of
 * that, within a clock's skew, it is taken as received then: it cannot have ended later), else when
 * rollguard received it. endsAt is the sender's word: an endsAt before the alert started, or years
 * ahead, made a record resolved before it began or in the future, a time to recover below zero or
 * of years, and rollguard_time_to_recover_seconds_sum go down (which increase() reads as a counter
 * reset: the MTTR panel showed the whole sum as one range's).
 */
export function endedAt(a: Pick<Alert, 'startsAt' | 'endsAt' | 'receivedAt'>): number {
  return a.endsAt !== undefined && a.endsAt >= a.startsAt ? Math.min(a.endsAt, a.receivedAt) : a.receivedAt;
}

/**
 * The dedupe key of one alert notification: Alertmanager's resends (repeat_interval, retries, each
 * replica of an HA pair) carry the same fingerprint, startsAt and status.
 */
export function dedupeKey(a: Pick<Alert, 'fingerprint' | 'startsAt' | 'status'>): string {
  return `${a.fingerprint}:${a.startsAt}:${a.status}`;
}
