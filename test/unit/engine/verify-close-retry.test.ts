// A store that fails for a moment at the close of a verified rollback: the close is tried again,
// CLOSE_RETRY_MS apart, while the replica holds the locks. Before 2026-12-07 the verification's
// catch-all closed such a rollback `failed` and escalated it when the store answered again a
// moment later: a rollback that worked paged a human as failed, and an ordered chain stopped on it.
import t from 'tap';
import { CLOSE_RETRY_MS } from '../../../src/engine/verify.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError } from '../../../src/store/store.js';
import { metricValue } from '../../support/app.js';
import { CHAIN_RULES, firing, PerTargetDeploymentAction, recoversOnWrite, testEngine } from '../../support/engine.js';

/** An engine whose store refuses the first `times` closes of `target` as succeeded (`onRefused` after each). */
function closeRefused(target: string, times: number, opts: Parameters<typeof testEngine>[0] = {}, onRefused: (e: ReturnType<typeof testEngine>) => void = () => {}) {
  let clock = Date.now();
  const now = () => clock;
  const e = testEngine({ now, store: new MemoryStore(now), ...opts });
  recoversOnWrite(e);
  const put = e.store.putRecord.bind(e.store);
  let refused = 0;
  e.store.putRecord = async (r, o) => {
    if (refused < times && r.state === 'succeeded' && r.target === target) {
      refused++;
      onRefused(e);
      throw new StoreUnavailableError('injected: the close of a verified rollback');
    }
    return put(r, o);
  };
  const later = async (ms: number) => {
    clock += ms;
    await e.engine.tick();
    await e.engine.idle();
  };
  return { e, later, refused: () => refused };
}

const kinds = (e: ReturnType<typeof testEngine>) => e.notifier.sent.map((n) => n.kind);

t.test('a close the store refuses once is tried again: succeeded, said once, nothing escalated', async (t) => {
  const { e, refused } = closeRefused('Deployment/prod/checkout', 1);
  await e.deliver(firing('HighErrorRate'));
  await e.engine.idle();
  t.equal(refused(), 1, 'the first close was refused');
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  t.equal(rec!.timeline.filter((x) => x.step === 'verified').length, 1, 'one close in its timeline');
  t.notOk(kinds(e).includes('rollback_failed'), kinds(e).join(', '));
  t.equal(kinds(e).filter((k) => k === 'rollback_succeeded').length, 1);
  t.equal(await metricValue(e.metrics, 'rollguard_store_errors_total', { op: 'close' }), 1);
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'error' }), undefined);
});

t.test("a close that lands but whose answer is lost (a store timing out after the write): the try after it finds it closed by this replica, and says it once", async (t) => {
  let clock = Date.now();
  const now = () => clock;
  const e = testEngine({ now, store: new MemoryStore(now) });
  recoversOnWrite(e);
  const put = e.store.putRecord.bind(e.store);
  let lost = 0;
  e.store.putRecord = async (r, o) => {
    const written = await put(r, o);
    if (lost === 0 && r.state === 'succeeded') {
      lost++;
      throw new StoreUnavailableError('injected: redis putRecord: Command timed out (after the write)');
    }
    return written;
  };
  await e.deliver(firing('HighErrorRate'));
  await e.engine.idle();
  t.equal(lost, 1, "the first close's answer was lost");
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  t.equal(rec!.timeline.filter((x) => x.step === 'verified').length, 1, 'one close in its timeline');
  t.equal(kinds(e).filter((k) => k === 'rollback_succeeded').length, 1, `said once: ${kinds(e).join(', ')}`);
  t.match(JSON.parse((await e.store.getValue('cooldown:Deployment/prod/checkout')) ?? 'null'), { id: rec!.id, outcome: 'succeeded' }, "the target's cooldown carries the outcome");
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'error' }), undefined);
});

t.test('a store that fails at every try: past them the error goes on, as before (closed failed, escalated)', async (t) => {
  const { e, refused } = closeRefused('Deployment/prod/checkout', CLOSE_RETRY_MS.length + 1);
  await e.deliver(firing('HighErrorRate'));
  await e.engine.idle();
  t.equal(refused(), CLOSE_RETRY_MS.length + 1, 'tried once and again after each pause');
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'failed');
  t.match(rec!.outcome?.message, /^error while verifying the rollback: injected/);
  t.ok(kinds(e).includes('rollback_failed'));
});

t.test("an ordered chain's first target whose close the store refuses once: the chain goes on, in order", async (t) => {
  const action = new PerTargetDeploymentAction();
  const { e, later, refused } = closeRefused('Deployment/prod/api', 1, { ruleText: CHAIN_RULES, action });
  await e.deliver(firing('ReleaseErrors', 'api'));
  await e.engine.idle();
  t.equal(refused(), 1);
  for (let i = 0; i < 4; i++) await later(60_000);
  const recs = await e.engine.records.list({});
  t.same(recs.map((r) => `${r.target} ${r.state}`).sort(), ['Deployment/prod/api succeeded', 'Deployment/prod/auth succeeded', 'Deployment/prod/web succeeded'], recs.map((r) => r.outcome?.message).join(' | '));
  t.same(action.executed.map((x) => x.ref.name), ['api', 'auth', 'web']);
});

t.test('a shutdown while the close is tried again hands the record over in_progress, never stored as closed without its notification', async (t) => {
  // the second try is refused too, and the replica is stopping by then: its hand-over saves the
  // record as it is, which must be as before the close (the recovery then verifies and closes it)
  const { e, refused } = closeRefused('Deployment/prod/checkout', 2, {}, (e) => {
    if (e && refused() === 2) e.engine.stop();
  });
  await e.deliver(firing('HighErrorRate'));
  await e.engine.idle();
  t.equal(refused(), 2);
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'in_progress', 'left for the recovery');
  t.notOk(rec!.timeline.some((x) => x.step === 'verified'), 'no close in its timeline');
  t.ok(rec!.timeline.some((x) => x.step === 'handover'), 'handed over');
  t.equal(rec!.outcome, undefined);
});
