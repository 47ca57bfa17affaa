import t from 'tap';
import { RedisStore } from '../../src/store/redis.js';
import { startRedis } from '../support/redis.js';
import { workerCases } from '../support/worker-cases.js';

// The queue worker's deadline and dead-lettering on a real redis-server: delivery counts come from
// the stream's pending entries (XAUTOCLAIM, XPENDING), as in production.
const redis = await startRedis();
t.teardown(() => redis.destroy());
const stores: RedisStore[] = [];
t.teardown(async () => {
  for (const s of stores) await s.close();
});
let n = 0;
workerCases(t, async () => {
  const s = new RedisStore({ url: redis.url, prefix: `worker${++n}` });
  stores.push(s);
  await s.waitReady(5000);
  return s;
});
