import t from 'tap';
import { RedisStore } from '../../src/store/redis.js';
import { fixture, postAlerts, testApp } from '../support/app.js';
import { startRedis } from '../support/redis.js';
import { waitFor } from '../support/ports.js';

const firing = fixture('alertmanager/firing-two-alerts.json');
const redis = await startRedis();
t.teardown(() => redis.destroy());

let n = 0;
async function replica(prefix: string) {
  const store = new RedisStore({ url: redis.url, prefix, commandTimeoutMs: 1000 });
  await store.waitReady(5000);
  t.teardown(() => store.close());
  return { ...testApp({ store }), redisStore: store, name: `replica-${++n}` };
}

/** A v4 payload of `count` distinct firing alerts, as Alertmanager shapes it. */
function batch(from: number, count: number) {
  const b = JSON.parse(firing);
  const template = b.alerts[0];
  b.alerts = Array.from({ length: count }, (_, i) => ({
    ...template,
    labels: { ...template.labels, deployment: `svc-${from + i}` },
    fingerprint: `fp${(from + i).toString(16).padStart(14, '0')}`,
  }));
  return b;
}

t.test('the same payload twice, and once to each of two replicas sharing Redis: one event per alert', async (t) => {
  const a = await replica('shared-1');
  const b = await replica('shared-1');
  const results = await Promise.all([postAlerts(a.app, firing), postAlerts(b.app, firing), postAlerts(a.app, firing), postAlerts(b.app, firing)]);
  t.same(results.map((r) => r.statusCode), [200, 200, 200, 200]);
  t.equal(results.reduce((s, r) => s + r.json().queued, 0), 2, 'exactly two queued across the four deliveries');
  t.equal(await a.store.queueDepth(), 2);
  const seen = [...(await a.store.consume(a.name, 10, 0, 60_000)), ...(await b.store.consume(b.name, 10, 0, 60_000))];
  t.same(seen.map((e) => e.alert.labels.deployment).sort(), ['checkout', 'payments'], 'each alert handed to exactly one replica');
});

t.test('Redis stopped: 503; Redis back: accepted; everything accepted before is still queued', async (t) => {
  const { app, store } = await replica('outage');
  const before = [batch(0, 10), batch(10, 10), batch(20, 10)];
  for (const b of before) t.equal((await postAlerts(app, b)).statusCode, 200);
  t.equal(await store.queueDepth(), 30);

  await redis.stop();
  const during = await postAlerts(app, batch(30, 10));
  t.equal(during.statusCode, 503, 'Alertmanager will retry');
  t.equal(during.headers['retry-after'], '5');
  const ready = await app.inject('/readyz');
  t.equal(ready.statusCode, 503, 'not ready while Redis is down');

  await redis.start();
  const after = await waitFor('the webhook accepts again', async () => {
    const r = await postAlerts(app, batch(30, 10));
    return r.statusCode === 200 ? r : undefined;
  }, 15_000, 100);
  t.same(after.json(), { queued: 10, duplicates: 0 }, 'the batch refused during the outage is accepted on redelivery');
  t.equal((await app.inject('/readyz')).statusCode, 200);

  const got = await store.consume('checker', 100, 0, 60_000);
  const fps = new Set(got.map((e) => e.alert.labels.deployment));
  t.equal(got.length, 40, 'nothing lost: 30 from before the outage, 10 after');
  for (let i = 0; i < 40; i++) t.ok(fps.has(`svc-${i}`), `svc-${i} queued`);
});

t.test('a replica that dies with an event in hand: another replica takes it over', async (t) => {
  const a = await replica('takeover');
  const b = await replica('takeover');
  await postAlerts(a.app, batch(100, 1));
  const taken = await a.store.consume('dead-replica', 10, 0, 200);
  t.equal(taken.length, 1);
  await new Promise((r) => setTimeout(r, 300));
  const claimed = await b.store.consume('live-replica', 10, 0, 200);
  t.equal(claimed.length, 1);
  t.equal(claimed[0]!.id, taken[0]!.id);
  t.equal(claimed[0]!.deliveries, 2);
});
