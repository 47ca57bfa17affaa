// REDIS_MIN_REPLICAS_ACK through a failover, on real Redis (Debian's redis-server): two primaries,
// each with its replica, behind a TCP relay (test/support/tcp-relay.ts) that plays the failover.
// The wait for the replicas (WAIT) has its own connection, which finds its primary on its own; in a
// failover it may reach the new primary while the command connection still holds the old one, and
// a WAIT answered there proves nothing about the writes the store made. Two things are shown:
//   - a waiter connection gone silent (the old primary's pod deleted: no answer, no reset) is opened
//     again at its timeout rather than left waiting for TCP, which reports it hours later;
//   - a wait answered by another primary than the command connection's is not taken as confirmed;
//   - a command connection gone silent during that check is the one opened again, not the waiter.
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { replicaLinked, startRedis, type RedisServer } from '../support/redis.js';
import { alert } from '../support/store-contract.js';
import { startTcpRelay } from '../support/tcp-relay.js';

/** a primary and its replica, linked */
async function pair(): Promise<{ primary: RedisServer; replica: RedisServer }> {
  const primary = await startRedis();
  t.teardown(() => primary.destroy());
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
  t.teardown(() => replica.destroy());
  const c = new Redis(replica.url);
  try {
    await replicaLinked(c);
  } finally {
    c.disconnect();
  }
  return { primary, replica };
}

/** Calls `call` again every 100 ms, as Alertmanager retries a 503, until `done` holds of what it answered (or 15 s pass); every answer in order. */
async function retry(call: () => Promise<unknown>, done: (r: unknown) => boolean): Promise<unknown[]> {
  const seen: unknown[] = [];
  const end = Date.now() + 15_000;
  while (Date.now() < end) {
    const r = await call().catch((e: unknown) => e);
    seen.push(r);
    if (done(r)) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  return seen;
}

const intakeOf = (store: RedisStore, key: string) => () => store.intake([{ key, alert: alert(key), lane: 0 }], 60_000);

/** A store asking for one replica's confirmation, through a relay to `port`, ready. */
async function storeThroughRelay(t: Test, port: number, prefix: string) {
  const relay = await startTcpRelay(port);
  t.teardown(() => relay.close());
  const store = new RedisStore({ url: relay.url, prefix, minReplicasAck: 1, replicaAckTimeoutMs: 500, commandTimeoutMs: 1200 });
  t.teardown(() => store.close());
  await store.waitReady(5000);
  return { relay, store };
}

const message = (r: unknown) => (r instanceof Error ? r.message : JSON.stringify(r));

t.test('a failover: the silent waiter is opened again, the new primary\'s answer is refused until the command connection is there too', async (t) => {
  const old = await pair();
  const next = await pair();
  const { relay, store } = await storeThroughRelay(t, old.primary.port, 'failover');
  t.same(await store.intake([{ key: 'before', alert: alert('before'), lane: 0 }], 60_000), { queued: 1, duplicates: 0 }, 'answered while the old primary and its replica serve');

  // the failover: new connections reach the new primary; the waiter's connection to the old one goes silent
  relay.routeTo(next.primary.port);
  t.equal(relay.silence(/\r\nwait\r\n/i), 1, 'one connection has sent WAIT: the waiter\'s');
  const opened = relay.connections();

  const first = await store.intake([{ key: 'during', alert: alert('during'), lane: 0 }], 60_000).catch((e: unknown) => e);
  t.ok(first instanceof StoreUnavailableError, 'intake is not confirmed: the webhook answers 503 and Alertmanager retries');
  t.match(message(first), /waiting for the replicas \(REDIS_MIN_REPLICAS_ACK\): Command timed out/);

  // the waiter is opened again (to the new primary); the command connection still holds the old one
  const seen = await retry(intakeOf(store, 'during'), (r) => /different Redis primaries/.test(message(r)));
  t.ok(relay.connections() > opened, 'a new connection was opened: the waiter\'s');
  t.match(message(seen.at(-1)), /the command connection and the wait for the replicas \(REDIS_MIN_REPLICAS_ACK\) reached different Redis primaries/, `the new primary's WAIT is not taken as confirming the old one's writes (answers: ${seen.map(message).join(' | ')})`);
  t.ok(seen.every((r) => r instanceof StoreUnavailableError), 'never confirmed meanwhile');
  await t.rejects(store.replicated(), { message: /different Redis primaries/ }, 'and a rollback does not write meanwhile');

  // the command connection follows (the old primary silent to it too): once both reach the new primary, confirmed again
  relay.silence();
  const after = await retry(intakeOf(store, 'during'), (r) => !(r instanceof Error));
  const last = after.at(-1) as { queued?: number; duplicates?: number };
  // queued, or a duplicate of a try the new primary took before its wait failed: Alertmanager's resend is answered 200 either way
  t.equal((last.queued ?? 0) + (last.duplicates ?? 0), 1, `confirmed once both connections reach the new primary (answers: ${after.map(message).join(' | ')})`);
  const onNewReplica = new Redis(next.replica.url);
  t.teardown(() => onNewReplica.disconnect());
  t.equal((await onNewReplica.keys('{failover}:dedupe:*')).length, 1, 'the new primary\'s replica holds the alert when intake answers');
});

t.test('the command connection gone silent while the waiter answers: the same-primary read times out on it, and it is the command connection that is opened again', async (t) => {
  const one = await pair();
  const { relay, store } = await storeThroughRelay(t, one.primary.port, 'cmd-silent');
  t.same(await store.intake([{ key: 'x', alert: alert('x'), lane: 0 }], 60_000), { queued: 1, duplicates: 0 });
  const opened = relay.connections();
  t.equal(relay.silence(/\r\neval(sha)?\r\n/i), 1, 'one connection has run the intake script: the command connection');
  const seen = await retry(() => store.replicated().then(() => 'confirmed'), (r) => r === 'confirmed');
  t.equal(seen.at(-1), 'confirmed', `confirmed again once the command connection is opened again (answers: ${seen.map(message).join(' | ')})`);
  t.match(message(seen[0]), /^redis replicated: Command timed out/, 'the first round timed out on the command connection, and says so');
  t.equal(relay.connections(), opened + 1, 'one connection opened again: the command connection (the waiter answered throughout and was left alone)');
});
