import t from 'tap';
import { Cluster } from 'ioredis';
import { RedisStore } from '../../src/store/redis.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { startRedis } from '../support/redis.js';
import { storeContract } from '../support/store-contract.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());
let n = 0;
const stores: RedisStore[] = [];
t.teardown(async () => {
  for (const s of stores) await s.close();
});

// Each case gets its own key prefix: a fresh, empty store on the same server.
storeContract(t, async () => {
  const s = new RedisStore({ url: redis.url, prefix: `contract${++n}` });
  stores.push(s);
  await s.waitReady(5000);
  return s;
});

t.test('an unreachable Redis gives StoreUnavailableError quickly, not a hang', async (t) => {
  const s = new RedisStore({ url: 'redis://127.0.0.1:1', prefix: 'down' });
  stores.push(s);
  const t0 = Date.now();
  await t.rejects(s.intake([{ key: 'k', alert: { fingerprint: 'f' } as never }], 1000), StoreUnavailableError);
  await t.rejects(s.ping(), StoreUnavailableError);
  t.ok(Date.now() - t0 < 5000, 'fails fast');
});

t.test('sentinel and cluster URLs are understood', async (t) => {
  const { createRedisClient } = await import('../../src/store/redis.js');
  const sentinel = createRedisClient('redis-sentinel://:pw@127.0.0.1:26379,127.0.0.2:26380/mymaster', { lazyConnect: true });
  t.same((sentinel.options as { sentinels: unknown }).sentinels, [
    { host: '127.0.0.1', port: 26379 },
    { host: '127.0.0.2', port: 26380 },
  ]);
  t.equal((sentinel.options as { name: string }).name, 'mymaster');
  t.equal((sentinel.options as { password: string }).password, 'pw');
  sentinel.disconnect();
  const cluster = createRedisClient('redis-cluster://127.0.0.1:7000,127.0.0.1:7001', { lazyConnect: true });
  t.ok(cluster instanceof Cluster, 'a Cluster client');
  t.same((cluster as unknown as { startupNodes: unknown }).startupNodes, [
    { host: '127.0.0.1', port: 7000 },
    { host: '127.0.0.1', port: 7001 },
  ]);
  cluster.disconnect();
});
