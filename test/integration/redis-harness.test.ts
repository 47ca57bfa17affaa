// The tests' own redis-server: a port picked free and taken before its bind (by another suite's
// Redis, here a second server on it) is never mistaken for ours.
import t from 'tap';
import { RedisServer, startRedis } from '../support/redis.js';

t.test("a redis-server whose port another Redis holds fails its start at once, naming the cause; it does not answer as ours", async (t) => {
  const other = await startRedis();
  t.teardown(() => other.destroy());
  const mine = new RedisServer(other.port);
  t.teardown(() => mine.destroy());
  const started = Date.now();
  await t.rejects(mine.start(), { name: 'RedisStartError', portTaken: true, message: /exited during start-up:[\s\S]*Address already in use/ });
  t.ok(Date.now() - started < 9_000, 'at once, not at the end of the 10 s wait');
});
