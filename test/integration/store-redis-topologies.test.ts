import t from 'tap';
import { RedisStore } from '../../src/store/redis.js';
import { fixture, postAlerts, testApp } from '../support/app.js';
import { RedisTopology } from '../support/redis-topologies.js';
import { storeContract } from '../support/store-contract.js';

// REDIS_URL's Sentinel and Cluster forms, against real Redis processes: the same Store contract,
// and the webhook's intake (one Lua script over the stream and the dedupe keys, which Cluster only
// allows because every key carries the same hash tag).
const topo = new RedisTopology();
t.teardown(() => topo.destroy());

for (const [name, makeUrl] of [
  ['sentinel', () => topo.sentinel()],
  ['cluster', () => topo.cluster()],
] as const) {
  t.test(`Redis ${name}`, async (t) => {
    const url = await makeUrl();
    t.comment(`${name}: ${url}`);
    const stores: RedisStore[] = [];
    t.teardown(async () => {
      for (const s of stores) await s.close();
    });
    let n = 0;
    storeContract(t, async (opts = {}) => {
      const s = new RedisStore({ url, prefix: `${name}${++n}`, ...opts });
      stores.push(s);
      await s.waitReady(10_000);
      return s;
    });
    t.test('webhook intake and dedupe', async (t) => {
      const a = new RedisStore({ url, prefix: `${name}-intake` });
      const b = new RedisStore({ url, prefix: `${name}-intake` });
      stores.push(a, b);
      await Promise.all([a.waitReady(10_000), b.waitReady(10_000)]);
      const body = fixture('alertmanager/firing-two-alerts.json');
      const [ra, rb] = await Promise.all([postAlerts(testApp({ store: a }).app, body), postAlerts(testApp({ store: b }).app, body)]);
      t.same([ra.statusCode, rb.statusCode], [200, 200]);
      t.equal(ra.json().queued + rb.json().queued, 2);
      t.equal(await a.queueDepth(), 2);
    });
  });
}
