// The storm benchmarks' pieces: a webhook batch of the storm's alerts, and one "Alertmanager"
// sending bodies over its own keep-alive connections.
import { Agent, request } from 'node:http';
import type { Redis } from 'ioredis';
import { metricSum, scrape, sleep, WEBHOOK_TOKEN } from './lib.js';

/** Alerts queued and not acked, in every lane (the lanes' streams, see src/store/redis-lua.ts). */
export async function queueLeft(redis: Redis, prefix = '{rollguard}'): Promise<number> {
  return (await redis.xlen(`${prefix}:queue`)) + (await redis.xlen(`${prefix}:queue:p0`)) + (await redis.xlen(`${prefix}:queue:p1`));
}

/**
 * Polls the queue (and /metrics once it is empty) until `expected` events are handled and every lane is empty, or
 * until `timeoutMs` after t0. Returns when it drained (ms after t0; NaN if it did not), the events
 * handled, what was left, and the deepest queue seen.
 */
export async function waitDrained(url: string, redis: Redis, expected: number, t0: number, timeoutMs: number) {
  let handled = 0;
  let left = -1;
  let maxDepthSeen = 0;
  for (;;) {
    left = await queueLeft(redis);
    maxDepthSeen = Math.max(maxDepthSeen, left);
    // /metrics only once the queue is empty: a scrape every 100 ms costs rollguard CPU (default
    // metrics, event-loop histogram) that the storm would then be measured with
    if (left === 0) handled = metricSum(await scrape(url), 'rollguard_events_processed_total', { outcome: 'handled' });
    if (handled >= expected && left === 0) return { drainedAt: performance.now() - t0, handled, left, maxDepthSeen };
    if (performance.now() - t0 > timeoutMs) return { drainedAt: NaN, handled, left, maxDepthSeen };
    await sleep(100);
  }
}

/** Batch b of the storm: BATCH distinct HighErrorRate alerts over 500 Deployments in 20 namespaces. */
export function batchBody(b: number, BATCH: number, startsAt: string): string {
  const alerts = Array.from({ length: BATCH }, (_, j) => {
    const i = b * BATCH + j;
    const svc = `svc-${i % 500}`;
    return {
      status: 'firing',
      labels: { alertname: 'HighErrorRate', namespace: `team-${i % 20}`, deployment: svc, service: svc, severity: 'critical', pod: `${svc}-${i}`, instance: `10.1.${(i >> 8) & 255}.${i & 255}:8080` },
      annotations: { summary: 'Error rate above 5% for 2 minutes', description: `${svc} 5xx ratio is 23%` },
      startsAt,
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: 'http://prometheus.example:9090/graph',
      fingerprint: `f${i.toString(16).padStart(15, '0')}`,
    };
  });
  return JSON.stringify({
    receiver: 'rollguard',
    status: 'firing',
    alerts,
    groupLabels: { alertname: 'HighErrorRate', batch: String(b) },
    commonLabels: { alertname: 'HighErrorRate', severity: 'critical' },
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    version: '4',
    groupKey: `{}:{alertname="HighErrorRate", batch="${b}"}`,
    truncatedAlerts: 0,
  });
}

/** One "Alertmanager": its own keep-alive connections, as each HA member has. */
export function sender(port: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  return (body: string) =>
    new Promise<{ status: number; queued: number; duplicates: number; ms: number }>((resolve, reject) => {
      const t0 = performance.now();
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/alerts', method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}`, 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (data += d));
          res.on('end', () => {
            const j = (() => {
              try {
                return JSON.parse(data) as { queued?: number; duplicates?: number };
              } catch {
                return {};
              }
            })();
            resolve({ status: res.statusCode ?? 0, queued: j.queued ?? 0, duplicates: j.duplicates ?? 0, ms: performance.now() - t0 });
          });
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
}

