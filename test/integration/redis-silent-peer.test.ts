// Redis gone silent without closing the connection: what a Redis pod deleted in a failover looks
// like from a client (its IP is gone, nothing answers, no reset comes), or a NAT or firewall that
// dropped the flow. TCP tells nobody for a long time (keepalive's first probe is two hours away on
// Linux's defaults), so the store does not wait for it (found on 2026-12-06 in a review): the
// blocking read of the queue is bounded by its BLOCK time plus the command timeout, and a connection
// whose commands keep timing out is opened again. Here a TCP relay in front of a real redis-server
// (test/support/tcp-relay.ts) stops relaying on the connections it has, silently, and relays new
// ones again.
import t from 'tap';
import { RedisStore } from '../../src/store/redis.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { startRedis } from '../support/redis.js';
import { startTcpRelay } from '../support/tcp-relay.js';
import { alert } from '../support/store-contract.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());

t.test('connections gone silent: the blocking read gives up at its bound, and both connections are opened again', async (t) => {
  const r = await startTcpRelay(redis.port);
  t.teardown(() => r.close());
  const s = new RedisStore({ url: r.url, prefix: 'silent', commandTimeoutMs: 300 });
  t.teardown(() => s.close());
  await s.waitReady(5000);
  t.same(await s.consume('c', 10, 200, 60_000), [], 'a blocking read answered (nothing queued)');
  // a blocking read waiting (nothing queued) when the connections go silent
  const started = Date.now();
  const reading = s.consume('c', 10, 1500, 60_000).then(() => 'answered', (e: unknown) => e);
  await new Promise((res) => setTimeout(res, 400));
  r.silence();
  const read = await reading;
  t.ok(read instanceof StoreUnavailableError, `the read fails rather than waiting for ever (${String(read)})`);
  t.match(String(read), /the blocking read \(BLOCK 1500ms\) had no answer within 1800ms/);
  t.ok(Date.now() - started < 10_000, 'at its bound, not when TCP gives up');
  // the command connection: a few calls time out, then it is opened again and the store answers
  let queued = -1;
  const end = Date.now() + 15_000;
  while (queued < 0 && Date.now() < end) {
    queued = await s.intake([{ key: 'k1', alert: alert('after') }], 60_000).then((x) => x.queued, () => -1);
    if (queued < 0) await new Promise((res) => setTimeout(res, 100)); // as Alertmanager retries
  }
  t.equal(queued, 1, 'intake answers again on a new connection');
  let got: string[] = [];
  while (got.length === 0 && Date.now() < end) {
    got = await s.consume('c', 10, 200, 60_000).then((evs) => evs.map((e) => e.alert.fingerprint), () => []);
    if (got.length === 0) await new Promise((res) => setTimeout(res, 100)); // as the worker backs off
  }
  t.same(got, ['after'], 'the queue is read again');
});
