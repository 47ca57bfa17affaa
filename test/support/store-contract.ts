import type { Test } from 'tap';
import type { Alert } from '../../src/alertmanager/alert.js';
import type { Store } from '../../src/store/store.js';

export function alert(fp: string, over: Partial<Alert> = {}): Alert {
  return {
    fingerprint: fp,
    status: 'firing',
    labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: fp },
    annotations: {},
    startsAt: 1_700_000_000_000,
    generatorURL: '',
    receiver: 'rollguard',
    groupKey: 'g',
    externalURL: '',
    receivedAt: 1_700_000_001_000,
    ...over,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The behaviour every Store must have. Run against the memory store (test/unit) and a real
 * redis-server (test/integration). `make` returns a fresh, empty store.
 */
export function storeContract(t: Test, make: () => Promise<Store>): void {
  t.test('intake queues each new dedupe key once', async (t) => {
    const s = await make();
    const a = alert('a');
    t.same(await s.intake([{ key: 'k1', alert: a }], 60_000), { queued: 1, duplicates: 0 });
    t.same(await s.intake([{ key: 'k1', alert: a }], 60_000), { queued: 0, duplicates: 1 });
    t.same(await s.intake([{ key: 'k1', alert: a }, { key: 'k2', alert: alert('b') }, { key: 'k2', alert: alert('b') }], 60_000), { queued: 1, duplicates: 2 });
    t.equal(await s.queueDepth(), 2);
  });

  t.test('a dedupe key is forgotten after its TTL', async (t) => {
    const s = await make();
    t.equal((await s.intake([{ key: 'ttl', alert: alert('a') }], 80)).queued, 1);
    await sleep(200);
    t.equal((await s.intake([{ key: 'ttl', alert: alert('a') }], 80)).queued, 1);
    t.equal(await s.queueDepth(), 2);
  });

  t.test('consume hands out entries in order, ack removes them', async (t) => {
    const s = await make();
    await s.intake(['x', 'y', 'z'].map((f) => ({ key: f, alert: alert(f) })), 60_000);
    const got = await s.consume('c1', 2, 0, 60_000);
    t.same(got.map((e) => e.alert.fingerprint), ['x', 'y']);
    t.same(got.map((e) => e.deliveries), [1, 1]);
    t.same(got[0]!.alert, alert('x'), 'the alert survives the round trip unchanged');
    const rest = await s.consume('c1', 10, 0, 60_000);
    t.same(rest.map((e) => e.alert.fingerprint), ['z']);
    t.equal(await s.queueDepth(), 3, 'delivered but unacked entries still count');
    await s.ack([got[0]!.id, got[1]!.id]);
    t.equal(await s.queueDepth(), 1);
    t.same(await s.consume('c1', 10, 0, 60_000), [], 'nothing new');
  });

  t.test('an entry not acked within claimIdle goes to another consumer', async (t) => {
    const s = await make();
    await s.intake([{ key: 'p', alert: alert('p') }], 60_000);
    const first = await s.consume('crashed', 10, 0, 100);
    t.equal(first.length, 1);
    t.same(await s.consume('other', 10, 0, 100), [], 'not before it is idle');
    await sleep(200);
    const again = await s.consume('other', 10, 0, 100);
    t.equal(again.length, 1);
    t.equal(again[0]!.id, first[0]!.id);
    t.equal(again[0]!.deliveries, 2);
    await s.ack([again[0]!.id]);
    t.equal(await s.queueDepth(), 0);
  });

  t.test('a blocking consume returns when an entry arrives', async (t) => {
    const s = await make();
    const pending = s.consume('c', 10, 3000, 60_000);
    await sleep(100);
    await s.intake([{ key: 'late', alert: alert('late') }], 60_000);
    const got = await pending;
    t.same(got.map((e) => e.alert.fingerprint), ['late']);
    const t0 = Date.now();
    t.same(await s.consume('c', 10, 150, 60_000), []);
    t.ok(Date.now() - t0 >= 100, 'an empty blocking read waits about blockMs');
  });

  t.test('locks exclude, expire, and hand out increasing fencing tokens', async (t) => {
    const s = await make();
    t.equal(await s.currentFence('dep'), 0);
    const l1 = await s.acquireLock('dep', 'r1', 150);
    t.ok(l1);
    t.equal(await s.acquireLock('dep', 'r2', 150), null, 'held by r1');
    t.ok(await s.renewLock(l1!, 150));
    await sleep(250);
    const l2 = await s.acquireLock('dep', 'r2', 5000);
    t.ok(l2, 'taken after expiry');
    t.ok(l2!.token > l1!.token, 'fencing token increases');
    t.equal(await s.currentFence('dep'), l2!.token);
    t.notOk(await s.renewLock(l1!, 1000), 'the old holder lost it');
    t.notOk(await s.releaseLock(l1!), 'the old holder cannot release it');
    t.ok(await s.releaseLock(l2!));
    const l3 = await s.acquireLock('dep', 'r1', 1000);
    t.equal(l3!.token, l2!.token + 1);
    t.ok(await s.acquireLock('other', 'r1', 1000), 'locks are per name');
  });

  t.test('sliding-window events', async (t) => {
    const s = await make();
    const now = Date.now();
    await s.addEvent('budget:x', now - 50_000, 3_600_000);
    await s.addEvent('budget:x', now - 10_000, 3_600_000);
    await s.addEvent('budget:x', now, 3_600_000);
    t.equal(await s.countEvents('budget:x', now - 60_000), 3);
    t.equal(await s.countEvents('budget:x', now - 20_000), 2);
    t.equal(await s.countEvents('budget:y', 0), 0);
    await s.addEvent('budget:x', now + 1, 5_000);
    t.equal(await s.countEvents('budget:x', 0), 2, 'events older than the window are trimmed');
  });

  t.test('values with TTL and only-if-absent', async (t) => {
    const s = await make();
    t.ok(await s.setValue('cool', '1', { ttlMs: 100, onlyIfAbsent: true }));
    t.notOk(await s.setValue('cool', '2', { onlyIfAbsent: true }));
    t.equal(await s.getValue('cool'), '1');
    await sleep(200);
    t.equal(await s.getValue('cool'), null);
    t.ok(await s.setValue('k', 'v'));
    await s.deleteValue('k');
    t.equal(await s.getValue('k'), null);
  });

  t.test('records: put, get, list newest first with filters', async (t) => {
    const s = await make();
    await s.putRecord({ id: 'r1', target: 'Deployment/prod/a', state: 'succeeded', createdAt: 1, extra: { x: 1 } });
    await s.putRecord({ id: 'r2', target: 'Deployment/prod/b', state: 'pending', createdAt: 2 });
    await s.putRecord({ id: 'r3', target: 'Deployment/prod/a', state: 'pending', createdAt: 3 });
    t.same(await s.getRecord('r1'), { id: 'r1', target: 'Deployment/prod/a', state: 'succeeded', createdAt: 1, extra: { x: 1 } });
    t.equal(await s.getRecord('nope'), null);
    t.same((await s.listRecords()).map((r) => r.id), ['r3', 'r2', 'r1']);
    t.same((await s.listRecords({ target: 'Deployment/prod/a' })).map((r) => r.id), ['r3', 'r1']);
    t.same((await s.listRecords({ state: 'pending', limit: 1 })).map((r) => r.id), ['r3']);
    await s.putRecord({ id: 'r1', target: 'Deployment/prod/a', state: 'failed', createdAt: 1 });
    t.equal((await s.getRecord('r1'))!.state, 'failed', 'put replaces');
    t.equal(await s.pruneRecords(3, ['pending']), 1, 'prunes the old closed record, keeps the open one');
    t.same((await s.listRecords()).map((r) => r.id), ['r3', 'r2']);
    t.equal(await s.getRecord('r1'), null);
  });
}
