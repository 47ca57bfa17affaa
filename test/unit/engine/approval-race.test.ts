import t from 'tap';
import { buildApp } from '../../../src/app.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { rollbacksRoutes } from '../../../src/http/rollbacks.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { RecordFilter, Store } from '../../../src/store/store.js';
import { ADMIN_TOKEN, metricValue } from '../../support/app.js';
import { CHAIN_RULES, firing, PerTargetDeploymentAction, testEngine } from '../../support/engine.js';

/**
 * Two replicas' engines on one store answering one record pending approval at once. Each engine
 * sees the shared store through its own view: `gate` holds the first reads of a record (a get, or
 * the scheduler's listing of pending approvals) until both replicas have read it (so both start
 * from the same pending copy, as on two replicas), and
 * `putDelayMs` makes that replica's record writes land late (so the other one's lands first).
 */
class Gate {
  private waiting: (() => void)[] = [];
  private open = false;
  constructor(private readonly reads: number) {}
  async pass(): Promise<void> {
    if (this.open) return;
    if (this.waiting.length + 1 >= this.reads) {
      this.open = true;
      for (const w of this.waiting) w();
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
}

function view(shared: Store, o: { gate?: Gate; putDelayMs?: number }): Store {
  return new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'getRecord' && o.gate) {
        return async (id: string) => (await o.gate!.pass(), target.getRecord(id));
      }
      // the scheduler's listing of the records pending approval is its read of them
      if (prop === 'listRecordsPage' && o.gate) {
        return async (f?: RecordFilter) => (f?.state === 'pending_approval' && (await o.gate!.pass()), target.listRecordsPage(f));
      }
      if (prop === 'putRecord' && o.putDelayMs) {
        return async (...args: Parameters<Store['putRecord']>) => (await new Promise((r) => setTimeout(r, o.putDelayMs)), target.putRecord(...args));
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** `now`: that replica's clock (default the real one). */
type View = { gate?: Gate; putDelayMs?: number; now?: () => number };

/** Replicas a and b on one store; an alert leaves one record pending approval (rule latency-p1, or `chain`'s first target). */
async function twoReplicas(o: { a?: View; b?: View; env?: Record<string, string>; chain?: boolean } = {}) {
  const shared = new MemoryStore();
  const action = new PerTargetDeploymentAction();
  const rules = o.chain ? { ruleText: CHAIN_P1 } : {};
  const seed = testEngine({ store: shared, owner: 'replica-a', action, ...rules });
  await seed.deliver(o.chain ? firing('ReleaseErrors', 'api', { labels: { alertname: 'ReleaseErrors', namespace: 'prod' } }) : firing('HighLatency'));
  const pending = (await seed.engine.records.list({}))[0]!;
  if (pending.state !== 'pending_approval') throw new Error(`expected pending_approval, got ${pending.state}`);
  const env = o.env ?? {};
  const clock = (v?: View) => (v?.now ? { now: v.now } : {});
  const a = testEngine({ store: view(shared, o.a ?? {}), owner: 'replica-a', action, env, ...rules, ...clock(o.a) });
  const b = testEngine({ store: view(shared, o.b ?? {}), owner: 'replica-b', action, env, ...rules, ...clock(o.b) });
  const counted = async (outcome: string) => ((await metricValue(a.metrics, 'rollguard_rollbacks_total', { outcome })) ?? 0) + ((await metricValue(b.metrics, 'rollguard_rollbacks_total', { outcome })) ?? 0);
  const idle = () => Promise.all([a.engine.idle(), b.engine.idle()]);
  return { shared, action, a, b, id: pending.id, counted, idle };
}

/** CHAIN_RULES' ordered targets (api, auth, web), P1 and each target approved by a human. */
const CHAIN_P1 = CHAIN_RULES.replace('priority: P0', 'priority: P1\n    guards: { approval: { required: true, expiresAfter: 10m } }');

const steps = (rec: RollbackRecord) => rec.timeline.map((e) => `${e.step}: ${e.message}`);

for (const winner of ['approve', 'reject'] as const) {
  t.test(`approve on one replica and reject on another, both read pending: only the ${winner} is written`, async (t) => {
    const gate = new Gate(2);
    // the loser's write lands 30 ms after the winner's
    const r = await twoReplicas({ a: { gate, putDelayMs: winner === 'reject' ? 30 : 0 }, b: { gate, putDelayMs: winner === 'approve' ? 30 : 0 } });
    const [approved, rejected] = await Promise.all([r.a.engine.approve(r.id, 'alice', 'go'), r.b.engine.reject(r.id, 'bob', 'hotfix instead')]);
    await r.idle();
    const stored = (await r.shared.getRecord(r.id)) as RollbackRecord;
    if (winner === 'approve') {
      t.equal(approved.kind, 'ok', 'the approval is answered ok');
      t.equal(rejected.kind, 'conflict', 'the rejection is refused');
      t.not(rejected.kind === 'conflict' && rejected.state, 'pending_approval', 'naming the state it lost to');
      t.same(stored.approval && [stored.approval.by, stored.approval.decision], ['alice', 'approved'], "the stored record holds alice's approval");
      t.not(stored.state, 'rejected');
      t.equal(r.action.executed.length, 1, 'the rollback executed, once');
      t.ok(steps(stored).some((s) => s.startsWith('approved: approved by alice')), 'the timeline has the approval');
      t.notOk(steps(stored).some((s) => /bob|^ended: rejected/.test(s)), 'and nothing of the refused rejection');
      t.equal(await r.counted('rejected'), 0, 'no rejection counted');
    } else {
      t.equal(rejected.kind, 'ok', 'the rejection is answered ok');
      t.same(approved, { kind: 'conflict', state: 'rejected' }, 'the approval is refused, naming the rejection');
      t.equal(stored.state, 'rejected');
      t.same(stored.approval && [stored.approval.by, stored.approval.decision], ['bob', 'rejected'], "the stored record holds bob's rejection");
      t.equal(r.action.executed.length, 0, 'nothing executed');
      t.ok(steps(stored).some((s) => s.startsWith('ended: rejected: rejected by bob')), 'the timeline has the rejection');
      t.notOk(steps(stored).some((s) => /alice|^approved:/.test(s)), 'and nothing of the refused approval');
      t.equal(await r.counted('rejected'), 1, 'the rejection counted once');
    }
    t.equal(await r.counted('expired'), 0);
  });
}

t.test('approve and the expiry on another replica: the approval written first wins, the expiry changes nothing', async (t) => {
  // both read the record pending; a's approval, given before the expiry by a's clock (a second
  // behind b's), lands at 10 ms, b's expiry is written after it (40 ms)
  const gate = new Gate(2);
  const r = await twoReplicas({ a: { gate, putDelayMs: 10, now: () => Date.now() - 1000 }, b: { gate, putDelayMs: 40 } });
  const rec = (await r.shared.getRecord(r.id))!;
  await r.shared.putRecord({ ...rec, dueAt: Date.now() - 1 });
  const [approved] = await Promise.all([r.a.engine.approve(r.id, 'alice'), r.b.engine.tick()]);
  await r.idle();
  t.equal(approved.kind, 'ok');
  const stored = (await r.shared.getRecord(r.id)) as RollbackRecord;
  t.not(stored.state, 'expired', 'not expired over the approval');
  t.equal(stored.approval?.by, 'alice');
  t.equal(r.action.executed.length, 1, 'the approved rollback executed');
  t.notOk(steps(stored).some((s) => s.includes('approval not given')), 'no expiry in the timeline');
  t.equal(await r.counted('expired'), 0, 'no expiry counted');
});

t.test('the expiry written first wins over an approval read before it: refused, nothing executed', async (t) => {
  // both read the record pending; a's approval, given before the expiry by a's clock, lands late
  // (30 ms): b's expiry is written first
  const gate = new Gate(2);
  const r = await twoReplicas({ a: { gate, putDelayMs: 30, now: () => Date.now() - 1000 }, b: { gate } });
  const rec = (await r.shared.getRecord(r.id))!;
  await r.shared.putRecord({ ...rec, dueAt: Date.now() - 1 });
  const [approved] = await Promise.all([r.a.engine.approve(r.id, 'alice'), r.b.engine.tick()]);
  await r.idle();
  t.same(approved, { kind: 'conflict', state: 'expired' }, 'the approval is refused, naming the expiry');
  const stored = (await r.shared.getRecord(r.id)) as RollbackRecord;
  t.equal(stored.state, 'expired');
  t.equal(stored.approval, undefined, 'no approval stored');
  t.equal(r.action.executed.length, 0, 'nothing executed');
  t.notOk(steps(stored).some((s) => s.includes('alice')), 'and nothing of it in the timeline');
  t.equal(await r.counted('expired'), 1, 'the expiry counted once');
});

t.test('two replicas expiring the same record at once: written and counted once', async (t) => {
  const r = await twoReplicas({ a: { putDelayMs: 10 }, b: { putDelayMs: 10 } });
  const rec = (await r.shared.getRecord(r.id))!;
  await r.shared.putRecord({ ...rec, dueAt: Date.now() - 1 });
  await Promise.all([r.a.engine.tick(), r.b.engine.tick()]);
  const stored = (await r.shared.getRecord(r.id)) as RollbackRecord;
  t.equal(stored.state, 'expired');
  t.equal(steps(stored).filter((s) => s.includes('approval not given')).length, 1, 'one expiry in the timeline');
  t.equal(await r.counted('expired'), 1, 'counted once over both replicas');
});

t.test('over HTTP: of an approve and a reject racing on two replicas, the loser is a 409 naming the state the record is in', async (t) => {
  const gate = new Gate(2);
  const r = await twoReplicas({ a: { gate }, b: { gate, putDelayMs: 30 }, env: { ADMIN_TOKEN } });
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const appA = buildApp({ config: r.a.config, store: r.shared, metrics: r.a.metrics, logger: false, routes: [rollbacksRoutes(r.a.engine)] });
  const appB = buildApp({ config: r.b.config, store: r.shared, metrics: r.b.metrics, logger: false, routes: [rollbacksRoutes(r.b.engine)] });
  t.teardown(() => Promise.all([appA.close(), appB.close()]));
  const [ap, rj] = await Promise.all([
    appA.inject({ method: 'POST', url: `/v1/rollbacks/${r.id}/approve`, headers: admin, payload: { by: 'alice' } }),
    appB.inject({ method: 'POST', url: `/v1/rollbacks/${r.id}/reject`, headers: admin, payload: { by: 'bob' } }),
  ]);
  await r.idle();
  t.equal(ap.statusCode, 200, 'the approval written first: 200');
  t.equal(rj.statusCode, 409, 'the rejection: 409');
  t.match(rj.json().message, new RegExp(`^rollback ${r.id} is (deciding|in_progress|succeeded|failed|unverified), not pending approval$`));
  t.equal(r.action.executed.length, 1);
});

t.test("an ordered chain's first target: a rejection that lost does not stop the chain; one that won does", async (t) => {
  const gate = new Gate(2);
  const r = await twoReplicas({ chain: true, a: { gate }, b: { gate, putDelayMs: 30 } });
  const [approved, rejected] = await Promise.all([r.a.engine.approve(r.id, 'alice'), r.b.engine.reject(r.id, 'bob')]);
  await r.idle();
  t.equal(approved.kind, 'ok');
  t.equal(rejected.kind, 'conflict');
  const byName = Object.fromEntries((await r.shared.listRecords({ limit: 10 })).map((x) => [(x as RollbackRecord).ref.name, x as RollbackRecord]));
  t.same(r.action.executed.map((x) => x.ref.name), ['api'], 'the approved target rolled back');
  t.equal(byName.auth?.state, 'pending_approval', 'the next target goes on to its own approval, not blocked by the refused rejection');
  t.equal(await r.counted('blocked'), 0);

  const w = await twoReplicas({ chain: true });
  t.equal((await w.b.engine.reject(w.id, 'bob')).kind, 'ok');
  const after = Object.fromEntries((await w.shared.listRecords({ limit: 10 })).map((x) => [(x as RollbackRecord).ref.name, x as RollbackRecord]));
  t.same([after.api?.state, after.auth?.state, after.web?.state], ['rejected', 'blocked', 'blocked'], 'a rejection written stops the chain: the rest blocked, once the first is closed');
  t.match(after.auth!.outcome!.message, /did not roll back \(rb-[0-9a-f]+: rejected\)/);
});
