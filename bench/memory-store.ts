/**
 * The embedded default (no REDIS_URL: the in-memory store) under volume: 20,000 webhook batches of
 * two distinct alerts each, every alert matching a rule (dry-run records), posted four at a time
 * to `node dist/main.js serve`; RSS sampled from /proc throughout and once the queue is empty.
 * Run once with the default bounds (MEMORY_MAX_RECORDS, MEMORY_MAX_DEDUPE_KEYS, MEMORY_MAX_KEYS) and once with all three lifted, to show what they hold;
 * at the end a full GC (bench/gc-on-signal.mjs) separates what the process retains from garbage.
 *   npm run build && npx tsx bench/memory-store.ts [--batches 20000]
 * Writes $BENCH_OUT/memory-store.json. No assertions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { batchTemplate, everyAlertRule, fillBatch, log, machine, metricSum, round, RssSampler, runBench, scrape, sleep, startRollguard, WEBHOOK_TOKEN, writeResult } from './lib.js';

const i = process.argv.indexOf('--batches');
const BATCHES = i > 0 ? Number(process.argv[i + 1]) : 20_000;
const IN_FLIGHT = 4;

const RULES = everyAlertRule('memory-error-rate');

async function run(rulesFile: string, env: Record<string, string>) {
  const rg = await startRollguard({ RULES_PATH: rulesFile, DRY_RUN: 'true', LOG_LEVEL: 'warn', ...env }, ['--expose-gc', '--import', './bench/gc-on-signal.mjs']);
  try {
    const rss = new RssSampler(rg.pid, 200).start();
    const tpl = batchTemplate(2, { startsAt: new Date(Date.now() - 3 * 60_000).toISOString() });
    let next = 0;
    const statuses: Record<number, number> = {};
    const poster = async () => {
      while (next < BATCHES) {
        const body = fillBatch(tpl, next++);
        for (;;) {
          const r = await fetch(`${rg.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` }, body });
          await r.text();
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          if (r.status !== 503) break;
          await sleep(100); // queue full: retry, as Alertmanager does
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, poster));
    for (const end = Date.now() + 600_000; Date.now() < end; await sleep(500)) {
      const m = await scrape(rg.url);
      if (metricSum(m, 'rollguard_events_processed_total', { outcome: 'handled' }) >= 2 * BATCHES) break;
    }
    await sleep(3000);
    const mem = rss.stop();
    let records = 0;
    for (let cursor: string | null = null, first = true; first || cursor; first = false) {
      const page = (await (await fetch(`${rg.url}/v1/rollbacks?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).json()) as { rollbacks: unknown[]; nextCursor: string | null };
      records += page.rollbacks.length;
      cursor = page.nextCursor;
    }
    const m = await scrape(rg.url);
    // what the process retains: a full GC, then its own account (bench/gc-on-signal.mjs)
    rg.proc.kill('SIGUSR2');
    let afterGc: { rssMb: number; heapUsedMb: number; externalMb: number } | undefined;
    for (let tries = 0; !afterGc && tries < 50; tries++) {
      await sleep(100);
      const line = rg.stderr().split('\n').reverse().find((l) => l.startsWith('{"afterGc"'));
      if (line) afterGc = (JSON.parse(line) as { afterGc: typeof afterGc }).afterGc;
    }
    return {
      env,
      statuses,
      handled: metricSum(m, 'rollguard_events_processed_total', { outcome: 'handled' }),
      recordsKept: records,
      rssPeakMb: mem.peakMb,
      rssEndMb: mem.lastMb,
      heapUsedEndMb: round(metricSum(m, 'nodejs_heap_size_used_bytes') / 2 ** 20, 1),
      afterGc: afterGc && { rssMb: round(afterGc.rssMb, 1), heapUsedMb: round(afterGc.heapUsedMb, 1), externalMb: round(afterGc.externalMb, 1) },
    };
  } finally {
    await rg.stop();
  }
}

async function main() {
  const m0 = machine();
  log(`memory-store: ${BATCHES} batches of 2 alerts; ${m0.nproc} cores, load ${m0.loadavg.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-bench-memstore-'));
  try {
    const rulesFile = join(dir, 'rules.yaml');
    writeFileSync(rulesFile, RULES);
    const bounded = await run(rulesFile, {});
    log(`default bound: ${bounded.recordsKept} records kept, RSS peak ${bounded.rssPeakMb} MB; after a GC heap ${bounded.afterGc?.heapUsedMb} MB, RSS ${bounded.afterGc?.rssMb} MB`);
    const unbounded = await run(rulesFile, { MEMORY_MAX_RECORDS: '10000000', MEMORY_MAX_DEDUPE_KEYS: '100000000', MEMORY_MAX_KEYS: '100000000' });
    log(`bound lifted: ${unbounded.recordsKept} records kept, RSS peak ${unbounded.rssPeakMb} MB; after a GC heap ${unbounded.afterGc?.heapUsedMb} MB, RSS ${unbounded.afterGc?.rssMb} MB`);
    writeResult('memory-store', { benchmark: 'memory-store', machine: m0, machineAtEnd: machine(), settings: { batches: BATCHES, alertsPerBatch: 2, inFlight: IN_FLIGHT, rollguard: 'dist/main.js serve, no REDIS_URL (in-memory store), dry-run, no Prometheus, one rule matching every alert' }, bounded, unbounded });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('memory-store', main);
