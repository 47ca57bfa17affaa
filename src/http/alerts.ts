import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { dedupeKey, normaliseAlert } from '../alertmanager/alert.js';
import { describeZodError, webhookPayloadSchema } from '../alertmanager/schema.js';
import { StoreUnavailableError } from '../store/store.js';
import type { AppContext } from '../app.js';
import { requireAuth } from './auth.js';
import { errorSchema } from './openapi.js';

const acceptedSchema = z.object({ queued: z.number().int(), duplicates: z.number().int() });

/**
 * POST /v1/alerts: Alertmanager's webhook receiver. Answers 2xx only once every alert of the batch
 * is durably queued; 503 when the store cannot take it, so Alertmanager retries (it retries 5xx,
 * never 4xx or 429).
 */
export function alertsRoutes(app: FastifyInstance, ctx: AppContext): void {
  const { metrics, store, config } = ctx;
  ctx.openapi.add({
    method: 'post',
    path: '/v1/alerts',
    summary: "Alertmanager webhook receiver (payload version 4)",
    tags: ['intake'],
    security: 'webhook',
    body: webhookPayloadSchema,
    responses: {
      200: { description: 'every alert of the batch is durably queued (or was already)', schema: acceptedSchema },
      400: { description: 'the payload is not an Alertmanager v4 webhook; the message names the field', schema: errorSchema },
      401: { description: 'missing or wrong credentials', schema: errorSchema },
      413: { description: 'body over BODY_LIMIT_BYTES', schema: errorSchema },
      415: { description: 'not application/json', schema: errorSchema },
      503: { description: 'the store is unavailable; nothing was queued; Alertmanager retries', schema: errorSchema },
    },
  });

  app.post(
    '/v1/alerts',
    {
      bodyLimit: config.BODY_LIMIT_BYTES,
      onRequest: requireAuth(ctx.webhookCredentials, 'rollguard-webhook'),
      onResponse: async (_req, reply) => {
        metrics.webhookRequests.inc({ code: String(reply.statusCode) });
        metrics.webhookDuration.observe(reply.elapsedTime / 1000);
      },
    },
    async (req, reply) => {
      const parsed = webhookPayloadSchema.safeParse(req.body);
      if (!parsed.success) {
        return reply.code(400).send({ error: 'bad_request', message: describeZodError(parsed.error) });
      }
      const payload = parsed.data;
      const receivedAt = ctx.now();
      const items = payload.alerts.map((a) => {
        const alert = normaliseAlert(payload, a, receivedAt);
        return { key: dedupeKey(alert), alert };
      });
      try {
        const res = await store.intake(items, config.DEDUPE_TTL);
        for (const it of items) metrics.alertsReceived.inc({ status: it.alert.status });
        metrics.alertsDeduplicated.inc(res.duplicates);
        req.log.info(
          { groupKey: payload.groupKey, receiver: payload.receiver, alerts: items.length, queued: res.queued, duplicates: res.duplicates },
          'alerts accepted',
        );
        return reply.code(200).send(res);
      } catch (err) {
        if (err instanceof StoreUnavailableError) {
          metrics.storeErrors.inc({ op: 'intake' });
          req.log.error({ err, alerts: items.length, groupKey: payload.groupKey }, 'store unavailable: answering 503 so Alertmanager retries');
          return reply
            .code(503)
            .header('retry-after', '5')
            .send({ error: 'store_unavailable', message: 'the alert store is unavailable; nothing was queued; retry' });
        }
        throw err;
      }
    },
  );
}
