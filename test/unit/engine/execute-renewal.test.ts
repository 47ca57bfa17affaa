// execute() holds the target lock and the concurrency slot for as long as the action runs, with a
// LOCK_TTL under a second (300 ms here, an action of 1.5 s: five TTLs): both are renewed every
// LOCK_TTL/3 (src/engine/locks.ts), so no other owner can take the target (or the last slot)
// while the rollback writes. A renewal that finds the lock lost is logged with the record and the
// lock. (Before, execute() renewed at most once a second: the lock lapsed before its first renewal.)
import t from 'tap';
import { CONCURRENCY_POOL } from '../../../src/guards/concurrency.js';
import { lockName } from '../../../src/guards/lock.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { firing, testEngine } from '../../support/engine.js';
import { capturingLogger } from '../../support/secret-template.js';
import { aroundStore } from '../../support/store-proxy.js';

const TARGET = 'Deployment/prod/checkout';
const TTL = 300;
const ACTION_MS = 1500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('an action taking five LOCK_TTLs keeps its lock and slot all through; nobody else takes the target', async (t) => {
  const store = new MemoryStore();
  const e = testEngine({ store, env: { LOCK_TTL: `${TTL}ms`, MAX_CONCURRENT_ROLLBACKS: '1' } });
  e.prometheus!.value = 0.2; // confirmed
  e.action.executeDelayMs = ACTION_MS;
  const delivering = e.deliver(firing('HighErrorRate'));
  const [rec] = await (async () => {
    for (let i = 0; i < 200; i++) {
      const r = await e.engine.records.list({ state: 'in_progress' });
      if (r.length) return r;
      await sleep(10);
    }
    return [];
  })();
  t.ok(rec, 'the rollback is executing');
  const took: string[] = [];
  const start = Date.now();
  while (Date.now() - start < ACTION_MS - 200) {
    await sleep(100);
    const l = await store.acquireLock(lockName(TARGET), 'replica-b', 60_000);
    if (l) {
      took.push(`lock at ${Date.now() - start} ms`);
      await store.releaseLock(l);
    }
    const s = await store.acquireSlot(CONCURRENCY_POOL, 'rb-other', 1, 60_000);
    if (s.acquired) {
      took.push(`slot at ${Date.now() - start} ms`);
      await store.releaseSlot(CONCURRENCY_POOL, 'rb-other');
    }
  }
  t.same(took, [], "another owner never took the target's lock nor the slot while the action ran");
  await delivering;
  t.equal(e.action.executed.length, 1, 'executed (its fence check before the write passed)');
  const [after] = await e.engine.records.list({});
  t.notMatch(after?.outcome?.message ?? '', /lock .* lost|expired: not writing/, `not stopped by a lost lock (${after?.state}: ${after?.outcome?.message ?? ''})`);
});

t.test('a renewal finding the lock lost is logged with the record and the lock', async (t) => {
  const logs = capturingLogger();
  // every renewal answers false: the lock was taken by another meanwhile
  const store = aroundStore(new MemoryStore(), async (op, _args, call) => (op === 'renewLock' ? false : call()));
  const e = testEngine({ store, logger: logs.logger, env: { LOCK_TTL: `${TTL}ms` } });
  e.prometheus!.value = 0.2;
  e.action.executeDelayMs = 400;
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  const lost = logs
    .text()
    .split('\n')
    .filter((l) => l.includes('lock lost while the rollback runs'))
    .map((l) => JSON.parse(l) as { record?: string; lock?: string });
  t.ok(lost.length > 0, 'logged');
  t.equal(lost[0]?.record, rec?.id, 'with the record id');
  t.equal(lost[0]?.lock, lockName(TARGET), 'and the lock name');
});
