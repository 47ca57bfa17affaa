// A replica shutting down stays alive to the others until its drain has ended: a record it is
// still deciding (a slow confirmation) is not taken up by another replica's scheduler as "left by
// a replica that is gone"; once it has stopped cleanly its heartbeat is removed at once.
// A real serve process (replica rg-a) on a real Redis, a Prometheus answering after 45 s, and an
// in-process replica rg-b ticking its scheduler every second through A's shutdown.
import { createServer } from 'node:http';
import t from 'tap';
import pino from 'pino';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/pipeline.js';
import { createMetrics } from '../../src/metrics.js';
import { RuleHolder } from '../../src/rules/holder.js';
import { RedisStore } from '../../src/store/redis.js';
import { Notifications } from '../../src/notify/index.js';
import { fixture, WEBHOOK_TOKEN } from '../support/app.js';
import { startRedis } from '../support/redis.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { startServe } from '../support/serve.js';
import { freePort, waitFor } from '../support/ports.js';

const PROM_DELAY_MS = 45_000;

t.test('a replica in its shutdown drain keeps its heartbeat and its deciding record; after a clean stop its heartbeat is gone', { timeout: 180_000 }, async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.destroy());
  // a Prometheus that answers slowly (the "slow confirmation")
  let promCalls = 0;
  const prom = createServer((req, res) => {
    promCalls++;
    setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      const range = req.url?.includes('query_range');
      res.end(JSON.stringify({ status: 'success', data: range ? { resultType: 'matrix', result: [] } : { resultType: 'vector', result: [] } }));
    }, PROM_DELAY_MS);
  });
  const promPort = await freePort();
  await new Promise<void>((r) => prom.listen(promPort, '127.0.0.1', r));
  t.teardown(() => { prom.closeAllConnections(); prom.close(); });

  const a = await startServe({ WEBHOOK_TOKEN, REDIS_URL: redis.url, CONSUMER_NAME: 'rg-a', PROMETHEUS_URL: `http://127.0.0.1:${promPort}`, PROMETHEUS_TIMEOUT: '90s', SHUTDOWN_TIMEOUT: '60s', EVENT_DEADLINE: '60s' });
  t.teardown(() => a.proc.kill('SIGKILL'));
  const payload = JSON.parse(fixture('alertmanager/firing-two-alerts.json'));
  payload.alerts = payload.alerts.slice(0, 1);
  payload.alerts[0].startsAt = new Date(Date.now() - 180_000).toISOString();
  const res = await fetch(`${a.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` }, body: JSON.stringify(payload) });
  t.equal(res.status, 200);
  await waitFor('A asks Prometheus (deciding)', async () => promCalls > 0, 20_000, 200);
  const raw = new Redis(redis.url);
  t.teardown(() => raw.disconnect());
  t.ok(await raw.get('{rollguard}:kv:replica:rg-a'), 'A has a heartbeat while serving');

  const sigterm = Date.now();
  a.proc.kill('SIGTERM');
  let exited = false;
  let exitedAt: number | undefined;
  void a.exited.then(() => {
    exited = true;
    exitedAt = Date.now() - sigterm;
  });

  // replica B (in process, same Redis), its scheduler ticking every second while A shuts down
  const config = loadConfig({ REDIS_URL: redis.url, CONSUMER_NAME: 'rg-b' });
  const store = new RedisStore({ url: redis.url, prefix: 'rollguard' });
  await store.waitReady(5000);
  t.teardown(() => store.close());
  const metrics = createMetrics({ defaults: false });
  const logger = pino({ level: 'silent' });
  const rules = await RuleHolder.create({ paths: ['rules'], metrics, logger });
  const b = new Engine({ config, store, metrics, logger, rules, prometheus: null, kube: null, actions: {}, notifications: new Notifications([], logger, metrics), owner: 'rg-b' });
  let heartbeatGoneAt: number | undefined;
  let takenWhileAlive: string | undefined;
  while (!exited && Date.now() - sigterm < 70_000) {
    if (heartbeatGoneAt === undefined && (await raw.get('{rollguard}:kv:replica:rg-a')) === null && !exited) heartbeatGoneAt = Date.now() - sigterm;
    await b.tick();
    const recs = (await store.listRecords({})) as unknown as RollbackRecord[];
    const step = recs.flatMap((r) => r.timeline).find((s) => s.step === 'recovery');
    if (step && !exited && takenWhileAlive === undefined) {
      takenWhileAlive = `${Date.now() - sigterm} ms after SIGTERM: ${step.message}; record as B left it: ${recs[0]?.state}: ${JSON.stringify(recs[0]?.timeline.slice(-3).map((x) => `${x.step}: ${x.message}`))}`;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  t.equal(takenWhileAlive, undefined, 'a record of a replica still running its shutdown drain is not taken over as "gone"');
  t.ok(Date.now() - sigterm > 20_000, 'the drain outlasted the heartbeat TTL (15 s): the case is real');
  await a.exited;
  // The clean stop removes the heartbeat and then exits: a probe may fall between the two. Gone
  // any earlier (more than a few seconds before the exit) would be gone during the drain.
  const before = heartbeatGoneAt === undefined ? 0 : (exitedAt ?? Infinity) - heartbeatGoneAt;
  t.ok(before < 5_000, `A's heartbeat was there all through its drain (gone ${heartbeatGoneAt ?? 'never'} ms after SIGTERM, exited at ${exitedAt} ms)`);
  const [rec] = (await store.listRecords({})) as unknown as RollbackRecord[];
  t.notOk(rec?.timeline.some((s) => s.step === 'recovery'), 'decided by A alone');
  t.ok(rec && !['deciding'].includes(rec.state), `A closed the record it was deciding (${rec?.state})`);
  t.equal(await raw.get('{rollguard}:kv:replica:rg-a'), null, 'after the clean stop the heartbeat is removed at once');
});
