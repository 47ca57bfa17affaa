/**
 * Redis bytes per alert and per rollback record, on a real redis-server, and the memory a retention
 * of RECORD_RETENTION days needs at a given alert rate.
 *   Phase 1, intake: N realistic alerts (bench/lib.ts batchTemplate: 8 labels, 3 annotations) go
 *   through the webhook's own normalisation into RedisStore.intake, nobody consuming: the queue
 *   entry (stream) and the dedupe key of each.
 *   Phase 2, records: `node dist/main.js serve` on the same Redis (its own key prefix), dry-run, no
 *   Prometheus, one rule matching every alert (onPrometheusDown: act): N alerts posted firing, then
 *   resolved; once the queue is empty, every key the engine left is measured by family.
 * MEMORY USAGE (SAMPLES 0: every element) per key, summed by family, and INFO memory's used_memory
 * before and after each phase. No assertions.
 *   npm run build && npx tsx bench/redis-bytes.ts [--alerts 10000] [--per-day 10000] [--days 30]
 * Writes $BENCH_OUT/redis-bytes.json.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { dedupeKey, normaliseAlert } from '../src/alertmanager/alert.js';
import { intakeLimits } from '../src/alertmanager/limits.js';
import { webhookPayloadSchema } from '../src/alertmanager/schema.js';
import { loadConfig } from '../src/config.js';
import { RedisStore } from '../src/store/redis.js';
import { startRedis } from '../test/support/redis.js';
import { batchTemplate, everyAlertRule, fillBatch, log, machine, metricSum, round, runBench, scrape, sleep, startRollguard, WEBHOOK_TOKEN, writeResult } from './lib.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ALERTS = arg('alerts', 10_000);
const PER_DAY = arg('per-day', 10_000);
const DAYS = arg('days', 30);
const BATCH = 100;

const RULES = everyAlertRule('bytes-error-rate');

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** MEMORY USAGE of every key under a prefix, summed by family (the key with ids and names cut off). */
async function byFamily(redis: Redis, prefix: string, family: (rest: string) => string) {
  const out: Record<string, { keys: number; bytes: number }> = {};
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    const pipe = redis.pipeline();
    for (const k of keys) pipe.call('MEMORY', 'USAGE', k, 'SAMPLES', '0');
    const res = (await pipe.exec()) ?? [];
    keys.forEach((k, i) => {
      const f = family(k.slice(prefix.length + 1));
      const e = (out[f] ??= { keys: 0, bytes: 0 });
      e.keys++;
      e.bytes += Number(res[i]?.[1] ?? 0);
    });
  } while (cursor !== '0');
  return out;
}

function family(rest: string): string {
  if (rest.startsWith('records:state:')) return 'records:state:*';
  if (rest.startsWith('records:target:')) return 'records:target:*';
  if (rest.startsWith('records')) return rest;
  if (rest.startsWith('kv:')) return `kv:${rest.slice(3).split(':')[0]}:*`;
  if (rest.startsWith('dedupe:')) return 'dedupe:*';
  if (rest.startsWith('events:')) return 'events:*';
  if (rest.startsWith('lock:') || rest.startsWith('fence:')) return `${rest.split(':')[0]}:*`;
  return rest;
}

const sum = (fams: Record<string, { bytes: number }>, pick: (f: string) => boolean) => Object.entries(fams).reduce((n, [f, e]) => (pick(f) ? n + e.bytes : n), 0);

async function post(url: string, body: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`${url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` }, body });
    await r.text();
    if (r.status === 200 || attempt > 50) return r.status;
    await sleep(200);
  }
}

async function main() {
  const m0 = machine();
  log(`redis-bytes: ${ALERTS} alerts; ${m0.nproc} cores, load ${m0.loadavg.join(' ')}`);
  const server = await startRedis();
  const redis = new Redis(server.url);
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-bench-bytes-'));
  try {
    // Phase 1: what intake keeps per alert until the engine acks it (queue) or DEDUPE_TTL passes (dedupe key).
    const config = loadConfig({});
    const store = new RedisStore({ url: server.url, prefix: 'bytes-intake' });
    await store.waitReady(5000);
    const tpl = batchTemplate(BATCH);
    const before1 = await usedMemory(redis);
    for (let b = 0; b < ALERTS / BATCH; b++) {
      const payload = webhookPayloadSchema.parse(JSON.parse(fillBatch(tpl, b)));
      const items = payload.alerts.map((a) => {
        const alert = normaliseAlert(payload, a, Date.now(), intakeLimits(config));
        return { key: dedupeKey(alert), alert };
      });
      await store.intake(items, config.DEDUPE_TTL);
    }
    const after1 = await usedMemory(redis);
    const intake = await byFamily(redis, '{bytes-intake}', family);
    await store.close();
    const queueEntry = sum(intake, (f) => f === 'queue') / ALERTS;
    const dedupe = sum(intake, (f) => f === 'dedupe:*') / ALERTS;
    const alertJson = JSON.stringify(normaliseAlert(webhookPayloadSchema.parse(JSON.parse(fillBatch(tpl, 0))), webhookPayloadSchema.parse(JSON.parse(fillBatch(tpl, 0))).alerts[0]!, Date.now(), intakeLimits(config))).length;
    log(`intake: queue entry ${Math.round(queueEntry)} B, dedupe key ${Math.round(dedupe)} B per alert (alert JSON ${alertJson} B)`);

    // Phase 2: what the engine keeps per record (firing, then resolved), through rollguard serve.
    const rulesFile = join(dir, 'rules.yaml');
    writeFileSync(rulesFile, RULES);
    const before2 = await usedMemory(redis);
    const rg = await startRollguard({ REDIS_URL: server.url, REDIS_KEY_PREFIX: 'bytes-records', RULES_PATH: rulesFile, DRY_RUN: 'true', LOG_LEVEL: 'warn' });
    try {
      const startsAt = new Date(Date.now() - 3 * 60_000).toISOString();
      const firingTpl = batchTemplate(BATCH, { startsAt });
      for (let b = 0; b < ALERTS / BATCH; b++) await post(rg.url, fillBatch(firingTpl, b));
      const drained = async (handled: number) => {
        for (const end = Date.now() + 600_000; Date.now() < end; await sleep(200)) {
          const m = await scrape(rg.url);
          if (metricSum(m, 'rollguard_events_processed_total', { outcome: 'handled' }) >= handled && (await redis.xlen('{bytes-records}:queue')) === 0) return;
        }
        throw new Error('the queue did not drain in 10 minutes');
      };
      await drained(ALERTS);
      const endsAt = new Date().toISOString();
      const resolvedTpl = firingTpl.replaceAll('"status":"firing"', '"status":"resolved"').replaceAll('"endsAt":"0001-01-01T00:00:00Z"', `"endsAt":"${endsAt}"`);
      for (let b = 0; b < ALERTS / BATCH; b++) await post(rg.url, fillBatch(resolvedTpl, b));
      await drained(2 * ALERTS);
    } finally {
      await rg.stop();
    }
    const after2 = await usedMemory(redis);
    const engine = await byFamily(redis, '{bytes-records}', family);
    const records = await redis.hlen('{bytes-records}:records');
    const perRecord = {
      json: sum(engine, (f) => f === 'records') / records,
      indexes: sum(engine, (f) => f.startsWith('records:') && f !== 'records:layout') / records,
      resolvedKey: sum(engine, (f) => f === 'kv:resolved:*') / records,
    };
    const perAlert7d = { claim: sum(engine, (f) => f === 'kv:claim:*') / records, alertRecords: sum(engine, (f) => f === 'kv:alert-records:*') / records };
    const recordTotal = perRecord.json + perRecord.indexes + perRecord.resolvedKey;

    // A retention of DAYS at PER_DAY alerts a day, every alert matching a rule (each one a record):
    // records (and their resolved keys) for DAYS, claim and alert-records keys for 7 days, a firing
    // and a resolved dedupe key per alert for DEDUPE_TTL (24 h), and a full queue (QUEUE_MAX_DEPTH).
    const queueMax = config.QUEUE_MAX_DEPTH;
    const dedupeDays = config.DEDUPE_TTL / 86_400_000;
    const parts = {
      records: DAYS * PER_DAY * recordTotal,
      claimsAndLinks: Math.min(DAYS, 7) * PER_DAY * (perAlert7d.claim + perAlert7d.alertRecords),
      dedupe: dedupeDays * PER_DAY * 2 * dedupe,
      fullQueue: queueMax * queueEntry,
    };
    const steady = parts.records + parts.claimsAndLinks + parts.dedupe;
    const reserve = queueMax * recordTotal;
    const mb = (x: number) => round(x / 2 ** 20, 1);
    const result = {
      benchmark: 'redis-bytes',
      machine: m0,
      settings: { alerts: ALERTS, batch: BATCH, redis: 'redis-server 127.0.0.1, appendonly yes, appendfsync always', alertShape: '8 labels, 3 annotations (bench/lib.ts batchTemplate)', rollguard: 'dist/main.js serve, dry-run, no Prometheus, one rule matching every alert' },
      intake: { families: intake, usedMemoryDelta: after1 - before1, perAlert: { queueEntry: round(queueEntry, 0), dedupeKey: round(dedupe, 0), usedMemory: round((after1 - before1) / ALERTS, 0) }, alertJsonBytes: alertJson },
      engine: { families: engine, records, usedMemoryDelta: after2 - before2, perRecord: { json: round(perRecord.json, 0), indexes: round(perRecord.indexes, 0), resolvedKey: round(perRecord.resolvedKey, 0), total: round(recordTotal, 0) }, perAlertFor7Days: { claim: round(perAlert7d.claim, 0), alertRecords: round(perAlert7d.alertRecords, 0) }, usedMemoryPerAlert: round((after2 - before2) / ALERTS, 0) },
      retention: {
        days: DAYS,
        alertsPerDay: PER_DAY,
        mb: { records: mb(parts.records), claimsAndLinks: mb(parts.claimsAndLinks), dedupe: mb(parts.dedupe), steady: mb(steady), fullQueue: mb(parts.fullQueue), drainReserve: mb(reserve) },
        // intake stops at REDIS_INTAKE_MAX_MEMORY of maxmemory; the rest must hold the records of a full queue
        maxmemoryMb: mb(Math.max((steady + parts.fullQueue) / config.REDIS_INTAKE_MAX_MEMORY, reserve / (1 - config.REDIS_INTAKE_MAX_MEMORY))),
      },
    };
    log(`per record ${Math.round(recordTotal)} B (JSON ${Math.round(perRecord.json)}, indexes ${Math.round(perRecord.indexes)}, resolved key ${Math.round(perRecord.resolvedKey)}); ${DAYS} days at ${PER_DAY}/day: ${result.retention.mb.steady} MB steady, maxmemory ${result.retention.maxmemoryMb} MB`);
    writeResult('redis-bytes', result);
  } finally {
    redis.disconnect();
    await server.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('redis-bytes', main);
