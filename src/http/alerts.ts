import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { dedupeKey, normaliseAlert } from '../alertmanager/alert.js';
import { forLog, intakeLimits, overBatchLimit, refusedBySetting, splitByLimits } from '../alertmanager/limits.js';
import { webhookPayloadSchema } from '../alertmanager/schema.js';
import { TruncatedGroups } from '../alertmanager/truncated.js';
import type { Alert } from '../alertmanager/alert.js';
import { laneOf, LAST_LANE, type Lane } from '../store/store.js';
import type { AppContext } from './context.js';
import { HttpError } from './errors.js';
import { errorSchema } from './openapi.js';
import { route } from './route.js';

const acceptedSchema = z.object({
  queued: z.number().int(),
  duplicates: z.number().int(),
  unmatched: z.number().int().optional().describe('firing alerts no rule matches (resends too): counted, not queued'),
  refused: z.number().int().optional().describe('alerts over ALERT_MAX_LABELS, ALERT_MAX_LABEL_BYTES or ALERT_MAX_BYTES, or starting further ahead of rollguard\'s clock than ALERT_MAX_CLOCK_SKEW: refused alone, counted and logged, not queued (present only when there were some)'),
});

/**
 * POST /v1/alerts: Alertmanager's webhook receiver. Answers 2xx only once every alert of the batch
 * within the per-alert limits is durably queued; 503 when the store cannot take it (errors.ts), so
 * Alertmanager retries (it retries 5xx, never 4xx or 429). An alert over a per-alert limit is
 * refused alone (counted, logged, `refused` in the answer), since a 4xx would lose its whole group;
 * only a batch over a batch limit is answered 413 (limits.ts).
 */
export function alertsRoutes(app: FastifyInstance, ctx: AppContext): void {
  const { metrics, store, config } = ctx;
  const limits = intakeLimits(config);
  /*
   * The pre-match: the highest priority of the rules an alert matches is its queue lane (P0 first),
   * one lookup in the indexed RuleSet. A firing alert no rule matches is counted and not queued
   * (lane null); a resolved one is queued in the last lane, since it may close records of a rule
   * since removed. Without the rules (tests of the route alone) every alert takes the last lane.
   */
  const laneFor = (alert: Alert): Lane | null => {
    if (!ctx.rules) return LAST_LANE;
    const p = ctx.rules.rules.priorityOf(alert);
    if (p === undefined) return alert.status === 'firing' ? null : LAST_LANE;
    return laneOf(p);
  };
  // alerts fetched back from Alertmanager (a truncated notification) take the same lanes
  const truncated = new TruncatedGroups({ store, metrics, config, now: ctx.now, laneFor });
  app.addHook('onClose', () => truncated.idle());
  route(app, ctx, {
    method: 'post',
    url: '/v1/alerts',
    summary: 'Alertmanager webhook receiver (payload version 4)',
    tags: ['intake'],
    auth: 'webhook',
    body: webhookPayloadSchema,
    compiled: true,
    storeOp: 'intake',
    bodyLimit: config.BODY_LIMIT_BYTES,
    responses: {
      200: { description: 'every alert of the batch within the per-alert limits is durably queued (or was already); an alert over ALERT_MAX_LABELS or ALERT_MAX_LABEL_BYTES (a label name or value, its fingerprint or generatorURL) or ALERT_MAX_BYTES (all of those together), or whose startsAt is further ahead of rollguard\'s clock than ALERT_MAX_CLOCK_SKEW, is refused alone, counted in `refused` and not queued', schema: acceptedSchema },
      400: { description: 'the payload is not an Alertmanager v4 webhook (a startsAt or endsAt that is not an RFC 3339 time with seconds and Z or ±hh:mm included); the message names the field', schema: errorSchema },
      413: { description: 'body over BODY_LIMIT_BYTES, more alerts than ALERT_MAX_PER_BATCH, or a groupKey, receiver or externalURL over ALERT_MAX_LABEL_BYTES (limits of the batch, not of one alert): nothing is queued; the message names the field, the limit and the setting', schema: errorSchema },
      415: { description: 'not application/json', schema: errorSchema },
      503: { description: 'the store is unavailable; nothing was queued; Alertmanager retries', schema: errorSchema },
    },
    onResponse: async (_req, reply) => {
      metrics.webhookRequests.inc({ code: String(reply.statusCode) });
      metrics.webhookDuration.observe(reply.elapsedTime / 1000);
    },
    handler: async ({ body: payload }, req) => {
      const over = overBatchLimit(payload, limits);
      if (over) {
        req.log.warn({ groupKey: forLog(payload.groupKey), receiver: forLog(payload.receiver), alerts: payload.alerts.length, limit: over }, 'webhook batch refused: over an intake limit');
        throw new HttpError(413, 'payload_too_large', over);
      }
      const receivedAt = ctx.now();
      // an alert over a per-alert limit (or starting past ALERT_MAX_CLOCK_SKEW) is dropped alone: never normalised, matched or stored
      const { kept, keptStartsAt, refused } = splitByLimits(payload.alerts, limits, (i) => `body.alerts[${i}]`, receivedAt);
      if (refused.length > 0) {
        const bySetting = refusedBySetting(refused);
        for (const [limit, n] of bySetting) metrics.alertsRefused.inc({ limit }, n);
        const settings = [...bySetting.keys()].join(', ');
        req.log.warn(
          {
            groupKey: forLog(payload.groupKey),
            receiver: forLog(payload.receiver),
            alerts: payload.alerts.length,
            refused: refused.length,
            limits: Object.fromEntries(bySetting),
            // the first few, each by index, alertname and reason: never its labels or the value over the limit
            first: refused.slice(0, 5).map((r) => ({ index: r.index, alertname: r.alertname, limit: r.setting, reason: r.message })),
          },
          `${refused.length} of the ${payload.alerts.length} alert(s) of a webhook batch pass an intake limit and are refused, not queued (${settings}: raise it, or fix what the alert's source sends: its labels, its clock); the rest of the batch is queued`,
        );
      }
      const items = kept.map((a, i) => {
        const alert = normaliseAlert(payload, a, receivedAt, limits, keptStartsAt[i]);
        return { key: dedupeKey(alert), alert, lane: laneFor(alert) };
      });
      const res = await store.intake(items, config.DEDUPE_TTL);
      const resolved = items.reduce((n, it) => n + (it.alert.status === 'resolved' ? 1 : 0), 0);
      if (items.length > resolved) metrics.alertsReceived.inc({ status: 'firing' }, items.length - resolved);
      if (resolved > 0) metrics.alertsReceived.inc({ status: 'resolved' }, resolved);
      metrics.alertsDeduplicated.inc(res.duplicates);
      if (res.unmatched) metrics.alertsUnmatched.inc(res.unmatched);
      req.log.info(
        { groupKey: forLog(payload.groupKey), receiver: forLog(payload.receiver), alerts: items.length, queued: res.queued, duplicates: res.duplicates, unmatched: res.unmatched ?? 0, refused: refused.length },
        'alerts accepted',
      );
      truncated.notice(payload, req.log);
      return refused.length > 0 ? { ...res, refused: refused.length } : res;
    },
  });
}
