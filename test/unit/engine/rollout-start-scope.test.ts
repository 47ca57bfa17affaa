// A trigger whose baseline is relative to the rollout start (rules/latency-baseline.yaml) reads the
// target's current revision to confirm. Nothing is read of a target outside rollguard's scope
// (src/guards/scope.ts): such an alert goes straight to the guards, where the scope guard blocks
// it naming the setting, and the action is never asked to plan.
import t from 'tap';
import type { RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { FakeDeploymentAction, firing, ROLLOUT_START_RULE, testEngine } from '../../support/engine.js';

/** The Deployment double, counting its plans by namespace: each one reads the Deployment, its ReplicaSets, its configuration. */
class CountingAction extends FakeDeploymentAction {
  plans: string[] = [];
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    this.plans.push(ref.namespace);
    return super.plan(ref);
  }
}

const rule = ROLLOUT_START_RULE;
const alertIn = (namespace: string) => firing('LatencyAboveBaseline', 'coredns', { labels: { alertname: 'LatencyAboveBaseline', namespace, deployment: 'coredns' } });

for (const [namespace, env, reason] of [
  ['kube-system', {}, /^blocked by scope: namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)$/],
  ['kube-system', { SCOPE_DENY_NAMESPACES: 'payments' }, /^blocked by scope: namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)$/],
  ['prod-eu', { SCOPE_DENY_NAMESPACES: 'prod-*' }, /^blocked by scope: namespace prod-eu is denied by prod-\* \(SCOPE_DENY_NAMESPACES\)$/],
  ['payments', { SCOPE_NAMESPACES: 'shop' }, /^blocked by scope: namespace payments is outside the allowed namespaces \(SCOPE_NAMESPACES: shop\)$/],
] as [string, Record<string, string>, RegExp][]) {
  t.test(`rollout_start baseline, target in ${namespace} (${JSON.stringify(env)}): not read, blocked by the scope guard`, async (t) => {
    const action = new CountingAction();
    const e = testEngine({ ruleText: rule(), action, env });
    e.prometheus!.value = 5; // were the baseline read, the trigger would hold
    await e.deliver(alertIn(namespace));
    const [rec] = await e.engine.records.list({});
    t.same(action.plans, [], 'plan() was never called: nothing of the target was read');
    t.equal(rec!.state, 'blocked');
    t.match(rec!.outcome?.message, reason);
    t.same(rec!.guards.find((g) => g.guard === 'scope')?.result, 'block');
    t.equal(action.executed.length, 0);
    t.equal(e.prometheus!.instantTimes.length, 0, 'no baseline queried either');
    await e.engine.idle();
    t.same(e.notifier.sent, [], 'nobody notified: the trigger was never confirmed (a broad rule would page on every firing)');
  });
}

t.test('a notify-only rule with a rollout_start baseline: nothing read outside scope either, and no baseline to confirm with', async (t) => {
  const action = new CountingAction();
  const e = testEngine({ ruleText: rule('notify'), action });
  e.prometheus!.value = 5;
  await e.deliver(alertIn('kube-system'));
  const [rec] = await e.engine.records.list({});
  t.same(action.plans, []);
  t.equal(rec!.state, 'not_confirmed');
  t.match(rec!.confirmation?.reason, /rollout start time is unknown/);
});

t.test('in scope, the rollout start is read as before: one plan for the baseline', async (t) => {
  const action = new CountingAction();
  const e = testEngine({ ruleText: rule(), action });
  e.prometheus!.value = 0.5; // flat: 1x the baseline, under 2x
  await e.deliver(alertIn('prod'));
  const [rec] = await e.engine.records.list({});
  t.same(action.plans, ['prod']);
  t.equal(rec!.state, 'not_confirmed');
});
