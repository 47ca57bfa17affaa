// Shared pieces of the reliability tests: rule files, Alertmanager-shaped payloads, an
// Alertmanager-like sender (retries 5xx and transport errors with backoff, never 4xx), and
// reading rollguard's records and metrics over HTTP.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisStore } from '../../src/store/redis.js';
import { testEngine, type FakeDeploymentAction } from '../support/engine.js';

export function ruleFile(t: { teardown(fn: () => unknown): void }, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-rel-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'rules.yaml');
  writeFileSync(file, text);
  return file;
}

export interface AmAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt: string;
  endsAt?: string;
  fingerprint: string;
}

export function payload(alerts: AmAlert[], receiver = 'rollguard') {
  return {
    version: '4',
    groupKey: `{}:{alertname="${alerts[0]?.labels.alertname ?? ''}"}`,
    truncatedAlerts: 0,
    status: alerts.some((a) => a.status === 'firing') ? 'firing' : 'resolved',
    receiver,
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    alerts: alerts.map((a) => ({ annotations: {}, endsAt: '0001-01-01T00:00:00Z', generatorURL: '', ...a })),
  };
}

export interface SendStats {
  attempts: number;
  ok: number;
  /** status -> count, for answers other than 200 */
  refused: Map<number, number>;
  transportErrors: number;
  /** every non-200 answer carried a JSON {error, message} (and Retry-After for 503) */
  malformedRefusals: string[];
}

export function newStats(): SendStats {
  return { attempts: 0, ok: 0, refused: new Map(), transportErrors: 0, malformedRefusals: [] };
}

/**
 * Posts one webhook body the way Alertmanager does: 5xx and transport errors are retried with
 * exponential backoff until `deadline`; any other non-200 is given up on (and returned).
 */
export async function sendLikeAlertmanager(url: string, token: string, body: unknown, stats: SendStats, deadline: number): Promise<number> {
  let backoff = 50;
  for (;;) {
    stats.attempts++;
    let status = 0;
    try {
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      status = r.status;
      const text = await r.text();
      if (status === 200) {
        stats.ok++;
        return 200;
      }
      stats.refused.set(status, (stats.refused.get(status) ?? 0) + 1);
      try {
        const j = JSON.parse(text) as { error?: unknown; message?: unknown };
        if (typeof j.error !== 'string' || typeof j.message !== 'string') stats.malformedRefusals.push(`${status} ${text}`);
      } catch {
        stats.malformedRefusals.push(`${status} ${text}`);
      }
      if (status === 503 && r.headers.get('retry-after') === null) stats.malformedRefusals.push('503 without Retry-After');
      if (status < 500) return status;
    } catch {
      stats.transportErrors++;
    }
    if (Date.now() > deadline) return status;
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 1000);
  }
}

export interface RecordView {
  id: string;
  target: string;
  state: string;
  owner?: string;
  alert?: { fingerprint: string; labels: Record<string, string>; startsAt: number };
  outcome?: { result: string; message: string };
  plan?: { fromRevision?: number; toRevision?: number; summary: string };
  times: Record<string, number | undefined>;
  timeline: { at: number; step: string; message: string }[];
}

export async function records(baseUrl: string, query = 'limit=1000'): Promise<RecordView[]> {
  const r = await fetch(`${baseUrl}/v1/rollbacks?${query}`);
  if (!r.ok) throw new Error(`GET /v1/rollbacks: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { rollbacks: RecordView[] }).rollbacks;
}

/** Sum of a metric's samples (matching every given label) in a Prometheus text exposition. */
export async function scrape(baseUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let replicaPrefix = 0;

/**
 * `n` engines as replicas on one real Redis (their own connections, one key prefix), sharing one
 * cluster double whose executions take `executeDelayMs`, so they overlap as on a real API server.
 */
export async function redisReplicas<A extends FakeDeploymentAction>(t: { teardown(fn: () => unknown): void }, url: string, n: number, env: Record<string, string>, action: A, executeDelayMs: number) {
  const p = `replicas${process.pid}-${++replicaPrefix}`;
  action.executeDelayMs = executeDelayMs;
  const engines = [];
  for (let i = 0; i < n; i++) {
    const store = new RedisStore({ url, prefix: p });
    t.teardown(() => store.close());
    await store.waitReady(5000);
    engines.push(testEngine({ store, action, owner: `replica-${i}`, env }));
  }
  return { engines, action };
}
