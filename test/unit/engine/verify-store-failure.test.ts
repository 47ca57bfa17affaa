// A store failure while closing a verified rollback: the record stays in_progress, and the
// scheduler's recovery verifies it again and closes it. Before 2026-12-07 the verification's
// catch-all closed it `failed` and escalated it when the store answered again a moment later: a
// rollback that worked paged a human as failed, and an ordered chain stopped on it.
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError } from '../../../src/store/store.js';
import { metricValue } from '../../support/app.js';
import { CHAIN_RULES, firing, PerTargetDeploymentAction, recoversOnWrite, testEngine } from '../../support/engine.js';

/** An engine whose store refuses, once, the close of `target` as succeeded. */
function closeRefusedOnce(target: string, opts: Parameters<typeof testEngine>[0] = {}) {
  let clock = Date.now();
  const now = () => clock;
  const e = testEngine({ now, store: new MemoryStore(now), ...opts });
  recoversOnWrite(e);
  const put = e.store.putRecord.bind(e.store);
  let refused = 0;
  e.store.putRecord = async (r, o) => {
    if (refused === 0 && r.state === 'succeeded' && r.target === target) {
      refused++;
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

t.test('a verified rollback whose close the store refuses stays in_progress, then the recovery closes it succeeded: not failed, not escalated', async (t) => {
  const { e, later, refused } = closeRefusedOnce('Deployment/prod/checkout');
  await e.deliver(firing('HighErrorRate'));
  await e.engine.idle();
  t.equal(refused(), 1, 'the close was refused');
  let [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'in_progress', 'left for the recovery, not closed failed');
  t.equal(await metricValue(e.metrics, 'rollguard_store_errors_total', { op: 'verify' }), 1);
  for (let i = 0; i < 4 && rec!.state === 'in_progress'; i++) {
    await later(60_000);
    [rec] = await e.engine.records.list({});
  }
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  t.equal(e.action.executed.length, 1, 'rolled back once: the recovery found the write, and did not write again');
  const kinds = e.notifier.sent.map((n) => n.kind);
  t.notOk(kinds.includes('rollback_failed'), `no failure said (${kinds.join(', ')})`);
  t.ok(kinds.includes('rollback_succeeded'), 'its success said, once closed');
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'error' }), undefined, 'nothing escalated');
});

t.test('the same for the first target of an ordered chain: the chain goes on once it is closed', async (t) => {
  const action = new PerTargetDeploymentAction();
  const { e, later, refused } = closeRefusedOnce('Deployment/prod/api', { ruleText: CHAIN_RULES, action });
  await e.deliver(firing('ReleaseErrors', 'api'));
  await e.engine.idle();
  t.equal(refused(), 1);
  for (let i = 0; i < 8; i++) await later(60_000);
  const recs = await e.engine.records.list({});
  t.same(recs.map((r) => `${r.target} ${r.state}`).sort(), ['Deployment/prod/api succeeded', 'Deployment/prod/auth succeeded', 'Deployment/prod/web succeeded'], recs.map((r) => r.outcome?.message).join(' | '));
  t.same(action.executed.map((x) => x.ref.name), ['api', 'auth', 'web']);
});
