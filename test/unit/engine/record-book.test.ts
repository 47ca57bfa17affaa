import t from 'tap';
import { heldByRecord, RecordBook, type RollbackRecord } from '../../../src/engine/record.js';
import { MemoryStore } from '../../../src/store/memory.js';

function record(id: string): RollbackRecord {
  return { id, target: 'Deployment/prod/checkout', state: 'deciding', createdAt: 1, updatedAt: 1, ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, source: 'alert', guards: [], dryRun: false, times: {}, timeline: [] };
}

t.test("save merges the alert's resolution, marked by another replica, into the record it writes", async (t) => {
  const store = new MemoryStore();
  const book = new RecordBook(store, () => 1_000);
  await book.markResolved('rb-1', 500);
  const rec = record('rb-1');
  await book.save(rec);
  const stored = (await book.get('rb-1'))!;
  t.equal(stored.times.resolvedAt, 500, 'the stored record has the resolution');
  t.same(stored.timeline.map((e) => e.step), ['resolved'], 'and its step, once');
  t.equal(rec.times.resolvedAt, 500, 'so has the copy in hand');
  await book.save(rec);
  t.same((await book.get('rb-1'))!.timeline.map((e) => e.step), ['resolved'], 'saved again: still once');
});

t.test('save without a resolution mark writes the record once and as it is', async (t) => {
  const store = new MemoryStore();
  let puts = 0;
  const counting = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'putRecord') return (r: Parameters<MemoryStore['putRecord']>[0]) => (puts++, target.putRecord(r));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const book = new RecordBook(counting, () => 2_000);
  await book.save(record('rb-2'));
  t.equal(puts, 1);
  const stored = (await book.get('rb-2'))!;
  t.equal(stored.times.resolvedAt, undefined);
  t.equal(stored.updatedAt, 2_000);
});

t.test("linkAlert adds to the alert's links read ahead, or reads them itself", async (t) => {
  const book = new RecordBook(new MemoryStore(), () => 0);
  await book.linkAlert('fp', 10, 'rb-a');
  const known = await book.alertLinks('fp', 10);
  t.same(known, ['rb-a']);
  await book.linkAlert('fp', 10, 'rb-b', known);
  await book.linkAlert('fp', 10, 'rb-c');
  t.same((await book.recordsOfAlert('fp', 10)).sort(), ['rb-a', 'rb-b', 'rb-c']);
});

t.test("a record's first write (its write-ahead) does not read the resolution mark; its next save does", async (t) => {
  const store = new MemoryStore();
  const reads: string[] = [];
  const counting = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'getValue') return (k: string) => (reads.push(k), target.getValue(k));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const book = new RecordBook(counting, () => 3_000);
  const rec = record('rb-3');
  await book.save(rec, { first: true });
  t.same(reads, [], 'no read on the first write');
  await book.markResolved('rb-3', 2_500);
  await book.save(rec);
  t.same(reads, ['resolved:rb-3']);
  t.equal((await book.get('rb-3'))!.times.resolvedAt, 2_500, 'the resolution marked after the write-ahead is merged by the next save');
});

// resolve() stored the resolution; the rollback's own copy (without it) is saved later and its
// merged write fails (or the replica stops): the stored record must still have the resolution.
t.test('a save that stops half-way never leaves the stored record without a resolution marked before it', async (t) => {
  const shared = new MemoryStore();
  let puts = 0;
  let failAt = -1;
  const store = new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'putRecord') {
        return async (...args: Parameters<MemoryStore['putRecord']>) => {
          if (++puts === failAt) throw new Error('store unavailable');
          return target.putRecord(...args);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const book = new RecordBook(store, () => 7_000);
  await shared.putRecord({ ...record('rb-4'), state: 'in_progress' });
  const flow = { ...record('rb-4'), state: 'in_progress' as const };
  const seen = (await book.get('rb-4'))!;
  seen.times.resolvedAt = 5;
  await book.markResolved('rb-4', 5);
  await book.save(seen);
  flow.state = 'succeeded' as never;
  failAt = puts + 2;
  await t.rejects(book.save(flow), /store unavailable/);
  const stored = (await shared.getRecord('rb-4')) as RollbackRecord;
  t.equal(stored.times.resolvedAt, 5, 'the stored record keeps the resolution');
  failAt = -1;
  await book.save(flow);
  const after = (await shared.getRecord('rb-4')) as RollbackRecord;
  t.same([after.state, after.times.resolvedAt], ['succeeded', 5], 'saved again: the new state with the resolution');
});

t.test('save expecting a state writes only while the stored record is in it, with a resolution marked meanwhile merged', async (t) => {
  const store = new MemoryStore();
  const book = new RecordBook(store, () => 8_000);
  await store.putRecord({ ...record('rb-5'), state: 'pending_approval' });
  await book.markResolved('rb-5', 6_000);
  const approved = { ...record('rb-5'), state: 'deciding' as const };
  const rejected = { ...record('rb-5'), state: 'rejected' as const };
  t.equal(await book.save(approved, { expectState: 'pending_approval' }), true, 'still pending: written');
  const stored = (await book.get('rb-5'))!;
  t.same([stored.state, stored.times.resolvedAt], ['deciding', 6_000], 'with the resolution merged');
  t.equal(await book.save(rejected, { expectState: 'pending_approval' }), false, 'no longer pending: refused');
  t.equal((await book.get('rb-5'))!.state, 'deciding', 'and nothing written');
  t.equal(await book.save(record('rb-6'), { expectState: 'pending_approval' }), false, 'no record: refused');
  t.equal(await book.get('rb-6'), null);
});

t.test("a resume-gitops landing between a close's two writes is kept: the close's second write, an older copy, merges it", async (t) => {
  for (const resolved of [false, true]) {
    const store = new MemoryStore(Date.now, { holding: heldByRecord });
    let clock = 1_000;
    const book = new RecordBook(store, () => clock);
    const rec = record(`rb-${resolved}`);
    if (resolved) rec.times.resolvedAt = 900;
    rec.state = 'in_progress';
    rec.gitops = { policy: 'suspend', owners: [], suspended: [{ kind: 'Kustomization', namespace: 'flux-system', name: 'apps', field: '/spec/suspend', set: true, at: 900 }] };
    await book.save(rec);
    // the close's first write (closeOnce: finishFrom)
    rec.state = 'succeeded';
    await book.save(rec);
    t.equal(await store.heldCount(), 1, 'held once closed: the owner is still suspended');
    // a human resumes on another replica, reading the closed record
    clock = 2_000;
    const other = (await book.get(rec.id))!;
    other.gitops!.resumed = { at: clock, by: 'alice', restored: ['Flux Kustomization flux-system/apps: spec.suspend removed (as before)'] };
    book.step(other, 'gitops_resumed', 'resumed by alice');
    await book.markResumed(other.id, other.gitops!.resumed, other.timeline.at(-1)!);
    await book.save(other);
    t.equal(await store.heldCount(), 0, 'resumed: held no more');
    // then the close's second write, its notification in the timeline: the older copy
    clock = 2_001;
    book.step(rec, 'notified', 'sent to slack');
    await book.save(rec);
    const stored = (await book.get(rec.id))!;
    t.equal(stored.gitops?.resumed?.by, 'alice', `${resolved ? 'a resolved record' : 'a record'}: the resume kept`);
    t.same(stored.timeline.map((e) => e.step), ['gitops_resumed', 'notified'], 'both steps in the timeline, once');
    t.equal(stored.holds, undefined, 'the record holds nothing');
    t.equal(await store.heldCount(), 0, 'and is not held again');
    t.equal(rec.gitops?.resumed?.by, 'alice', 'the copy in hand has it too');
  }
});

t.test('a resume mark that is not one (not written by rollguard) is passed over, not thrown on every save', async (t) => {
  const store = new MemoryStore(Date.now, { holding: heldByRecord });
  const book = new RecordBook(store, () => 5);
  const rec = record('rb-odd');
  rec.gitops = { policy: 'suspend', owners: [], suspended: [{ kind: 'Kustomization', namespace: 'flux-system', name: 'apps', field: '/spec/suspend', set: true, at: 1 }] };
  await book.save(rec);
  for (const v of ['{not json', '{"resumed":{"by":1}}', 'null']) {
    await store.setValue('gitops-resumed:rb-odd', v, { ttlMs: 60_000 });
    t.equal(await book.save(rec), true, `saved with the mark ${JSON.stringify(v)}`);
    t.equal((await book.get('rb-odd'))!.gitops?.resumed, undefined, 'and not taken for a resume');
  }
});
