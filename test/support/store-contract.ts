import type { Test } from 'tap';
import type { Alert } from '../../src/alertmanager/alert.js';
import { StoreFullError, StoreUnavailableError, type Holding, type RecordFilter, type Store, type StoredRecord } from '../../src/store/store.js';
import type { DropKind } from '../../src/store/drops.js';

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
/** The bounds a contract case may ask of a store (both stores take them under these names). */
export interface ContractBounds {
  maxQueue?: number;
  maxRecords?: number;
  openStates?: readonly string[];
  noActionStates?: readonly string[];
  holding?: Holding;
  onDropCount?: (what: DropKind, n: number) => void;
}

export function storeContract(t: Test, make: (opts?: ContractBounds) => Promise<Store>): void {
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

  t.test('lanes: consume serves lane 0, then 1, then 2, each in arrival order, whatever the arrival order across lanes', async (t) => {
    const s = await make();
    await s.intake([
      { key: 'a', alert: alert('p2-a'), lane: 2 },
      { key: 'b', alert: alert('p1-b'), lane: 1 },
      { key: 'c', alert: alert('p2-c') },
      { key: 'd', alert: alert('p0-d'), lane: 0 },
      { key: 'e', alert: alert('p1-e'), lane: 1 },
      { key: 'f', alert: alert('p0-f'), lane: 0 },
    ], 60_000);
    t.equal(await s.queueDepth(), 6, 'every lane counts in the depth');
    const first = await s.consume('c1', 3, 0, 60_000);
    t.same(first.map((e) => e.alert.fingerprint), ['p0-d', 'p0-f', 'p1-b'], 'lane 0 first, then lane 1 to fill the count');
    t.same(first.map((e) => e.lane), [0, 0, 1]);
    await s.intake([{ key: 'g', alert: alert('p0-g'), lane: 0 }], 60_000);
    const next = await s.consume('c1', 10, 0, 60_000);
    t.same(next.map((e) => e.alert.fingerprint), ['p0-g', 'p1-e', 'p2-a', 'p2-c'], 'a P0 arriving later still goes before the P1 and P2 already queued; no lane given is the last');
    await s.ack([...first, ...next].map((e) => e.id));
    t.equal(await s.queueDepth(), 0, 'one ack takes entries of every lane');
  });

  t.test('lanes: an entry left unacked is claimed again before the new entries of its lane, and after the lanes before it', async (t) => {
    const s = await make();
    await s.intake([{ key: 'x', alert: alert('p1-stale'), lane: 1 }], 60_000);
    t.equal((await s.consume('crashed', 10, 0, 100)).length, 1);
    await s.intake([
      { key: 'y', alert: alert('p1-new'), lane: 1 },
      { key: 'z', alert: alert('p0-new'), lane: 0 },
    ], 60_000);
    await sleep(200);
    const got = await s.consume('other', 10, 0, 100);
    t.same(got.map((e) => e.alert.fingerprint), ['p0-new', 'p1-stale', 'p1-new']);
    t.same(got.map((e) => e.deliveries), [1, 2, 1]);
    await s.ack(got.map((e) => e.id));
    t.equal(await s.queueDepth(), 0);
  });

  t.test('lanes: consume up to a last lane hands out only those lanes, claims included, and leaves the others queued', async (t) => {
    const s = await make();
    await s.intake([{ key: 's', alert: alert('p0-stale'), lane: 0 }], 60_000);
    t.equal((await s.consume('crashed', 10, 0, 100)).length, 1);
    await s.intake([
      { key: 'a', alert: alert('p1-a'), lane: 1 },
      { key: 'b', alert: alert('p2-b') },
      { key: 'c', alert: alert('p0-c'), lane: 0 },
    ], 60_000);
    await sleep(200);
    const p0 = await s.consume('c1', 10, 0, 100, 0);
    t.same(p0.map((e) => [e.alert.fingerprint, e.lane, e.deliveries]), [['p0-stale', 0, 2], ['p0-c', 0, 1]], 'lane 0 alone: the stale entry claimed, then the new one');
    t.same(await s.consume('c1', 10, 0, 100, 0), [], 'nothing more in lane 0, though lanes 1 and 2 hold entries');
    const upTo1 = await s.consume('c1', 10, 0, 60_000, 1);
    t.same(upTo1.map((e) => e.alert.fingerprint), ['p1-a'], 'up to lane 1: lane 2 left');
    const pending = s.consume('c1', 10, 2000, 60_000, 0);
    await sleep(100);
    await s.intake([{ key: 'late', alert: alert('p0-late'), lane: 0 }], 60_000);
    t.same((await pending).map((e) => e.alert.fingerprint), ['p0-late'], 'a blocking read of lane 0 alone wakes for a new P0 entry');
    const rest = await s.consume('c1', 10, 0, 60_000);
    t.same(rest.map((e) => e.alert.fingerprint), ['p2-b'], 'the entry of the lane left out is still queued for a read of every lane');
    await s.ack([...p0, ...upTo1, ...rest].map((e) => e.id));
    t.equal(await s.queueDepth(), 1, 'only the late P0 entry, unacked, is left');
  });

  t.test('lanes: a blocking consume wakes for an entry of any lane', async (t) => {
    const s = await make();
    const pending = s.consume('c', 10, 3000, 60_000);
    await sleep(100);
    await s.intake([{ key: 'late0', alert: alert('late-p0'), lane: 0 }], 60_000);
    const got = await pending;
    t.same(got.map((e) => [e.alert.fingerprint, e.lane]), [['late-p0', 0]]);
    await s.ack(got.map((e) => e.id));
  });

  t.test('an alert of lane null (no rule matches it) is counted, never queued, never remembered', async (t) => {
    const s = await make();
    t.same(await s.intake([
      { key: 'u1', alert: alert('unmatched'), lane: null },
      { key: 'm1', alert: alert('matched'), lane: 0 },
    ], 60_000), { queued: 1, duplicates: 0, unmatched: 1 });
    t.same(await s.intake([{ key: 'u1', alert: alert('unmatched'), lane: null }], 60_000), { queued: 0, duplicates: 0, unmatched: 1 }, 'its resend is counted again, not a duplicate: nothing of it was kept');
    t.equal(await s.queueDepth(), 1);
    t.same((await s.consume('c', 10, 0, 60_000)).map((e) => e.alert.fingerprint), ['matched']);
    t.same(await s.intake([{ key: 'u1', alert: alert('unmatched'), lane: 1 }], 60_000), { queued: 1, duplicates: 0 }, 'sent again once a rule for it is loaded: queued');
  });

  t.test('alerts no rule matches count toward no bound: QUEUE_MAX_DEPTH counts only what would be queued', async (t) => {
    const s = await make({ maxQueue: 3 });
    t.equal((await s.intake(['a', 'b'].map((f) => ({ key: f, alert: alert(f) })), 60_000)).queued, 2);
    const unmatched = ['u1', 'u2', 'u3', 'u4'].map((f) => ({ key: f, alert: alert(f), lane: null }));
    t.same(await s.intake([...unmatched, { key: 'c', alert: alert('c') }], 60_000), { queued: 1, duplicates: 0, unmatched: 4 }, 'one matched alert fits: taken beside four unmatched ones');
    t.equal(await s.queueDepth(), 3, 'the queue is full now');
    t.same(await s.intake(unmatched, 60_000), { queued: 0, duplicates: 0, unmatched: 4 }, 'a batch of unmatched alerts alone is answered with the queue full: nothing of it would be queued');
    const err = await s.intake([...unmatched, { key: 'd', alert: alert('d') }], 60_000).catch((e: unknown) => e);
    t.ok(err instanceof StoreFullError, 'a matched alert that does not fit is still refused, with its batch');
    t.equal(await s.queueDepth(), 3);
  });

  t.test('the queue is bounded: a batch that would pass maxQueue is refused whole with StoreFullError', async (t) => {
    const s = await make({ maxQueue: 5 });
    t.equal((await s.intake(['a', 'b', 'c', 'd'].map((f) => ({ key: f, alert: alert(f) })), 60_000)).queued, 4);
    const err = await s.intake(['e', 'f'].map((f) => ({ key: f, alert: alert(f) })), 60_000).catch((e: unknown) => e);
    t.ok(err instanceof StoreFullError, 'StoreFullError');
    t.ok(err instanceof StoreUnavailableError, 'a kind of StoreUnavailableError: the webhook answers 503, Alertmanager retries');
    t.match((err as Error).message, /QUEUE_MAX_DEPTH/, 'the message names the setting');
    t.equal(await s.queueDepth(), 4, 'nothing of the refused batch was queued');
    t.equal((await s.intake([{ key: 'e', alert: alert('e') }], 60_000)).queued, 1, 'its dedupe keys were not remembered either');
    const got = await s.consume('c', 10, 0, 60_000);
    await s.ack(got.map((e) => e.id));
    t.equal((await s.intake([{ key: 'f', alert: alert('f') }], 60_000)).queued, 1, 'taken again once the queue drains');
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
    // a TTL of a second: long enough for the three calls below on a loaded machine (Redis fsyncing
    // under appendfsync always), where 150 ms once lapsed between the first two
    const l1 = await s.acquireLock('dep', 'r1', 1000);
    t.ok(l1);
    t.equal(await s.acquireLock('dep', 'r2', 1000), null, 'held by r1');
    t.equal(await s.lockOwner('dep'), 'r1', 'its owner, as given');
    t.equal(await s.lockOwner('never-taken'), null);
    t.ok(await s.renewLock(l1!, 300));
    await sleep(450);
    const l2 = await s.acquireLock('dep', 'r2', 5000);
    t.ok(l2, 'taken after expiry');
    t.ok(l2!.token > l1!.token, 'fencing token increases');
    t.equal(await s.currentFence('dep'), l2!.token);
    t.notOk(await s.renewLock(l1!, 1000), 'the old holder lost it');
    t.notOk(await s.releaseLock(l1!), 'the old holder cannot release it');
    t.equal(await s.lockOwner('dep'), 'r2', 'the owner of the lock now, not of an expired one');
    t.ok(await s.releaseLock(l2!));
    t.equal(await s.lockOwner('dep'), null, 'free once given back');
    const l3 = await s.acquireLock('dep', 'r1', 1000);
    t.ok(l3!.token > l2!.token, 'tokens only grow');
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

  t.test('reserveEvents: under every key or none, at most each limit in the window, given back by releaseEvents', async (t) => {
    const s = await make();
    const now = Date.now();
    const H = 3_600_000;
    const keys = (target: string) => [
      { key: `res:target:${target}`, limit: 1 },
      { key: 'res:cluster', limit: 3 },
    ];
    t.same(await s.reserveEvents(keys('a'), 'rb-1', now, H), { reserved: true });
    t.equal(await s.countEvents('res:target:a', now - H), 1, 'counted like any event');
    t.equal(await s.countEvents('res:cluster', now - H), 1);
    t.same(await s.reserveEvents(keys('a'), 'rb-1', now + 1, H), { reserved: true }, 'the same member again: a no-op, not counted against itself');
    t.equal(await s.countEvents('res:cluster', now - H), 1, 'still one');
    t.same(await s.reserveEvents(keys('a'), 'rb-2', now, H), { reserved: false, key: 'res:target:a', count: 1 }, 'the first key at its limit is named with its count');
    t.equal(await s.countEvents('res:cluster', now - H), 1, 'refused: nothing recorded under the other keys either');
    t.same(await s.reserveEvents(keys('b'), 'rb-3', now, H), { reserved: true });
    t.same(await s.reserveEvents(keys('c'), 'rb-4', now, H), { reserved: true });
    t.same(await s.reserveEvents(keys('d'), 'rb-5', now, H), { reserved: false, key: 'res:cluster', count: 3 });
    t.equal(await s.countEvents('res:target:d', now - H), 0, 'the target key untouched when a later key refuses');
    await s.releaseEvents(keys('c').map((k) => k.key), 'rb-4');
    t.equal(await s.countEvents('res:cluster', now - H), 2, 'given back');
    t.same(await s.reserveEvents(keys('d'), 'rb-5', now, H), { reserved: true }, 'room again');
    t.same(await s.reserveEvents([{ key: 'res:short', limit: 1 }], 'old', now - 10_000, 5_000), { reserved: true });
    t.same(await s.reserveEvents([{ key: 'res:short', limit: 1 }], 'new', now, 5_000), { reserved: true }, 'events older than the window do not count');
  });

  t.test('eventMembers: the members since a time, newest first, at most a limit; released ones gone', async (t) => {
    const s = await make();
    const now = Date.now();
    t.same(await s.eventMembers('members:none', 0, 10), [], 'a key never used: none');
    for (const [member, at] of [['rb-old', now - 50_000], ['rb-b', now - 2_000], ['rb-a', now - 3_000], ['rb-c', now - 1_000]] as const) {
      t.same(await s.reserveEvents([{ key: 'members:k', limit: 10 }], member, at, 3_600_000), { reserved: true });
    }
    await s.reserveEvents([{ key: 'members:other', limit: 10 }], 'rb-elsewhere', now, 3_600_000);
    t.same(await s.eventMembers('members:k', now - 10_000, 10), ['rb-c', 'rb-b', 'rb-a'], 'by time, newest first, whatever the order reserved; older ones and other keys left out');
    t.same(await s.eventMembers('members:k', now - 2_000, 10), ['rb-c', 'rb-b'], 'since is inclusive');
    t.same(await s.eventMembers('members:k', 0, 2), ['rb-c', 'rb-b'], 'at most the limit, the newest');
    t.same(await s.eventMembers('members:k', 0, 0), [], 'a limit of 0: none');
    await s.releaseEvents(['members:k'], 'rb-c');
    t.same(await s.eventMembers('members:k', 0, 10), ['rb-b', 'rb-a', 'rb-old'], 'a released member is gone');
    t.equal(await s.countEvents('members:k', 0), 3, 'reading changed nothing');
  });

  t.test('reserveEvents and checkEvents: a refusal names the refusing key\'s holders when asked, read with it; checkEvents records nothing', async (t) => {
    const s = await make();
    const now = Date.now();
    const H = 3_600_000;
    for (const [member, at] of [['rb-old', now - 50_000], ['rb-b', now - 2_000], ['rb-a', now - 3_000]] as const) {
      t.same(await s.reserveEvents([{ key: 'held:cluster', limit: 3 }], member, at, H), { reserved: true });
    }
    const keys = [{ key: 'held:target:x', limit: 1 }, { key: 'held:cluster', limit: 3 }];
    t.same(await s.reserveEvents(keys, 'rb-new', now, H, { since: now - 10_000, limit: 10 }), { reserved: false, key: 'held:cluster', count: 3, holders: ['rb-b', 'rb-a'] }, 'newest first, since inclusive of the window asked for: the older one counted, not named');
    t.same(await s.reserveEvents(keys, 'rb-new', now, H, { since: 0, limit: 2 }), { reserved: false, key: 'held:cluster', count: 3, holders: ['rb-b', 'rb-a'] }, 'at most the limit, the newest');
    t.same(await s.reserveEvents(keys, 'rb-new', now, H), { reserved: false, key: 'held:cluster', count: 3 }, 'not asked: none named');
    t.same(await s.checkEvents(keys, 'rb-new', now, H, { since: 0, limit: 10 }), { reserved: false, key: 'held:cluster', count: 3, holders: ['rb-b', 'rb-a', 'rb-old'] }, 'checked alike');
    await s.releaseEvents(['held:cluster'], 'rb-b');
    t.same(await s.checkEvents(keys, 'rb-new', now, H, { since: 0, limit: 10 }), { reserved: true }, 'room once one is given back');
    t.equal(await s.countEvents('held:target:x', 0), 0, 'checking recorded nothing');
    t.equal(await s.countEvents('held:cluster', 0), 2);
    t.same(await s.checkEvents([{ key: 'held:cluster', limit: 2 }], 'rb-a', now, H), { reserved: true }, 'a member\'s own event does not count against it');
    t.same(await s.reserveEvents(keys, 'rb-new', now, H, { since: 0, limit: 10 }), { reserved: true });
    t.equal(await s.countEvents('held:target:x', 0), 1, 'reserved');
  });

  t.test('event windows include their first millisecond: an event at exactly at - windowMs counts, under every write and check', async (t) => {
    const s = await make();
    const T = Date.now();
    const W = 3_600_000;
    t.same(await s.reserveEvents([{ key: 'edge:k', limit: 2 }], 'rb-a', T, W), { reserved: true });
    t.same(await s.reserveEvents([{ key: 'edge:k', limit: 2 }], 'rb-b', T + W, W), { reserved: true }, 'rb-a at the window\'s first millisecond: one of two');
    t.equal(await s.countEvents('edge:k', T), 2, 'rb-a is still in the window ending at T + W');
    t.same(await s.checkEvents([{ key: 'edge:k', limit: 2 }], 'rb-c', T + W, W), { reserved: false, key: 'edge:k', count: 2 }, 'checked: no room');
    t.same(await s.reserveEvents([{ key: 'edge:k', limit: 2 }], 'rb-c', T + W, W), { reserved: false, key: 'edge:k', count: 2 }, 'reserved: no room either (rb-a and rb-b hold both units)');
    await s.addEvent('edge:added', T, W);
    await s.addEvent('edge:added', T + W, W);
    t.equal(await s.countEvents('edge:added', T), 2, 'addEvent keeps the event at the window\'s first millisecond too');
  });

  t.test('a member\'s own event from before the window does not make room for it: only its own event in the window is left out', async (t) => {
    const s = await make();
    const T = Date.now();
    const W = 1_000;
    t.same(await s.reserveEvents([{ key: 'own:k', limit: 1 }], 'rb-self', T, W), { reserved: true });
    t.same(await s.reserveEvents([{ key: 'own:k', limit: 2 }], 'rb-other', T + 500, W), { reserved: true }, 'another member, while rb-self is still in the window');
    // at T + 1200 the window starts at T + 200: rb-self's event (T) is out of it, rb-other's holds the one unit
    const check = await s.checkEvents([{ key: 'own:k', limit: 1 }], 'rb-self', T + 1_200, W);
    t.same(check, { reserved: false, key: 'own:k', count: 1 }, 'checked: refused, rb-other holds the unit');
    t.same(await s.reserveEvents([{ key: 'own:k', limit: 1 }], 'rb-self', T + 1_200, W), { reserved: false, key: 'own:k', count: 1 }, 'reserved: refused alike');
  });

  t.test('event holders of one time are named by member, descending (Redis\' order for equal scores), whatever the order reserved', async (t) => {
    const s = await make();
    const now = Date.now();
    for (const m of ['rb-b', 'rb-d', 'rb-a', 'rb-c']) await s.reserveEvents([{ key: 'ties:k', limit: 10 }], m, now, 3_600_000);
    await s.reserveEvents([{ key: 'ties:k', limit: 10 }], 'rb-0-newest', now + 1, 3_600_000);
    t.same(await s.eventMembers('ties:k', 0, 3), ['rb-0-newest', 'rb-d', 'rb-c'], 'newest first, then members of one time descending, cut at the limit');
    t.same(await s.checkEvents([{ key: 'ties:k', limit: 5 }], 'rb-x', now, 3_600_000, { since: 0, limit: 10 }), { reserved: false, key: 'ties:k', count: 5, holders: ['rb-0-newest', 'rb-d', 'rb-c', 'rb-b', 'rb-a'] }, 'a refusal names them alike');
  });

  t.test('reserveEvents at once from many callers never passes a limit', async (t) => {
    const s = await make();
    const now = Date.now();
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => s.reserveEvents([{ key: `race:t${i}`, limit: 1 }, { key: 'race:cluster', limit: 5 }], `rb-${i}`, now, 3_600_000)));
    t.equal(results.filter((r) => r.reserved).length, 5, 'exactly the limit reserved');
    t.equal(await s.countEvents('race:cluster', 0), 5);
  });

  t.test('slots: at most max members hold one, named when refused; renewed, given back, and run out when not renewed', async (t) => {
    const s = await make();
    t.same(await s.acquireSlot('pool', 'rb-1', 2, 5000), { acquired: true });
    t.same(await s.acquireSlot('pool', 'rb-1', 2, 5000), { acquired: true }, 'the same member again: its own slot, not a second one');
    t.same(await s.acquireSlot('pool', 'rb-2', 2, 5000), { acquired: true });
    const refused = await s.acquireSlot('pool', 'rb-3', 2, 5000);
    t.equal(refused.acquired, false, 'every slot held');
    t.same(refused.acquired ? [] : [...refused.holders].sort(), ['rb-1', 'rb-2'], 'the holders named');
    t.same(await s.acquireSlot('other-pool', 'rb-3', 1, 5000), { acquired: true }, 'pools are separate');
    t.same(await s.acquireSlot('pool', 'rb-3', 3, 5000), { acquired: true }, 'a higher max (a reload) lets one more in');
    await s.releaseSlot('pool', 'rb-3');
    t.notOk(await s.renewSlot('pool', 'rb-3', 5000), 'released: nothing to renew');
    await s.releaseSlot('pool', 'rb-3'); // giving back twice is harmless
    await s.releaseSlot('pool', 'rb-2');
    t.same(await s.acquireSlot('pool', 'rb-4', 2, 150), { acquired: true }, 'a released slot is free again');
    t.ok(await s.renewSlot('pool', 'rb-4', 150));
    t.equal((await s.acquireSlot('pool', 'rb-5', 2, 5000)).acquired, false, 'full again');
    await sleep(250); // rb-4's lease ran out, as a crashed replica's does
    t.notOk(await s.renewSlot('pool', 'rb-4', 5000), 'an expired lease cannot be renewed');
    t.same(await s.acquireSlot('pool', 'rb-5', 2, 5000), { acquired: true }, 'the slot of a lease that ran out comes back');
    const full = await s.acquireSlot('pool', 'rb-6', 2, 5000);
    t.same(full.acquired ? [] : [...full.holders].sort(), ['rb-1', 'rb-5']);
  });

  t.test('slot holders: the members holding a live lease, read without taking one', async (t) => {
    const s = await make();
    t.same(await s.slotHolders('pool'), [], 'a pool never used holds none');
    await s.acquireSlot('pool', 'rb-1', 2, 5000);
    await s.acquireSlot('pool', 'rb-2', 2, 150);
    await s.acquireSlot('other-pool', 'rb-9', 2, 5000);
    t.same([...(await s.slotHolders('pool'))].sort(), ['rb-1', 'rb-2'], 'this pool\'s holders only');
    t.same([...(await s.slotHolders('pool'))].sort(), ['rb-1', 'rb-2'], 'reading took nothing and changed nothing');
    t.equal((await s.acquireSlot('pool', 'rb-3', 2, 5000)).acquired, false, 'still full after the reads');
    await s.releaseSlot('pool', 'rb-1');
    t.same(await s.slotHolders('pool'), ['rb-2'], 'a released slot is not held');
    await sleep(250); // rb-2's lease ran out
    t.same(await s.slotHolders('pool'), [], 'an expired lease is not held');
    t.same(await s.acquireSlot('pool', 'rb-3', 1, 5000), { acquired: true });
    t.same(await s.slotHolders('pool'), ['rb-3']);
  });

  t.test('slots taken at once from many callers never pass max', async (t) => {
    const s = await make();
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => s.acquireSlot('race', `rb-${i}`, 3, 60_000)));
    t.equal(results.filter((r) => r.acquired).length, 3, 'exactly max slots taken');
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

  t.test('compare-and-set: replaces only the expected value, once, and sets the TTL given', async (t) => {
    const s = await make();
    t.notOk(await s.compareAndSetValue('claim', 'dead', 'b'), 'absent: nothing to replace');
    t.equal(await s.getValue('claim'), null, 'and nothing written');
    await s.setValue('claim', 'dead', { ttlMs: 60_000 });
    const [one, two] = await Promise.all([s.compareAndSetValue('claim', 'dead', 'b', { ttlMs: 100 }), s.compareAndSetValue('claim', 'dead', 'c', { ttlMs: 100 })]);
    t.same([one, two].sort(), [false, true], 'one of two racing takers wins');
    t.ok(['b', 'c'].includes((await s.getValue('claim'))!));
    await sleep(200);
    t.equal(await s.getValue('claim'), null, 'with the new TTL');
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

  t.test('records: what is read back is the record as JSON (what Redis keeps), whatever values it was put with', async (t) => {
    const s = await make();
    const at = new Date(1_700_000_000_000);
    const rec = { id: 'j1', target: 'Deployment/prod/a', state: 'succeeded', createdAt: 1, gone: undefined, nan: Number.NaN, inf: Number.POSITIVE_INFINITY, at, list: [1, undefined], nested: { keep: 'x', drop: undefined } };
    t.ok(await s.putRecord(rec));
    const want = { id: 'j1', target: 'Deployment/prod/a', state: 'succeeded', createdAt: 1, nan: null, inf: null, at: at.toISOString(), list: [1, null], nested: { keep: 'x' } };
    const got = await s.getRecord('j1');
    t.strictSame(got, want, 'getRecord: undefined fields left out, NaN and Infinity null, a Date its ISO text');
    t.strictSame((await s.listRecords({ target: 'Deployment/prod/a' }))[0], want, 'listRecords alike');
    t.notOk(got && 'gone' in got, 'no field of an undefined value');
  });

  t.test('records: a put unless a value is set writes only while that value is absent, atomically', async (t) => {
    const s = await make();
    const rec = (state: string): StoredRecord => ({ id: 'r1', target: 'Deployment/prod/a', state, createdAt: 1 });
    t.equal(await s.putRecord(rec('deciding'), { unlessValue: 'resolved:r1' }), true, 'no value: written');
    t.equal((await s.getRecord('r1'))!.state, 'deciding');
    await s.setValue('resolved:r1', '5', { ttlMs: 60_000 });
    t.equal(await s.putRecord(rec('succeeded'), { unlessValue: 'resolved:r1' }), false, 'the value set: refused');
    t.equal((await s.getRecord('r1'))!.state, 'deciding', 'and nothing written');
    t.same((await s.listRecords({ state: 'succeeded' })).map((r) => r.id), [], 'not even an index');
    t.equal(await s.putRecord(rec('succeeded')), true, 'a plain put still writes');
    t.equal((await s.getRecord('r1'))!.state, 'succeeded');
    await s.setValue('gone', 'x', { ttlMs: 50 });
    await sleep(120);
    t.equal(await s.putRecord(rec('failed'), { unlessValue: 'gone' }), true, 'an expired value is absent');
    t.equal((await s.getRecord('r1'))!.state, 'failed');
    // several values: refused when any one is set
    t.equal(await s.putRecord(rec('expired'), { unlessValue: ['gone', 'other'] }), true, 'none of several set: written');
    t.equal(await s.putRecord(rec('blocked'), { unlessValue: ['other', 'resolved:r1'] }), false, 'the second of two set: refused');
    t.equal(await s.putRecord(rec('blocked'), { unlessValue: ['resolved:r1', 'other'] }), false, 'the first of two set: refused');
    t.equal((await s.getRecord('r1'))!.state, 'expired', 'and nothing written');
    t.same((await s.listRecords({ state: 'blocked' })).map((r) => r.id), [], 'not even an index');
    t.equal(await s.putRecord(rec('blocked'), { unlessValue: [] }), true, 'none given: written');
  });

  t.test('records: a put expecting a state writes only while the stored record is in it, atomically', async (t) => {
    const s = await make();
    const rec = (state: string, by?: string): StoredRecord => ({ id: 'r1', target: 'Deployment/prod/a', state, createdAt: 1, ...(by ? { by } : {}) });
    t.equal(await s.putRecord(rec('deciding'), { expectState: 'pending_approval' }), false, 'no record: refused');
    t.equal(await s.getRecord('r1'), null, 'and nothing written');
    t.same((await s.listRecords({ state: 'deciding' })).map((r) => r.id), [], 'not even an index');
    await s.putRecord(rec('pending_approval'));
    t.equal(await s.putRecord(rec('deciding', 'alice'), { expectState: 'pending_approval' }), true, 'in the state expected: written');
    t.same(await s.getRecord('r1'), rec('deciding', 'alice'));
    t.equal(await s.putRecord(rec('rejected', 'bob'), { expectState: 'pending_approval' }), false, 'in another state: refused');
    t.same(await s.getRecord('r1'), rec('deciding', 'alice'), 'and nothing written');
    t.same((await s.listRecords({ state: 'rejected' })).map((r) => r.id), [], 'not even an index');
    t.same((await s.listRecords({ state: 'deciding' })).map((r) => r.id), ['r1'], 'its own index kept');
    t.equal(await s.putRecord(rec('deciding', 'carol'), { expectState: 'deciding' }), true, 'the same state expected and written: written');

    await s.putRecord(rec('pending_approval'));
    const [approved, rejected] = await Promise.all([
      s.putRecord(rec('deciding', 'alice'), { expectState: 'pending_approval' }),
      s.putRecord(rec('rejected', 'bob'), { expectState: 'pending_approval' }),
    ]);
    t.same([approved, rejected].sort(), [false, true], 'of two racing moves out of a state, one is written');
    const stored = await s.getRecord('r1');
    t.same(stored, approved ? rec('deciding', 'alice') : rec('rejected', 'bob'), "the stored record is the winner's");
    t.same((await s.listRecords({ state: 'pending_approval' })).map((r) => r.id), [], 'and only its state indexes it');

    await s.putRecord(rec('pending_approval'));
    await s.setValue('resolved:r1', '5', { ttlMs: 60_000 });
    t.equal(await s.putRecord(rec('expired'), { expectState: 'pending_approval', unlessValue: 'resolved:r1' }), false, 'with unlessValue too: the value set refuses');
    await s.deleteValue('resolved:r1');
    t.equal(await s.putRecord(rec('expired'), { expectState: 'deciding', unlessValue: 'resolved:r1' }), false, 'and the state differing refuses');
    t.equal((await s.getRecord('r1'))!.state, 'pending_approval', 'nothing written by either');
    t.equal(await s.putRecord(rec('expired'), { expectState: 'pending_approval', unlessValue: 'resolved:r1' }), true, 'both holding: written');
    t.equal((await s.getRecord('r1'))!.state, 'expired');
  });

  t.test('a fence key expires some time after its lock is last used, and tokens keep growing across it', async (t) => {
    const s = await make();
    const l1 = await s.acquireLock('short', 'r1', 100);
    t.ok(await s.renewLock(l1!, 100));
    t.equal(await s.currentFence('short'), l1!.token, 'held: the fence is there');
    t.ok(await s.releaseLock(l1!));
    await sleep(400);
    t.equal(await s.currentFence('short'), 0, 'gone a while after the lock');
    const l2 = await s.acquireLock('short', 'r2', 100);
    t.ok(l2!.token > l1!.token, `the next token (${l2!.token}) is above every earlier one (${l1!.token})`);
    t.equal(await s.currentFence('short'), l2!.token);
  });

  t.test('listing by state reads the state index, which follows every transition', async (t) => {
    const s = await make();
    const rec = (id: string, state: string, createdAt: number, target = 'Deployment/prod/a'): StoredRecord => ({ id, target, state, createdAt });
    await s.putRecord(rec('r1', 'deciding', 1));
    await s.putRecord(rec('r2', 'deciding', 2, 'Deployment/prod/b'));
    await s.putRecord(rec('r3', 'held', 3));
    const ids = async (state: string, target?: string) => (await s.listRecords({ state, ...(target ? { target } : {}) })).map((r) => r.id);
    t.same(await ids('deciding'), ['r2', 'r1']);
    await s.putRecord(rec('r1', 'in_progress', 1));
    await s.putRecord(rec('r3', 'in_progress', 3));
    t.same(await ids('deciding'), ['r2'], 'r1 left deciding');
    t.same(await ids('in_progress'), ['r3', 'r1']);
    t.same(await ids('held'), [], 'r3 left held');
    await s.putRecord(rec('r1', 'succeeded', 1));
    await s.putRecord(rec('r3', 'failed', 3));
    t.same(await ids('in_progress'), [], 'both finished');
    t.same(await ids('succeeded'), ['r1']);
    t.same(await ids('failed'), ['r3']);
    t.same(await ids('deciding', 'Deployment/prod/b'), ['r2'], 'state and target together');
    t.same(await ids('deciding', 'Deployment/prod/a'), []);
    await s.putRecord(rec('r2', 'deciding', 2, 'Deployment/prod/c'));
    t.same((await s.listRecords({ target: 'Deployment/prod/b' })).map((r) => r.id), [], 'a target change moves the record between target indexes');
    t.same((await s.listRecords({ target: 'Deployment/prod/c' })).map((r) => r.id), ['r2']);
    t.same((await s.listRecords()).map((r) => `${r.id}:${r.state}`), ['r3:failed', 'r2:deciding', 'r1:succeeded'], 'one copy of each, as last put');
  });

  t.test('records: a state and a target together, whichever of their indexes is the smaller', async (t) => {
    const s = await make();
    const busy = 'Deployment/prod/busy';
    // a target with many closed records and two executing, beside another target's executing ones
    for (let i = 0; i < 40; i++) await s.putRecord({ id: `c${String(i).padStart(2, '0')}`, target: busy, state: 'blocked', createdAt: 100 + i });
    await s.putRecord({ id: 'run-old', target: busy, state: 'in_progress', createdAt: 50 });
    await s.putRecord({ id: 'run-new', target: busy, state: 'in_progress', createdAt: 200 });
    await s.putRecord({ id: 'other', target: 'Deployment/prod/quiet', state: 'in_progress', createdAt: 300 });
    // the state's index is the smaller: the target's records are picked out of it
    t.same((await s.listRecords({ target: busy, state: 'in_progress', limit: 2 })).map((r) => r.id), ['run-new', 'run-old']);
    const first = await s.listRecordsPage({ target: busy, state: 'in_progress', limit: 1 });
    t.same(first.records.map((r) => r.id), ['run-new']);
    t.same((await s.listRecords({ target: busy, state: 'in_progress', limit: 1, cursor: first.nextCursor! })).map((r) => r.id), ['run-old'], 'and paged');
    // the target's index is the smaller: its records of that state, nothing of another target's
    for (let i = 0; i < 10; i++) await s.putRecord({ id: `q${i}`, target: `Deployment/prod/q${i}`, state: 'blocked', createdAt: 400 + i });
    t.same((await s.listRecords({ target: 'Deployment/prod/quiet', state: 'blocked' })).map((r) => r.id), []);
    t.same((await s.listRecords({ target: 'Deployment/prod/q3', state: 'blocked' })).map((r) => r.id), ['q3']);
    t.same((await s.listRecords({ target: busy, state: 'blocked', limit: 3 })).map((r) => r.id), ['c39', 'c38', 'c37']);
  });

  t.test('cursor pagination: every record once, newest first, stable while newer records arrive', async (t) => {
    const s = await make();
    // equal createdAt on purpose: the order is createdAt, then id, both descending
    const created = [10, 20, 20, 20, 30, 40, 40];
    for (const [i, at] of created.entries()) await s.putRecord({ id: `p${i}`, target: `Deployment/prod/t${i % 2}`, state: i % 3 === 0 ? 'held' : 'succeeded', createdAt: at });
    const all = (await s.listRecords({ limit: 100 })).map((r) => r.id);
    t.same(all, ['p6', 'p5', 'p4', 'p3', 'p2', 'p1', 'p0']);
    const pages: string[][] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const page = await s.listRecordsPage({ limit: 3, ...(cursor ? { cursor } : {}) });
      pages.push(page.records.map((r) => r.id));
      if (i === 0) await s.putRecord({ id: 'p9', target: 'Deployment/prod/t9', state: 'succeeded', createdAt: 50 }); // newer, arrives mid-walk
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    t.same(pages, [['p6', 'p5', 'p4'], ['p3', 'p2', 'p1'], ['p0']], 'three pages, nothing twice, nothing skipped, the newcomer not in the walk');
    const exact = await s.listRecordsPage({ limit: 8 });
    t.equal(exact.records.length, 8);
    t.equal(exact.nextCursor, null, 'no cursor when the page holds the last record');
    /** every id of a filtered listing, walked page by page */
    const walk = async (filter: RecordFilter, limit: number) => {
      const ids: string[] = [];
      let at: string | null = null;
      do {
        const page = await s.listRecordsPage({ ...filter, limit, ...(at ? { cursor: at } : {}) });
        ids.push(...page.records.map((r) => r.id));
        at = page.nextCursor;
      } while (at);
      return ids;
    };
    t.same(await walk({ state: 'held' }, 1), ['p6', 'p3', 'p0'], 'pages of one state');
    t.same(await walk({ target: 'Deployment/prod/t1' }, 2), ['p5', 'p3', 'p1'], 'pages of one target');
    await t.rejects(s.listRecordsPage({ cursor: 'not a cursor!' }), /nextCursor of an earlier page/);
  });

  t.test('a page size that is not a whole number of 0 or more is refused, naming it, and reads nothing', async (t) => {
    const s = await make();
    for (let i = 0; i < 3; i++) await s.putRecord({ id: `l${i}`, target: 'Deployment/prod/l', state: 'held', createdAt: 10 + i });
    for (const limit of [-1, -7, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await t.rejects(s.listRecordsPage({ limit }), { name: 'RangeError', message: /limit must be a whole number of 0 or more/ }, `limit ${limit}`);
      await t.rejects(s.listRecords({ state: 'held', limit }), { name: 'RangeError', message: /limit must be a whole number of 0 or more/ }, `limit ${limit}, by state`);
    }
    t.same(await s.listRecordsPage({ limit: 0 }), { records: [], nextCursor: null }, 'a limit of 0: an empty page');
    t.same((await s.listRecords({ limit: 2 })).map((r) => r.id), ['l2', 'l1']);
  });

  t.test('pruning skips open records wherever they are, and deletes every old closed one', async (t) => {
    const s = await make();
    // The oldest record is open, then more closed old records than one pruning batch holds.
    await s.putRecord({ id: 'open-oldest', target: 'Deployment/prod/o', state: 'pending_approval', createdAt: 1 });
    for (let i = 0; i < 620; i++) await s.putRecord({ id: `old${i}`, target: `Deployment/prod/x${i % 7}`, state: i % 2 ? 'succeeded' : 'dry_run', createdAt: 2 + i });
    await s.putRecord({ id: 'open-mid', target: 'Deployment/prod/o', state: 'held', createdAt: 300 });
    await s.putRecord({ id: 'recent', target: 'Deployment/prod/x1', state: 'failed', createdAt: 10_000 });
    t.equal(await s.pruneRecords(5_000, ['pending_approval', 'held', 'in_progress']), 620, 'all 620 old closed records');
    t.same((await s.listRecords({ limit: 1000 })).map((r) => r.id), ['recent', 'open-mid', 'open-oldest']);
    t.same((await s.listRecords({ target: 'Deployment/prod/x1' })).map((r) => r.id), ['recent'], 'gone from the target index too');
    t.same((await s.listRecords({ state: 'succeeded' })).map((r) => r.id), [], 'and from the state index');
    t.equal(await s.pruneRecords(5_000, ['pending_approval', 'held', 'in_progress']), 0, 'nothing left to prune');
  });

  t.test('record cap: past maxRecords, closed records that changed nothing go oldest first; open ones and rollbacks done stay; each drop is counted', async (t) => {
    let counted = 0;
    const s = await make({
      maxRecords: 40,
      openStates: ['held', 'pending_approval'],
      noActionStates: ['not_confirmed', 'blocked', 'dry_run'],
      onDropCount: (what, n) => void (what === 'records' && (counted += n)),
    });
    // the oldest records are an open one and a rollback done: older than every no-action record
    await s.putRecord({ id: 'open-oldest', target: 'Deployment/prod/o', state: 'held', createdAt: 1 });
    await s.putRecord({ id: 'done-oldest', target: 'Deployment/prod/d', state: 'succeeded', createdAt: 2 });
    const states = ['not_confirmed', 'blocked', 'dry_run'];
    for (let i = 0; i < 100; i++) {
      await s.putRecord({ id: `flood${String(i).padStart(3, '0')}`, target: `Deployment/prod/f${i % 5}`, state: states[i % 3]!, createdAt: 10 + i });
    }
    const left = await s.listRecords({ limit: 1000 });
    t.ok(left.length <= 40, `${left.length} records left (at most maxRecords 40)`);
    t.ok(left.length >= 30, `not emptied either (${left.length})`);
    const ids = left.map((r) => r.id);
    t.ok(ids.includes('open-oldest'), 'the open record stays, though the oldest');
    t.ok(ids.includes('done-oldest'), 'the record of a rollback done stays, though older than every flood record');
    const flood = ids.filter((id) => id.startsWith('flood'));
    t.equal(flood[0], 'flood099', 'the newest kept');
    t.same(flood, Array.from({ length: flood.length }, (_, i) => `flood${String(99 - i).padStart(3, '0')}`), 'the kept ones are the newest: the dropped were the oldest');
    t.equal(await s.getRecord('flood000'), null);
    t.same((await s.listRecords({ target: 'Deployment/prod/f0', limit: 1000 })).map((r) => r.id), flood.filter((id) => Number(id.slice(5)) % 5 === 0), 'gone from the target index too');
    t.same((await s.listRecords({ state: 'blocked', limit: 1000 })).map((r) => r.id), flood.filter((id) => Number(id.slice(5)) % 3 === 1), 'and from the state index');
    t.equal(counted, 102 - left.length, 'every dropped record counted');
  });

  t.test('a record holding something (a GitOps suspension) outlives retention, whatever its state, until it holds nothing', async (t) => {
    const s = await make(); // each store reads `holds` by default
    t.equal(await s.heldCount(), 0, 'nothing held yet');
    // old closed records of a state pruned early; two of them hold owners, among more than one batch
    for (let i = 0; i < 620; i++) await s.putRecord({ id: `old${i}`, target: `Deployment/prod/x${i % 7}`, state: 'refused', createdAt: 2 + i });
    await s.putRecord({ id: 'holds-2', target: 'Deployment/prod/web', state: 'refused', createdAt: 1, holds: 2 });
    await s.putRecord({ id: 'holds-1', target: 'Deployment/prod/api', state: 'succeeded', createdAt: 300, holds: 1 });
    t.equal(await s.heldCount(), 3, 'what every record holds, summed');
    t.equal(await s.pruneRecords(5_000, ['held', 'in_progress']), 620, 'every old record but the two holding ones');
    t.same((await s.listRecords({ limit: 1000 })).map((r) => r.id), ['holds-1', 'holds-2'], 'the holding records are kept, with their indexes');
    t.same((await s.listRecords({ state: 'refused' })).map((r) => r.id), ['holds-2']);
    t.equal(await s.pruneRecords(5_000, ['held', 'in_progress']), 0, 'and kept again on the next pass');
    // resumed: it holds nothing any more, and goes like any other record
    await s.putRecord({ id: 'holds-2', target: 'Deployment/prod/web', state: 'refused', createdAt: 1, holds: 0 });
    t.equal(await s.heldCount(), 1);
    t.equal(await s.pruneRecords(5_000, ['held', 'in_progress']), 1, 'the resumed record is pruned now');
    t.same((await s.listRecords({ limit: 1000 })).map((r) => r.id), ['holds-1']);
    t.equal(await s.heldCount(), 1, 'what is left still counted');
  });

  t.test('record cap: a record holding something is never dropped, though the oldest and of a state that changed nothing', async (t) => {
    const s = await make({ maxRecords: 40, openStates: ['held', 'pending_approval'], noActionStates: ['refused', 'dry_run'] });
    await s.putRecord({ id: 'holding-oldest', target: 'Deployment/prod/web', state: 'refused', createdAt: 1, holds: 1 });
    for (let i = 0; i < 100; i++) await s.putRecord({ id: `flood${String(i).padStart(3, '0')}`, target: `Deployment/prod/f${i % 5}`, state: i % 2 ? 'refused' : 'dry_run', createdAt: 10 + i });
    const ids = (await s.listRecords({ limit: 1000 })).map((r) => r.id);
    t.ok(ids.length <= 40, `${ids.length} records left (at most maxRecords 40)`);
    t.ok(ids.includes('holding-oldest'), 'the holding record stays');
    t.notOk(ids.includes('flood000'), 'the oldest flood record went');
    t.equal(await s.heldCount(), 1);
  });
}
