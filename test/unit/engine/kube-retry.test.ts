// The API server answering a retriable error (a 503 at an etcd leader change, a 429, no answer)
// while a rollback is planned, before anything is written to the cluster, does not end the alert:
// the record is left deciding with a `retry` step, the scheduler decides it again (the trigger
// confirmed again), and only after KUBE_TRIES tries does it end `error`, escalated. An error that
// will not pass (403) ends `error` at once, and is said to humans too.
import t from 'tap';
import type { RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { KUBE_TRIES } from '../../../src/engine/rollback.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { metricValue } from '../../support/app.js';
import { FakeDeploymentAction, firing, testEngine } from '../../support/engine.js';

class FlakyPlanAction extends FakeDeploymentAction {
  failures: KubeApiError[] = [];
  plans = 0;
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    this.plans++;
    const err = this.failures.shift();
    if (err) throw err;
    return super.plan(ref);
  }
}

const unavailable = () => new KubeApiError({ status: 503, reason: 'ServiceUnavailable', message: 'etcdserver: leader changed', operation: 'GET apps/v1 deployments prod/checkout' });

function rig() {
  const action = new FlakyPlanAction();
  let ahead = 0;
  const e = testEngine({ action, now: () => Date.now() + ahead });
  return { ...e, action, later: (ms: number) => (ahead += ms) };
}

t.test('one 503 while planning: left deciding, said in its timeline, decided again by the scheduler and rolled back once', async (t) => {
  const r = rig();
  r.action.failures.push(unavailable());
  await r.deliver(firing('HighErrorRate', 'checkout'));
  let [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'deciding', 'not ended');
  t.equal(rec?.kubeRetries, 1);
  t.match(rec?.timeline.find((s) => s.step === 'retry')?.message, /HTTP 503 ServiceUnavailable: etcdserver: leader changed: nothing was changed; decided again shortly \(try 2 of 5\)/);
  t.same(r.notifier.sent, [], 'nothing said yet: nothing happened');
  await r.engine.tick();
  t.equal(r.action.plans, 1, 'not decided again at once');
  r.later(10 * 60_000);
  await r.engine.tick();
  await r.engine.idle();
  t.equal(r.action.executed.length, 1, 'rolled back once');
  [rec] = await r.engine.records.list({});
  t.not(rec?.state, 'deciding');
  t.ok(rec?.timeline.some((s) => s.step === 'recovery' && /left deciding by this replica \(replica-a\) when the API server answered an error \(see the retry step\); decided again/.test(s.message)), 'the timeline says why it was decided again');
  t.equal(await metricValue(r.metrics, 'rollguard_kube_api_errors_total', { status: '503' }), 1);
});

t.test(`the API server away for good: ${KUBE_TRIES} tries, then error, escalated`, async (t) => {
  const r = rig();
  for (let i = 0; i < KUBE_TRIES + 2; i++) r.action.failures.push(unavailable());
  await r.deliver(firing('HighErrorRate', 'checkout'));
  for (let i = 1; i < KUBE_TRIES + 2; i++) {
    r.later(10 * 60_000);
    await r.engine.tick();
  }
  t.equal(r.action.plans, KUBE_TRIES, `planned ${KUBE_TRIES} times, no more`);
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'error');
  t.match(rec?.outcome?.message, new RegExp(`leader changed \\(the API server answered an error ${KUBE_TRIES} times\\)`));
  t.same(r.notifier.sent.map((n) => [n.kind, n.severity]), [['rollback_failed', 'critical']], 'escalated once');
  t.equal(await metricValue(r.metrics, 'rollguard_escalations_total', { reason: 'error' }), 1);
  t.equal(r.action.executed.length, 0);
});

t.test('a 403 (rollguard may not read the target) ends error at once, and is said to humans', async (t) => {
  const r = rig();
  r.action.failures.push(new KubeApiError({ status: 403, reason: 'Forbidden', message: 'deployments.apps "checkout" is forbidden', operation: 'GET apps/v1 deployments prod/checkout' }));
  await r.deliver(firing('HighErrorRate', 'checkout'));
  const [rec] = await r.engine.records.list({});
  t.equal(rec?.state, 'error');
  t.match(rec?.outcome?.message, /HTTP 403 Forbidden/);
  t.same(r.notifier.sent.map((n) => n.kind), ['rollback_failed']);
  r.later(10 * 60_000);
  await r.engine.tick();
  t.equal(r.action.plans, 1, 'not tried again');
});
