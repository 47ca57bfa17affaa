import type { Config } from '../config.js';
import type { WebhookPayload } from './schema.js';

/**
 * What the webhook takes, so that what rollguard keeps grows with the number of alerts and not with
 * their size: alerts per batch, labels per alert, bytes per label name and value and per kept
 * annotation value, and which annotations are kept at all (the rest are dropped before anything is
 * stored). A batch over a batch limit is refused whole (413: overBatchLimit); an alert over a
 * per-alert limit is refused alone and the rest of its batch taken (splitByLimits); a kept
 * annotation over its limit is cut (keptAnnotations).
 */
export interface IntakeLimits {
  maxAlerts: number;
  /** labels per alert */
  maxLabels: number;
  /** bytes of a label value, of a label name, and of each of the alert's and the batch's other strings (fingerprint, groupKey, receiver, URLs) */
  maxLabelBytes: number;
  /** bytes of an alert's label names and values, fingerprint and generatorURL together (ALERT_MAX_BYTES; unset: 4 × maxLabelBytes) */
  maxAlertBytes: number;
  maxAnnotationBytes: number;
  /** annotation names kept; every other annotation is dropped at intake */
  annotations: readonly string[];
  /** ms an alert's startsAt may be ahead of rollguard's clock (ALERT_MAX_CLOCK_SKEW) */
  maxClockSkewMs: number;
}

export function intakeLimits(config: Pick<Config, 'ALERT_MAX_PER_BATCH' | 'ALERT_MAX_LABELS' | 'ALERT_MAX_LABEL_BYTES' | 'ALERT_MAX_BYTES' | 'ALERT_MAX_ANNOTATION_BYTES' | 'ALERT_ANNOTATIONS' | 'ALERT_MAX_CLOCK_SKEW'>): IntakeLimits {
  return {
    maxAlerts: config.ALERT_MAX_PER_BATCH,
    maxLabels: config.ALERT_MAX_LABELS,
    maxLabelBytes: config.ALERT_MAX_LABEL_BYTES,
    maxAlertBytes: config.ALERT_MAX_BYTES ?? 4 * config.ALERT_MAX_LABEL_BYTES,
    maxAnnotationBytes: config.ALERT_MAX_ANNOTATION_BYTES,
    annotations: config.ALERT_ANNOTATIONS,
    maxClockSkewMs: config.ALERT_MAX_CLOCK_SKEW,
  };
}

/** The setting a limit message names: what a refusal is counted by. */
export type LimitSetting = 'ALERT_MAX_PER_BATCH' | 'ALERT_MAX_LABELS' | 'ALERT_MAX_LABEL_BYTES' | 'ALERT_MAX_BYTES' | 'ALERT_MAX_CLOCK_SKEW';

/** A limit an alert or a batch passes: the message names the field, the limit and its setting. */
export interface OverLimit {
  setting: LimitSetting;
  message: string;
}

/** `field()` names the field, and is called only when the value is over (most are not: no string is built for them). */
function tooLong(field: () => string, value: string, what: string, max: number): OverLimit | undefined {
  // a string of at most max/3 UTF-16 units is at most max UTF-8 bytes: no need to count them
  if (value.length * 3 <= max) return undefined;
  const n = Buffer.byteLength(value);
  return n > max ? { setting: 'ALERT_MAX_LABEL_BYTES', message: `${field()}: ${n} bytes, over the ${max} ${what} may have (ALERT_MAX_LABEL_BYTES)` } : undefined;
}

/** At most this many characters of an alert's strings go into a log line or a refusal message (a label name, an alertname). */
const LOGGED_CHARS = 200;

/** s cut to LOGGED_CHARS characters for a log line, marked with … when cut. */
export function forLog(s: string): string {
  return s.length > LOGGED_CHARS ? `${s.slice(0, LOGGED_CHARS)}…` : s;
}

/**
 * The first limit one alert passes (`at` names it: `body.alerts[3]`): its label count, a label
 * name's or value's bytes, its fingerprint's or generatorURL's bytes, then all of those together
 * (ALERT_MAX_BYTES: each alone within ALERT_MAX_LABEL_BYTES, an alert of ALERT_MAX_LABELS labels
 * could otherwise hold about 800 kB, which its queue entry and its record would keep). The message
 * never holds the value over the limit, and a label name it names is cut (forLog). Work is
 * bounded: it stops at the first limit, and counts the bytes only of strings long enough to pass it.
 */
export function alertOverLimit(at: () => string, a: AlertStrings, l: Pick<IntakeLimits, 'maxLabels' | 'maxLabelBytes'> & Partial<Pick<IntakeLimits, 'maxAlertBytes'>>): OverLimit | undefined {
  const max = l.maxLabelBytes;
  const names = Object.keys(a.labels);
  if (names.length > l.maxLabels) return { setting: 'ALERT_MAX_LABELS', message: `${at()}.labels: ${names.length} labels, over the ${l.maxLabels} an alert may have (ALERT_MAX_LABELS)` };
  for (const name of names) {
    if (name.length * 3 > max && Buffer.byteLength(name) > max) return { setting: 'ALERT_MAX_LABEL_BYTES', message: `${at()}.labels: a label name of ${Buffer.byteLength(name)} bytes, over the ${max} a label name may have (ALERT_MAX_LABEL_BYTES)` };
    const over = tooLong(() => `${at()}.labels.${forLog(name)}`, a.labels[name]!, 'a label value', max);
    if (over) return over;
  }
  return tooLong(() => `${at()}.fingerprint`, a.fingerprint, 'a fingerprint', max) ?? tooLong(() => `${at()}.generatorURL`, a.generatorURL, 'a generatorURL', max) ?? tooBig(at, a, names, l.maxAlertBytes);
}

/** The alert's label names and values, fingerprint and generatorURL together over `max` bytes (ALERT_MAX_BYTES). */
function tooBig(at: () => string, a: AlertStrings, names: readonly string[], max: number | undefined): OverLimit | undefined {
  if (max === undefined) return undefined;
  // a UTF-16 unit is at most 3 UTF-8 bytes: within max/3 units is within max bytes, not counted
  let units = a.fingerprint.length + a.generatorURL.length;
  for (const name of names) units += name.length + a.labels[name]!.length;
  if (units * 3 <= max) return undefined;
  let bytes = Buffer.byteLength(a.fingerprint) + Buffer.byteLength(a.generatorURL);
  for (const name of names) bytes += Buffer.byteLength(name) + Buffer.byteLength(a.labels[name]!);
  if (bytes <= max) return undefined;
  return { setting: 'ALERT_MAX_BYTES', message: `${at()}: ${bytes} bytes of label names and values, fingerprint and generatorURL together, over the ${max} an alert may have (ALERT_MAX_BYTES)` };
}

/** What alertOverLimit reads of an alert (a webhook alert, an alert fetched from Alertmanager's API). */
export interface AlertStrings {
  labels: Record<string, string>;
  fingerprint: string;
  generatorURL: string;
  /** RFC 3339, already checked by the schema (schema.ts); read by startsTooLate */
  startsAt?: string;
}

/**
 * Whether an alert starting at `starts` (its startsAt in ms) is further ahead of `now` (rollguard's clock, when it received the alert)
 * than ALERT_MAX_CLOCK_SKEW: Prometheus stamps startsAt with its own clock, which may be a little
 * ahead, never minutes. Such an alert is refused alone rather than clamped to now: a clamped
 * startsAt would change with every resend (each its own dedupe key: queued again each time), and a
 * startsAt in the future is either a clock to fix or a forged alert. The message names the field,
 * how far ahead it is and the setting; never the value itself beyond the time.
 */
export function startsTooLate(at: () => string, starts: number, now: number, maxSkewMs: number): OverLimit | undefined {
  if (!(starts - now > maxSkewMs)) return undefined;
  const ahead = Math.ceil((starts - now) / 1000);
  return {
    setting: 'ALERT_MAX_CLOCK_SKEW',
    message: `${at()}.startsAt: ${new Date(starts).toISOString()} is ${ahead} s ahead of rollguard's clock (${new Date(now).toISOString()}), more than the ${Math.round(maxSkewMs / 1000)} s ALERT_MAX_CLOCK_SKEW allows (fix the clock of Prometheus or of rollguard's node)`,
  };
}

/** An alert refused at intake: its index in what was split, the limit it passes, and its alertname for the log. */
export interface Refusal extends OverLimit {
  index: number;
  /** the alert's alertname label cut for a log line (forLog); absent when it has none or when it is itself over ALERT_MAX_LABEL_BYTES */
  alertname?: string;
}

/**
 * The one rule for alerts over a per-alert limit, at the webhook (src/http/alerts.ts) and for the
 * alerts fetched back from Alertmanager's API (truncated.ts): each alert over ALERT_MAX_LABELS or
 * ALERT_MAX_LABEL_BYTES is refused alone (never queued, stored or matched) and the others kept,
 * at most ALERT_MAX_PER_BATCH of them (the webhook refuses a longer batch whole first: overBatchLimit).
 * Refusing the batch instead would lose every alert of the group with the one: Alertmanager does
 * not retry a 4xx. `at(i)` names the i-th alert in the messages (`body.alerts[3]`). With `now`
 * (when the alerts were received) and `l.maxClockSkewMs`, an alert whose startsAt is further ahead
 * than that is refused alone too (ALERT_MAX_CLOCK_SKEW: startsTooLate); `keptStartsAt[i]` is then
 * the startsAt of `kept[i]` in ms, parsed once (for normaliseAlert), and undefined without `now`.
 */
export function splitByLimits<A extends AlertStrings>(
  alerts: readonly A[],
  l: Pick<IntakeLimits, 'maxAlerts' | 'maxLabels' | 'maxLabelBytes'> & Partial<Pick<IntakeLimits, 'maxClockSkewMs' | 'maxAlertBytes'>>,
  at: (i: number) => string,
  now?: number,
): { kept: A[]; keptStartsAt: (number | undefined)[]; refused: Refusal[] } {
  const kept: A[] = [];
  const keptStartsAt: (number | undefined)[] = [];
  const refused: Refusal[] = [];
  const skew = l.maxClockSkewMs;
  const checkClock = now !== undefined && skew !== undefined;
  for (const [index, a] of alerts.entries()) {
    // the alert's name in a message (`body.alerts[3]`) is built only for one that is refused
    const named = () => at(index);
    // parsed once: the clock check reads it here, normaliseAlert takes it from keptStartsAt
    const starts = checkClock && a.startsAt !== undefined ? Date.parse(a.startsAt) : undefined;
    const over =
      alertOverLimit(named, a, l) ??
      (starts !== undefined ? startsTooLate(named, starts, now as number, skew as number) : undefined) ??
      (kept.length >= l.maxAlerts ? { setting: 'ALERT_MAX_PER_BATCH' as const, message: `${named()}: over the ${l.maxAlerts} alerts a batch may hold (ALERT_MAX_PER_BATCH)` } : undefined);
    if (!over) {
      kept.push(a);
      keptStartsAt.push(starts);
      continue;
    }
    const name = a.labels.alertname;
    // the alertname only when it is not itself the value over the limit
    const alertname = typeof name === 'string' && (name.length * 3 <= l.maxLabelBytes || Buffer.byteLength(name) <= l.maxLabelBytes) ? forLog(name) : undefined;
    refused.push({ ...over, index, ...(alertname !== undefined ? { alertname } : {}) });
  }
  return { kept, keptStartsAt, refused };
}

/** How many refusals each limit's setting made (metric labels, log lines). */
export function refusedBySetting(refused: readonly OverLimit[]): Map<LimitSetting, number> {
  const by = new Map<LimitSetting, number>();
  for (const r of refused) by.set(r.setting, (by.get(r.setting) ?? 0) + 1);
  return by;
}

/**
 * The first limit a webhook batch passes as a whole, as a message naming the field, the limit and
 * its setting (answered 413); undefined when the batch is within them. These belong to the batch,
 * not to one alert: more alerts than ALERT_MAX_PER_BATCH (Alertmanager's max_alerts avoids it), or
 * a groupKey, receiver or externalURL over ALERT_MAX_LABEL_BYTES. An alert over a per-alert limit
 * does not refuse the batch: splitByLimits drops it alone.
 */
export function overBatchLimit(p: WebhookPayload, l: IntakeLimits): string | undefined {
  if (p.alerts.length > l.maxAlerts) {
    return `body.alerts: ${p.alerts.length} alerts, over the ${l.maxAlerts} a batch may hold (ALERT_MAX_PER_BATCH; or set max_alerts on Alertmanager's webhook_config)`;
  }
  // Annotations are only read by people: a long one is cut (keptAnnotations), never a reason to
  // refuse anything.
  const max = l.maxLabelBytes;
  const batch = tooLong(() => 'body.groupKey', p.groupKey, 'a groupKey', max) ?? tooLong(() => 'body.receiver', p.receiver, 'a receiver', max) ?? tooLong(() => 'body.externalURL', p.externalURL, 'an externalURL', max);
  return batch?.message;
}

/**
 * The annotations rollguard keeps of an alert: only the allowed names, each cut to maxBytes
 * (ALERT_MAX_ANNOTATION_BYTES) at a character boundary.
 */
export function keptAnnotations(annotations: Record<string, string>, l: Pick<IntakeLimits, 'annotations' | 'maxAnnotationBytes'>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of l.annotations) {
    const v = annotations[name];
    if (v === undefined) continue;
    out[name] = Buffer.byteLength(v) <= l.maxAnnotationBytes ? v : cutUtf8(v, l.maxAnnotationBytes);
  }
  return out;
}

/** The longest prefix of s within maxBytes of UTF-8, never splitting a character. */
function cutUtf8(s: string, maxBytes: number): string {
  const buf = Buffer.from(s).subarray(0, maxBytes);
  const text = buf.toString('utf8');
  return text.endsWith('\uFFFD') && !s.startsWith(text) ? text.slice(0, -1) : text;
}
