import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppDeps } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store } from '../../src/store/store.js';

export const WEBHOOK_TOKEN = 'webhook-secret-token';
export const ADMIN_TOKEN = 'admin-secret-token';

export function fixture(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url)), 'utf8');
}

export interface TestApp {
  app: FastifyInstance;
  store: Store;
  metrics: Metrics;
  config: Config;
}

export function testApp(opts: { env?: Record<string, string>; store?: Store; deps?: Partial<AppDeps> } = {}): TestApp {
  const config = loadConfig({ WEBHOOK_TOKEN, ADMIN_TOKEN, ...(opts.env ?? {}) });
  const store = opts.store ?? new MemoryStore();
  const metrics = createMetrics({ defaults: false });
  const app = buildApp({ config, store, metrics, logger: false, ...(opts.deps ?? {}) });
  return { app, store, metrics, config };
}

export function postAlerts(app: FastifyInstance, body: string | object, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: '/v1/alerts',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}`, ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** The value of one sample in the text exposition, or undefined. */
export async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await metrics.registry.metrics();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (want.every((w) => ls.includes(w))) return Number(m[3]);
  }
  return undefined;
}
