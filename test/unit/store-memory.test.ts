import t from 'tap';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { createStore } from '../../src/store/index.js';
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

// MEMORY_MAX_KEYS: the claims, alert links and resolution marks the engine writes per alert.
type Keys = { keys: Map<string, unknown> };
const keyCount = (s: MemoryStore) => (s as unknown as Keys).keys.size;
const WEEK = 7 * 86_400_000;

t.test('bounded: per-alert values past maxKeys are dropped oldest first, each drop counted, and the map stays at the bound', async (t) => {
  let dropped = 0;
  const notes: { what: string; detail: string }[] = [];
  const s = new MemoryStore(Date.now, {
    maxKeys: 100,
    onDropCount: (what, n) => void (what === 'keys' && (dropped += n)),
    onDrop: (what, _n, detail) => void notes.push({ what, detail }),
  });
  let peak = 0;
  for (let i = 0; i < 1000; i++) {
    await s.setValue(`claim:r${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
    await s.setValue(`alert-records:d${i}`, JSON.stringify([`r${i}`]), { ttlMs: WEEK });
    peak = Math.max(peak, keyCount(s));
  }
  t.same({ peak: peak <= 100, end: keyCount(s) <= 100 && keyCount(s) >= 95 }, { peak: true, end: true }, `at most MEMORY_MAX_KEYS=100 kept throughout (${keyCount(s)} at the end, of 2,000 written)`);
  t.same([dropped, dropped >= 1900], [2000 - keyCount(s), true], 'every value written and not kept was counted as dropped (what="keys")');
  t.same([await s.getValue('claim:r0'), await s.getValue('alert-records:d0'), await s.getValue('alert-records:d999')], [null, null, '["r999"]'], 'the oldest went, the newest is kept');
  t.same(notes.map((n) => n.what), ['keys'], 'one log note per minute at most');
  t.match(notes[0]?.detail, /MEMORY_MAX_KEYS=100/);
});

t.test('bounded: spent values (claims of written records, links and marks of closed ones) go before those still guarding something, even older ones', async (t) => {
  const notes: string[] = [];
  const s = new MemoryStore(Date.now, { maxKeys: 100, openStates: ['deciding', 'held'], onDrop: (_w, _n, detail) => void notes.push(detail) });
  await s.putRecord({ id: 'held1', target: 'Deployment/prod/a', state: 'held', createdAt: 1 });
  // the oldest values, each still guarding: a claim whose write-ahead has not landed, the link and
  // the resolution mark of an open record
  await s.setValue('claim:unwritten', 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  await s.setValue('alert-records:open', JSON.stringify(['held1']), { ttlMs: WEEK });
  await s.setValue('resolved:held1', '5', { ttlMs: 30 * 86_400_000 });
  await s.setValue('burst:held1', '{"firing":["x"]}', { ttlMs: WEEK });
  // a flood of alerts whose records are written and closed (four values each)
  const flood = async (from: number, n: number) => {
    for (let i = from; i < from + n; i++) {
      await s.putRecord({ id: `f${i}`, target: `Deployment/prod/f${i}`, state: 'not_confirmed', createdAt: 10 + i });
      await s.setValue(`claim:f${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
      await s.setValue(`alert-records:f${i}`, JSON.stringify([`f${i}`]), { ttlMs: WEEK });
      await s.setValue(`resolved:f${i}`, '5', { ttlMs: 30 * 86_400_000 });
      await s.setValue(`burst:f${i}`, '{"firing":[]}', { ttlMs: WEEK });
    }
  };
  await flood(0, 200);
  t.same(
    { count: keyCount(s) <= 100, claim: await s.getValue('claim:unwritten'), link: await s.getValue('alert-records:open'), mark: await s.getValue('resolved:held1'), burst: await s.getValue('burst:held1') },
    { count: true, claim: 'me', link: '["held1"]', mark: '5', burst: '{"firing":["x"]}' },
    'at the bound, the four oldest values are kept: they still guard something (the burst of an open record too)',
  );
  t.equal(await s.getValue('burst:f0'), null, 'the burst of a closed record is spent, and counted against maxKeys');
  await flood(200, 200);
  t.same(
    { count: keyCount(s) <= 100, claim: await s.getValue('claim:unwritten'), link: await s.getValue('alert-records:open'), mark: await s.getValue('resolved:held1') },
    { count: true, claim: null, link: '["held1"]', mark: '5' },
    'a claim whose record is still not written 1,000 writes later is spent (the record is not coming) and goes; the open record\'s link and mark stay',
  );
  // only values still guarding left to drop: then they go too, oldest first
  for (let i = 0; i < 200; i++) await s.setValue(`claim:pending${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  t.same([keyCount(s) <= 100, await s.getValue('alert-records:open'), await s.getValue('claim:pending199')], [true, null, 'me'], 'past spent ones, the oldest guarding values go, the newest stay');
  t.match(notes.at(-1), /still guarded something/);
});

t.test('bounded: locks, the pause, cooldowns, drills and heartbeats are never dropped and not counted against maxKeys', async (t) => {
  const s = new MemoryStore(Date.now, { maxKeys: 100 });
  const lock = await s.acquireLock('target:Deployment/prod/a', 'me', 60_000);
  const exempt: [string, string][] = [
    ['control:paused', '{"by":"ops"}'],
    ['cooldown:Deployment/prod/a', '{"until":1}'],
    ['stepback:Deployment/prod/a', '2'],
    ['drill:active:Deployment/prod/a', 'd1'],
    ['drill:record:d1', '{}'],
    ['drill:index', '["d1"]'],
    ['replica:me', '1'],
  ];
  for (const [k, v] of exempt) await s.setValue(k, v, k === 'control:paused' ? {} : { ttlMs: WEEK });
  for (let i = 0; i < 1000; i++) await s.setValue(`claim:r${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  const kept = await Promise.all(exempt.map(async ([k]) => (await s.getValue(k)) !== null));
  const claims = keyCount(s) - exempt.length - 1; // the rest of the map: the lock and the exempt values
  t.same(
    { kept, lock: lock !== null && (await s.renewLock(lock, 60_000)), claimsWithinBound: claims >= 95 && claims <= 100 },
    { kept: exempt.map(() => true), lock: true, claimsWithinBound: true },
    `every exempt value and the lock kept, past the bound; the claims alone held to it (${claims})`,
  );
});

t.test('bounded: expired values still expire and free their place: only values past the bound are dropped', async (t) => {
  let now = 1_000_000;
  let dropped = 0;
  const s = new MemoryStore(() => now, { maxKeys: 100, onDropCount: (what, n) => void (what === 'keys' && (dropped += n)) });
  for (let i = 0; i < 100; i++) await s.setValue(`claim:old${i}`, 'me', { onlyIfAbsent: true, ttlMs: 1000 });
  now += 2000;
  for (let i = 0; i < 100; i++) await s.setValue(`claim:new${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  const afterExpiry = dropped;
  await s.setValue('claim:one-more', 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  t.same(
    { afterExpiry, pastBound: dropped, expired: await s.getValue('claim:old99'), oldestNew: await s.getValue('claim:new0'), count: keyCount(s) },
    { afterExpiry: 0, pastBound: 6, expired: null, oldestNew: null, count: 95 },
    'the expired values made room (none counted as dropped); one past the bound drops the oldest live ones, down to 95 %',
  );
  // a value rewritten (a claim released or taken over) counts as new
  await s.compareAndSetValue('claim:new6', 'me', 'released:me', { ttlMs: WEEK });
  for (let i = 0; i < 10; i++) await s.setValue(`claim:more${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  t.same([await s.getValue('claim:new6'), await s.getValue('claim:new7'), dropped], ['released:me', null, 12], 'the rewritten claim is kept, an older-written one dropped');
});

t.test('MEMORY_MAX_KEYS: a setting (default 20000), wired to the memory store and rollguard_store_dropped_total{store="memory",what="keys"}', async (t) => {
  t.equal(loadConfig({}).MEMORY_MAX_KEYS, 20_000);
  const metrics = createMetrics({ defaults: false });
  const s = createStore(loadConfig({ MEMORY_MAX_KEYS: '100' }), pino({ level: 'silent' }), metrics) as MemoryStore;
  for (let i = 0; i < 300; i++) await s.setValue(`claim:r${i}`, 'me', { onlyIfAbsent: true, ttlMs: WEEK });
  const v = (await metrics.storeDropped.get()).values.find((x) => x.labels.store === 'memory' && x.labels.what === 'keys');
  t.same({ count: keyCount(s) <= 100, dropped: v?.value }, { count: true, dropped: 300 - keyCount(s) });
});

// Found by a review (2026-12-08): the dedupe keys held the sender's fingerprint as it came (up to
// ALERT_MAX_LABEL_BYTES), so MEMORY_MAX_DEDUPE_KEYS keys of 4 kB fingerprints held about 400 MB for
// DEDUPE_TTL once their alerts were handled. They are kept as digests now, as the Redis store names
// its dedupe keys: what is remembered per alert no longer grows with its fingerprint.
t.test('a dedupe key is remembered as a digest of fixed length, whatever the length of the fingerprint in it', async (t) => {
  const s = new MemoryStore();
  const items = Array.from({ length: 50 }, (_, i) => {
    const a = alert(`${i}-${'f'.repeat(4000)}`);
    return { key: `${a.fingerprint}:${a.startsAt}:${a.status}`, alert: a };
  });
  t.same(await s.intake(items, 60_000), { queued: 50, duplicates: 0 });
  await s.ack((await s.consume('c', 100, 0, 60_000)).map((e) => e.id));
  t.same(await s.intake(items, 60_000), { queued: 0, duplicates: 50 }, 'still remembered: resends are duplicates');
  // what the store keeps per dedupe key (private: there is no other way to see it)
  const kept = [...(s as unknown as { dedupe: Map<string, number> }).dedupe.keys()];
  t.equal(kept.length, 50);
  t.ok(kept.every((k) => k.length === 32), 'each remembered as 32 characters, not the 4,000 of its fingerprint');
});
