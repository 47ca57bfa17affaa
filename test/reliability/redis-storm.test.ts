// Redis killed (SIGKILL) and restarted during an alert storm (issue 9): two real `rollguard serve`
// replicas share one real Redis (appendonly, appendfsync always, as the README asks); senders
// behave like Alertmanager (retry 5xx and transport errors, never 4xx). While Redis is down the
// webhook answers 503 with Retry-After and /readyz is 503; afterwards every alert that was sent
// has exactly one record: none lost, none handled twice, nothing dead-lettered.
import t from 'tap';
import { WEBHOOK_TOKEN } from '../support/app.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { startServe, type ServeProcess } from '../support/serve.js';
import { figures } from './figures.js';
import { newStats, payload, records, ruleFile, scrape, sendLikeAlertmanager, sleep, type AmAlert } from './support.js';

const ALERTS = 600;
const BATCH = 10;
const SENDERS = 3;

const redis = await startRedis();
t.teardown(() => redis.destroy());

const rules = ruleFile(
  t,
  `rules:
  - name: storm
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`,
);

const env = {
  REDIS_URL: redis.url,
  WEBHOOK_TOKEN,
  RULES_PATH: rules,
  DRY_RUN: 'true',
  LOG_LEVEL: 'warn',
  REDIS_COMMAND_TIMEOUT: '500',
  QUEUE_CLAIM_IDLE: '2s',
  SCHEDULER_INTERVAL: '1s',
  LOCK_TTL: '3s',
};
const replicas: ServeProcess[] = [];
for (const name of ['storm-a', 'storm-b']) {
  const p = await startServe({ ...env, CONSUMER_NAME: name });
  replicas.push(p);
  t.teardown(() => void p.proc.kill('SIGKILL'));
}

t.test('Redis SIGKILLed mid-storm: 503 while down, every sent alert handled exactly once after', async (t) => {
  const startsAt = new Date(Date.now() - 5 * 60_000).toISOString();
  const alerts: AmAlert[] = Array.from({ length: ALERTS }, (_, i) => ({
    status: 'firing',
    labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: `svc-${i}` },
    startsAt,
    fingerprint: `storm${i.toString(16).padStart(11, '0')}`,
  }));
  const batches: AmAlert[][] = [];
  for (let i = 0; i < alerts.length; i += BATCH) batches.push(alerts.slice(i, i + BATCH));

  const stats = newStats();
  const deadline = Date.now() + 90_000;
  let next = 0;
  let acceptedBatches = 0;
  const gaveUp: number[] = [];
  const sender = async (k: number) => {
    for (;;) {
      const i = next++;
      if (i >= batches.length) return;
      // both replicas get traffic, as behind a Service
      const target = replicas[(i + k) % replicas.length]!;
      const status = await sendLikeAlertmanager(`${target.url}/v1/alerts`, WEBHOOK_TOKEN, payload(batches[i]!), stats, deadline);
      if (status === 200) acceptedBatches++;
      else gaveUp.push(i);
      await sleep(20);
    }
  };
  const storm = Promise.all(Array.from({ length: SENDERS }, (_, k) => sender(k)));

  // a third of the way in: Redis crashes
  await waitFor('a third of the storm accepted', async () => acceptedBatches >= batches.length / 3, 60_000, 10);
  await redis.kill();
  const killedAt = Date.now();
  const during = await waitFor('a 503 from the webhook while Redis is down', async () => ((stats.refused.get(503) ?? 0) > 0 ? true : undefined), 20_000, 20);
  t.ok(during, '503 while Redis is down');
  const ready = await Promise.all(replicas.map(async (r) => (await fetch(`${r.url}/readyz`)).status));
  t.same(ready, [503, 503], '/readyz 503 on both replicas while Redis is down');
  const health = await Promise.all(replicas.map(async (r) => (await fetch(`${r.url}/healthz`)).status));
  t.same(health, [200, 200], '/healthz still 200: the process is alive, only not ready');
  await sleep(Math.max(0, 3000 - (Date.now() - killedAt))); // down for about 3 s of storm
  await redis.start();
  const downMs = Date.now() - killedAt;
  await storm;

  t.same(gaveUp, [], 'every batch was accepted in the end');
  t.same([...stats.refused.keys()].filter((s) => s !== 503), [], 'no answer other than 200 and 503');
  t.same(stats.malformedRefusals, [], 'every 503 a JSON {error, message} with Retry-After');

  const recs = await waitFor(
    `${ALERTS} records`,
    async () => {
      const l = await records(replicas[0]!.url, 'limit=1000');
      // One listing is two reads of the time index (500 at a time). Until aa1abb4 the second read
      // was by offset, and the 600th record, written between the two, pushed one already listed
      // into it: 600 entries, one alert twice and the new one missing (seen on 2026-12-04). The
      // reads now go by position (test: store-redis); a listing is still taken only once it names
      // each alert once, and a loss or a double that lasts still fails below.
      return l.length >= ALERTS && l.every((r) => !['deciding', 'in_progress'].includes(r.state)) && new Set(l.map((r) => r.alert?.fingerprint)).size === ALERTS ? l : undefined;
    },
    90_000,
    500,
  ).catch(async (err) => {
    const l = await records(replicas[0]!.url, 'limit=1000');
    const have = new Set(l.map((r) => r.alert?.fingerprint));
    t.comment(`missing: ${alerts.filter((a) => !have.has(a.fingerprint)).map((a) => a.fingerprint).slice(0, 20).join(' ')}`);
    t.comment(`states: ${JSON.stringify(l.reduce<Record<string, number>>((m, r) => ((m[r.state] = (m[r.state] ?? 0) + 1), m), {}))}`);
    for (const r of replicas) t.comment(r.logs().filter((x) => (x.level as number) >= 50).slice(-5).map((x) => JSON.stringify(x)).join('\n'));
    throw err;
  });
  const byFp = new Map<string, number>();
  for (const r of recs) byFp.set(r.alert!.fingerprint, (byFp.get(r.alert!.fingerprint) ?? 0) + 1);
  const lost = alerts.filter((a) => !byFp.has(a.fingerprint)).length;
  const twice = [...byFp.values()].filter((n) => n > 1).length;
  t.equal(recs.length, ALERTS, `${ALERTS} records`);
  t.equal(lost, 0, 'no alert lost');
  t.equal(twice, 0, 'no alert handled twice');
  t.same([...new Set(recs.map((r) => r.state))], ["dry_run"], "every record closed as dry_run (no cluster in this test)");
  const dead = (await Promise.all(replicas.map((r) => scrape(r.url, 'rollguard_events_processed_total', { outcome: 'dead_lettered' })))).reduce((a, b) => a + b, 0);
  t.equal(dead, 0, 'no event dead-lettered');
  const handled = (await Promise.all(replicas.map((r) => scrape(r.url, 'rollguard_events_processed_total', { outcome: 'handled' })))).map((n) => n);
  t.comment(`events handled per replica: ${handled.join(', ')}`);
  for (const r of replicas) t.equal(r.proc.exitCode, null, 'replica still running');
  t.same(await Promise.all(replicas.map(async (r) => (await fetch(`${r.url}/readyz`)).status)), [200, 200], 'ready again');

  figures(t, 'redis-storm', {
    faults_injected: 1,
    redis_down_ms: downMs,
    alerts_sent: ALERTS,
    webhook_posts: stats.attempts,
    answered_503: stats.refused.get(503) ?? 0,
    transport_errors: stats.transportErrors,
    alerts_lost: lost,
    duplicate_records: twice,
    dead_lettered: dead,
  });
});
