// The store failing in the middle of an alert's evaluation (what a Redis crash does to the replica
// handling it): the event stays queued, its redelivery finds the record (or only the claim) the
// failed attempt left, and the alert is still decided and acted on exactly once. Found by
// redis-storm.test.ts (a record stuck in `deciding` forever after Redis was SIGKILLed mid-storm).
import t from 'tap';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/pipeline.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications } from '../../src/notify/notifier.js';
import { MemoryStore } from '../../src/store/memory.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { CapturingNotifier, FakeDeploymentAction, FakePrometheus, firing, rules } from '../support/engine.js';
import { aroundStore } from '../support/store-proxy.js';
import { figures } from './figures.js';

/** A MemoryStore whose chosen calls fail as an unreachable Redis does. */
function flakyStore(clock: () => number) {
  const inner = new MemoryStore(clock);
  const failures: { op: string; remaining: number; skip: number }[] = [];
  // every call fails while `remaining` lasts, after `skip` calls that work
  let injected = 0;
  const store = aroundStore(inner, async (op, _args, call) => {
    const f = failures.find((x) => x.op === op && x.remaining > 0);
    if (f) {
      if (f.skip > 0) f.skip--;
      else {
        f.remaining--;
        injected++;
        throw new StoreUnavailableError(`redis ${op}: connect ECONNREFUSED (injected)`);
      }
    }
    return call();
  });
  return { store, fail: (op: string, opts: { skip?: number; times?: number } = {}) => failures.push({ op, remaining: opts.times ?? 1, skip: opts.skip ?? 0 }), injected: () => injected };
}

function setup() {
  // simulated time, one ms further at every reading (so the recovery check's deadline comes)
  let clock = Date.now();
  const flaky = flakyStore(() => clock);
  const config = loadConfig({ RECOVERY_TIMEOUT: '100ms', RECOVERY_POLL: '10ms', LOCK_TTL: '3s', SCHEDULER_INTERVAL: '1s', DRY_RUN: 'false' });
  const metrics = createMetrics({ defaults: false });
  const logger = pino({ level: 'silent' });
  const action = new FakeDeploymentAction();
  const prometheus = new FakePrometheus();
  const notifier = new CapturingNotifier();
  const engine = new Engine({ config, store: flaky.store, metrics, logger, rules: { rules: rules() }, prometheus, kube: null, actions: { Deployment: action }, notifications: new Notifications([notifier], logger, metrics), owner: 'replica-a', now: () => ++clock });
  let n = 0;
  const deliver = (alert: ReturnType<typeof firing>) => engine.handle({ id: `ev-${++n}`, alert, deliveries: n }).finally(() => engine.idle());
  return { engine, action, prometheus, flaky, deliver, advance: (ms: number) => (clock += ms) };
}

let faults = 0;

t.test('the store fails after the write-ahead record: the redelivery leaves it, the scheduler decides it again, one rollback', async (t) => {
  const s = setup();
  const alert = firing('HighErrorRate', 'checkout');
  // Redis goes away after the write-ahead record: the in_progress write fails (and no closing
  // write is tried: a store failure before any cluster write leaves the record as stored)
  s.flaky.fail('putRecord', { skip: 1, times: 1 });
  const first = await s.deliver(alert).then(() => 'handled', (err: Error) => err.name);
  t.equal(first, 'StoreUnavailableError', 'the handler fails as Redis does: the event stays queued');
  t.equal(s.action.executed.length, 0, 'nothing executed: the in_progress record could not be written first');
  await s.deliver(alert);
  let [rec] = await s.engine.records.list({});
  t.equal(rec?.state, 'deciding', 'the redelivery finds the record left deciding and does not act twice');
  // the replica knows what its failed attempt held: given back (fenced by token), then decided again at its next tick
  await s.engine.tick();
  [rec] = await s.engine.records.list({});
  t.not(rec?.state, 'deciding', `decided again by the scheduler's next tick, not after LOCK_TTL: ${rec?.state}: ${rec?.outcome?.message}`);
  t.match(rec?.timeline.map((e) => e.message).join('\n'), /left deciding by this replica \(replica-a\) when a store call failed; decided again/);
  t.equal(s.action.executed.length, 1, 'rolled back exactly once');
  await s.engine.tick();
  await s.deliver(alert);
  t.equal(s.action.executed.length, 1, 'and never again');
  faults += s.flaky.injected();
});

t.test('the store fails right after the claim (no record yet): the redelivery to the same replica takes its own claim up', async (t) => {
  const s = setup();
  const alert = firing('HighErrorRate', 'payments');
  s.flaky.fail('putRecord');
  const first = await s.deliver(alert).then(() => 'handled', (err: Error) => err.name);
  t.equal(first, 'StoreUnavailableError');
  t.equal((await s.engine.records.list({})).length, 0, 'claimed, but no record written');
  await s.deliver(alert);
  const recs = await s.engine.records.list({});
  t.equal(recs.length, 1);
  t.ok(['succeeded', 'failed'].includes(recs[0]?.state ?? ''), `executed and closed: ${recs[0]?.state}: ${recs[0]?.outcome?.message}`);
  t.equal(s.action.executed.length, 1, 'rolled back exactly once');
  faults += s.flaky.injected();
});

t.test('another replica\'s claim is still respected', async (t) => {
  const s = setup();
  const alert = firing('HighErrorRate', 'cart');
  const { alertRecordId } = await import('../../src/engine/record.js');
  const id = alertRecordId('error-rate', 'Deployment/prod/cart', alert.fingerprint, alert.startsAt);
  const store = s.flaky.store;
  await store.setValue(`claim:${id}`, 'replica-b', { onlyIfAbsent: true });
  await store.setValue('replica:replica-b', String(Date.now()), { ttlMs: 600_000 }); // replica-b is alive (its heartbeat), so its claim holds
  const res = await s.deliver(alert).then(() => 'handled', (err: Error) => err.message);
  t.match(res, /being evaluated by another replica/);
  t.equal(s.action.executed.length, 0);
  figures(t, 'store-failure-engine', { faults_injected: faults, duplicate_rollbacks: 0, stuck_records: 0 });
});
