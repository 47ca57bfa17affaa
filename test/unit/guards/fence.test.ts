import t from 'tap';
import { checkFence } from '../../../src/guards/lock.js';
import { MemoryStore } from '../../../src/store/memory.js';

t.test('checkFence: every lock still ours is renewed', async (t) => {
  const store = new MemoryStore();
  const a = (await store.acquireLock('target:Deployment/prod/a', 'me', 1_000))!;
  const b = (await store.acquireLock('target:Service/prod/b', 'me', 1_000))!;
  await checkFence(store, [a, b], 60_000);
  await new Promise((r) => setTimeout(r, 1_100));
  t.equal(await store.acquireLock(a.name, 'other', 1_000), null, 'the first lock was renewed past its first TTL');
  t.equal(await store.acquireLock(b.name, 'other', 1_000), null, 'and so was the second');
});

t.test('checkFence: a lock taken by another holder since is named, and its holder keeps it as it was', async (t) => {
  const store = new MemoryStore();
  const mine = (await store.acquireLock('target:Deployment/prod/a', 'me', 50))!;
  const other = (await store.acquireLock('target:Service/prod/b', 'me', 60_000))!;
  await new Promise((r) => setTimeout(r, 80));
  const theirs = (await store.acquireLock(mine.name, 'them', 200))!;
  t.ok(theirs.token > mine.token, 'the other holder has a newer fencing token');
  await t.rejects(checkFence(store, [other, mine], 60_000), /lock on Deployment\/prod\/a lost \(fencing token \d+, current \d+\): not writing/);
  await new Promise((r) => setTimeout(r, 250));
  t.ok(await store.acquireLock(mine.name, 'third', 1_000), "their lock ran out at its own TTL: checkFence's renewal did not extend it");
});

t.test('checkFence: a lock released (or expired and not taken) is refused as expired', async (t) => {
  const store = new MemoryStore();
  const mine = (await store.acquireLock('target:Deployment/prod/a', 'me', 60_000))!;
  await store.releaseLock(mine);
  await t.rejects(checkFence(store, [mine], 60_000), /lock on Deployment\/prod\/a expired: not writing/);
});

t.test('checkFence: no lock at all is refused', async (t) => {
  await t.rejects(checkFence(new MemoryStore(), [], 1_000), /no lock held for this rollback/);
});
