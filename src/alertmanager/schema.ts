import { z } from 'zod';

/**
 * Alertmanager's webhook payload, version "4" (notify/webhook in Alertmanager).
 * Unknown fields are tolerated (newer Alertmanagers add notification_reason, routeLabels, ...).
 */
const labelSet = z.record(z.string(), z.string());

/** Alertmanager sends RFC 3339 times; endsAt is the zero time ("0001-01-01T00:00:00Z") while firing. */
const rfc3339 = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), { message: 'expected an RFC 3339 timestamp' });

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
