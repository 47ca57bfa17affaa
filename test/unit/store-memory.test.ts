import t from 'tap';
import { MemoryStore } from '../../src/store/memory.js';
import { alert, storeContract } from '../support/store-contract.js';

storeContract(t, async (opts = {}) => new MemoryStore(Date.now, opts));

t.test('bounded: closed records past maxRecords are dropped oldest first, open ones never, with a note for the log', async (t) => {
  const drops: { what: string; dropped: number; detail: string }[] = [];
  const s = new MemoryStore(Date.now, { maxRecords: 100, openStates: ['held', 'in_progress'], onDrop: (what, dropped, detail) => void drops.push({ what, dropped, detail }) });
  for (let i = 0; i < 20; i++) await s.putRecord({ id: `open${i}`, target: 'Deployment/prod/a', state: 'held', createdAt: i });
  for (let i = 0; i < 200; i++) await s.putRecord({ id: `closed${String(i).padStart(3, '0')}`, target: 'Deployment/prod/a', state: 'succeeded', createdAt: 1000 + i });
  const left = await s.listRecords({ limit: 1000 });
  t.ok(left.length <= 100, `${left.length} records kept (at most MEMORY_MAX_RECORDS=100)`);
  t.equal(left.filter((r) => r.state === 'held').length, 20, 'every open record kept, though the oldest');
  const closed = left.filter((r) => r.state === 'succeeded').map((r) => r.id);
  t.equal(closed[0], 'closed199', 'the newest closed record kept');
  t.same(closed, [...closed].sort().reverse(), 'the kept closed records are the newest ones: the dropped were the oldest');
  t.equal(await s.getRecord('closed000'), null, 'the oldest closed record is gone');
  t.equal(drops.length, 1, 'one note per minute at most');
  t.equal(drops[0]!.what, 'records');
  t.match(drops[0]!.detail, /MEMORY_MAX_RECORDS=100/);
  t.same((await s.listRecords({ state: 'succeeded', limit: 1000 })).length, closed.length, 'the state index agrees');
});

t.test('bounded: dedupe keys past maxDedupeKeys are forgotten oldest first', async (t) => {
  const drops: string[] = [];
  const s = new MemoryStore(Date.now, { maxDedupeKeys: 100, onDrop: (what) => void drops.push(what) });
  for (let i = 0; i < 150; i++) await s.intake([{ key: `k${i}`, alert: alert(`f${i}`) }], 3_600_000);
  t.equal((await s.intake([{ key: 'k149', alert: alert('f149') }], 3_600_000)).queued, 0, 'a recent key is still remembered');
  t.equal((await s.intake([{ key: 'k0', alert: alert('f0') }], 3_600_000)).queued, 1, 'the oldest was forgotten: its resend is queued again (handled idempotently)');
  t.same(drops, ['dedupe_keys']);
});

t.test('bounded: many expired dedupe keys are swept as intake goes on', async (t) => {
  let now = 1_000_000;
  const s = new MemoryStore(() => now);
  for (let i = 0; i < 1000; i++) await s.intake([{ key: `k${i}`, alert: alert(`f${i}`) }], 1000);
  now += 2000;
  await s.intake([{ key: 'late', alert: alert('late') }], 1000);
  t.equal((s as unknown as { dedupe: Map<string, number> }).dedupe.size, 1, 'only the live key is left');
});
