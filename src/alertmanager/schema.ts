import { z } from 'zod';

/**
 * Alertmanager's webhook payload, version "4" (notify/webhook in Alertmanager).
 * Unknown fields are tolerated (newer Alertmanagers add notification_reason, routeLabels, ...).
 */
const labelSet = z.record(z.string(), z.string());

/**
 * An RFC 3339 time as Go's time.Time marshals it, which is what Alertmanager sends (and its API
 * answers): a date, `T`, a time with seconds, an optional fraction of any length (Go emits up to
 * nine digits, nanoseconds; JavaScript keeps milliseconds), then `Z` or a numeric offset `±hh:mm`.
 * endsAt is the zero time ("0001-01-01T00:00:00Z") while firing. Nothing looser: `Date.parse`
 * alone takes "1" (2001-01-01) or "Tuesday 3", and the recent-deploy guard measures from startsAt.
 * Days are checked against their month (no 30 February); lower-case `t`/`z`, which RFC 3339
 * permits and Go never writes, are refused.
 */
export const rfc3339 = z.iso.datetime({
  offset: true,
  message: 'expected an RFC 3339 timestamp such as 2026-12-06T03:00:00Z (date, T, time with seconds, optional fraction, then Z or ±hh:mm)',
});

export const webhookAlertSchema = z.looseObject({
  status: z.enum(['firing', 'resolved']),
  labels: labelSet,
  annotations: labelSet.default({}),
  startsAt: rfc3339,
  endsAt: rfc3339.optional(),
  generatorURL: z.string().default(''),
  fingerprint: z.string().min(1, 'expected a non-empty fingerprint'),
});

export const webhookPayloadSchema = z.looseObject({
  version: z.literal('4', { message: 'expected "4" (Alertmanager webhook payload version 4)' }),
  groupKey: z.string(),
  truncatedAlerts: z.number().int().nonnegative().default(0),
  status: z.enum(['firing', 'resolved']),
  receiver: z.string(),
  groupLabels: labelSet.default({}),
  commonLabels: labelSet.default({}),
  commonAnnotations: labelSet.default({}),
  externalURL: z.string().default(''),
  alerts: z.array(webhookAlertSchema),
});

export type WebhookPayload = z.infer<typeof webhookPayloadSchema>;
export type WebhookAlert = z.infer<typeof webhookAlertSchema>;

/** Turns a zod error into one line naming each failing field by its JSON path. */
export function describeZodError(err: z.ZodError, root = 'body'): string {
  return err.issues
    .slice(0, 10)
    .map((i) => `${[root, ...i.path.map(String)].join('.')}: ${i.message}`)
    .join('; ');
}
