// Redis bounded by maxmemory with noeviction, flooded until full: a real `rollguard serve` on a
// real redis-server started with `--maxmemory 16mb --maxmemory-policy noeviction`, and senders
// that behave like Alertmanager (retry 5xx, never 4xx) posting distinct alerts until the store is
// full. Intake then answers 503 with Retry-After (store_full, naming REDIS_INTAKE_MAX_MEMORY),
// Redis never goes past its maxmemory or dies, and once the queue has drained every alert that
// was accepted (answered 200) has exactly one record: nothing accepted is lost.
import { Redis } from 'ioredis';
import t from 'tap';
import { WEBHOOK_TOKEN } from '../support/app.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { startServe } from '../support/serve.js';
import { figures } from './figures.js';
import { payload, ruleFile, scrape, sleep, type AmAlert, type RecordView } from './support.js';

const MAXMEMORY = 16 * 2 ** 20;
const BATCH = 20;
const SENDERS = 3;
/** a bound on the flood, in case the store never filled (the test then fails) */
const MAX_ALERTS = 20_000;

const redisServer = await startRedis({ args: ['--maxmemory', String(MAXMEMORY), '--maxmemory-policy', 'noeviction'] });
t.teardown(() => redisServer.destroy());
const redis = new Redis(redisServer.url);
t.teardown(() => void redis.disconnect());

const rules = ruleFile(
  t,
  `rules:
  - name: flood
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`,
);

// The sizing docs/benchmarks.md gives: what stays above REDIS_INTAKE_MAX_MEMORY (20 % of 16 MiB)
// holds the records of a full queue (200 alerts, well under 3.2 MiB of records).
const rg = await startServe({ REDIS_URL: redisServer.url, WEBHOOK_TOKEN, RULES_PATH: rules, DRY_RUN: 'true', LOG_LEVEL: 'warn', QUEUE_MAX_DEPTH: '200', SCHEDULER_INTERVAL: '1s' });
t.teardown(() => void rg.proc.kill('SIGKILL'));

async function redisMemory(): Promise<{ used: number; max: number; policy: string }> {
  const info = await redis.info('memory');
  const num = (k: string) => Number(new RegExp(`${k}:(\\d+)`).exec(info)![1]);
  return { used: num('used_memory'), max: num('maxmemory'), policy: /maxmemory_policy:(\S+)/.exec(info)![1]! };
}

interface Answer {
  status: number;
  error?: string;
  message?: string;
  retryAfter: string | null;
}

async function post(body: unknown): Promise<Answer> {
  const r = await fetch(`${rg.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  const j = (await r.json().catch(() => ({}))) as { error?: string; message?: string };
  return { status: r.status, ...(j.error ? { error: j.error } : {}), ...(j.message ? { message: j.message } : {}), retryAfter: r.headers.get('retry-after') };
}

t.test('flooded until Redis is full: 503 with Retry-After, no crash, nothing accepted lost once drained', async (t) => {
  t.same((await redisMemory()).policy, 'noeviction');
  const startsAt = new Date(Date.now() - 5 * 60_000).toISOString();
  // a 2 KiB description (kept: it is on the annotation allow-list) makes each alert's queue entry and record bigger
  const description = 'error budget burning fast; '.repeat(80).slice(0, 2048);
  const batch = (b: number): AmAlert[] =>
    Array.from({ length: BATCH }, (_, j) => {
      const i = b * BATCH + j;
      return { status: 'firing', labels: { alertname: 'HighErrorRate', namespace: `team-${i % 7}`, deployment: `svc-${i}` }, annotations: { summary: 'Error rate above 5%', description }, startsAt, fingerprint: `flood${i.toString(16).padStart(11, '0')}` };
    });

  const accepted = new Set<string>();
  const refusals = new Map<string, number>();
  const malformed: string[] = [];
  let gaveUp = 0;
  let fullSeen = false;
  let next = 0;
  let peakUsed = 0;
  const sender = async () => {
    while (!fullSeen && next * BATCH < MAX_ALERTS) {
      const alerts = batch(next++);
      // as Alertmanager: 5xx retried with backoff until the notification's deadline, then given up
      const deadline = Date.now() + 8000;
      for (let backoff = 50; ; backoff = Math.min(backoff * 2, 1000)) {
        const a = await post(payload(alerts));
        if (a.status === 200) {
          for (const x of alerts) accepted.add(x.fingerprint);
          break;
        }
        const key = `${a.status} ${a.error ?? '?'}`;
        refusals.set(key, (refusals.get(key) ?? 0) + 1);
        if (a.status !== 503 || !a.retryAfter || !a.message) malformed.push(JSON.stringify(a));
        if (a.error === 'store_full' && /REDIS_INTAKE_MAX_MEMORY/.test(a.message ?? '')) fullSeen = true;
        if (a.status < 500 || Date.now() > deadline) {
          gaveUp++;
          break;
        }
        await sleep(backoff);
      }
    }
  };
  const sampling = (async () => {
    while (!fullSeen && next * BATCH < MAX_ALERTS) {
      peakUsed = Math.max(peakUsed, (await redisMemory()).used);
      await sleep(50);
    }
  })();
  await Promise.all([...Array.from({ length: SENDERS }, () => sender()), sampling]);

  t.ok(fullSeen, `the store filled up: ${[...refusals].map(([k, n]) => `${k} x${n}`).join(', ')}`);
  t.same(malformed, [], 'every refusal a 503 with Retry-After and a JSON {error, message}');
  t.ok(accepted.size > 0, `${accepted.size} alerts accepted before it was full`);

  // The queue drains into records, within the memory intake left free.
  await waitFor('the queue drained', async () => (await redis.xlen('{rollguard}:queue')) === 0, 120_000, 200);
  await waitFor('every accepted alert handled', async () => (await scrape(rg.url, 'rollguard_events_processed_total', { outcome: 'handled' })) >= accepted.size, 60_000, 200);
  const mem = await redisMemory();
  peakUsed = Math.max(peakUsed, mem.used);
  t.ok(mem.used <= mem.max, `Redis within its maxmemory: ${(mem.used / 2 ** 20).toFixed(1)} of ${(mem.max / 2 ** 20).toFixed(1)} MiB`);

  // every record, a page at a time
  const recs: RecordView[] = [];
  let cursor: string | null = null;
  do {
    const r = await fetch(`${rg.url}/v1/rollbacks?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    const page = (await r.json()) as { rollbacks: RecordView[]; nextCursor: string | null };
    recs.push(...page.rollbacks);
    cursor = page.nextCursor;
  } while (cursor);
  const byFp = new Map<string, number>();
  for (const r of recs) byFp.set(r.alert!.fingerprint, (byFp.get(r.alert!.fingerprint) ?? 0) + 1);
  const lost = [...accepted].filter((fp) => !byFp.has(fp));
  t.same(lost.slice(0, 20), [], `no accepted alert lost (${lost.length} missing of ${accepted.size})`);
  t.equal([...byFp.values()].filter((n) => n > 1).length, 0, 'none handled twice');
  t.same([...new Set(recs.map((r) => r.state))], ['dry_run'], 'every record closed as dry_run (no cluster in this test)');
  const dead = await scrape(rg.url, 'rollguard_events_processed_total', { outcome: 'dead_lettered' });
  t.equal(dead, 0, 'nothing dead-lettered');

  // Still full: intake keeps answering 503 (Alertmanager retries), and nothing has crashed.
  const after = await post(payload(batch(next++)));
  t.equal(after.status, 503, 'still full: 503');
  t.equal(after.error, 'store_full');
  t.equal(after.retryAfter, '5', 'with Retry-After');
  t.equal(rg.proc.exitCode, null, 'rollguard still running');
  t.equal(await redis.ping(), 'PONG', 'Redis still running');
  t.equal((await fetch(`${rg.url}/readyz`)).status, 200, 'and ready: full is not down');

  figures(t, 'redis-full', {
    maxmemory_mib: MAXMEMORY / 2 ** 20,
    peak_used_mib: (peakUsed / 2 ** 20).toFixed(1),
    alerts_sent: next * BATCH,
    alerts_accepted: accepted.size,
    answered_503: [...refusals].filter(([k]) => k.startsWith('503')).reduce((n, [, v]) => n + v, 0),
    batches_given_up: gaveUp,
    alerts_lost: lost.length,
    dead_lettered: dead,
  });
});
