// REDIS_MIN_REPLICAS_ACK on real Redis: a primary and a replica (redis-server --replicaof), both
// Debian's. Redis replicates asynchronously, so a failover (Sentinel promoting the replica) loses
// what the replica had not copied; WAIT makes intake's 200 and a rollback's first cluster write
// wait until the replica holds the writes, and say so, naming the setting, when it does not.
import t from 'tap';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { replicaLinked, startRedis } from '../support/redis.js';
import { alert } from '../support/store-contract.js';

const primary = await startRedis();
t.teardown(() => primary.destroy());
const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
t.teardown(() => replica.destroy());
const replicaClient = new Redis(replica.url);
t.teardown(() => replicaClient.quit());

const inSync = () => replicaLinked(replicaClient);

const store = new RedisStore({ url: primary.url, prefix: 'replicas', minReplicasAck: 1, replicaAckTimeoutMs: 300, commandTimeoutMs: 2000 });
t.teardown(() => store.close());
await store.waitReady(5000);
await inSync();

t.test('with the replica linked, intake answers once the replica holds the batch', async (t) => {
  const items = ['a', 'b'].map((f) => ({ key: `k-${f}`, alert: alert(f), lane: 0 as const }));
  t.same(await store.intake(items, 60_000), { queued: 2, duplicates: 0 });
  const keys = await replicaClient.keys('{replicas}:dedupe:*');
  t.equal(keys.length, 2, 'the replica has both dedupe keys when intake answers');
  await t.resolves(store.replicated());
});

t.test('with the replica away, intake and a rollback\'s wait fail naming the setting; the resend after its return is confirmed', async (t) => {
  await replicaClient.replicaof('NO', 'ONE'); // the replica leaves: nothing is copied any more
  const items = [{ key: 'k-c', alert: alert('c'), lane: 0 as const }];
  const err = await store.intake(items, 60_000).catch((e: unknown) => e);
  t.ok(err instanceof StoreUnavailableError, 'StoreUnavailableError: the webhook answers 503 and Alertmanager retries');
  t.match((err as Error).message, /0 of the 1 replicas REDIS_MIN_REPLICAS_ACK asks for confirmed the writes within REDIS_REPLICA_ACK_TIMEOUT \(300 ms\)/);
  await t.rejects(store.replicated(), { message: /REDIS_MIN_REPLICAS_ACK/ }, 'a rollback would not write');
  // the wait holds its own connection, not the one every other store call goes through
  const order: string[] = [];
  const waiting = store.intake([{ key: 'k-d', alert: alert('d'), lane: 0 as const }], 60_000).then(() => order.push('intake'), () => order.push('intake refused'));
  await new Promise((r) => setTimeout(r, 20));
  await store.getValue('anything').then(() => order.push('read'));
  await Promise.all([waiting, ...[1, 2, 3].map(() => store.replicated().catch(() => undefined))]);
  t.same(order, ['read', 'intake refused'], 'a read made meanwhile is answered before the wait for the replicas ends');
  await replicaClient.replicaof('127.0.0.1', primary.port);
  await inSync();
  t.same(await store.intake(items, 60_000), { queued: 0, duplicates: 1 }, 'the resend: a duplicate of what the primary kept, and now confirmed');
  t.equal((await replicaClient.keys('{replicas}:dedupe:*')).length, 4, 'the replica holds the batches answered 503 too');
});

t.test('a batch of alerts no rule matches waits for nothing', async (t) => {
  await replicaClient.replicaof('NO', 'ONE');
  t.teardown(async () => {
    await replicaClient.replicaof('127.0.0.1', primary.port);
    await inSync();
  });
  t.same(await store.intake([{ key: 'u', alert: alert('u'), lane: null }], 60_000), { queued: 0, duplicates: 0, unmatched: 1 });
});
