// Metric labels taken from alerts are bounded: a namespace is a label value only when it is in
// scope (listed in SCOPE_NAMESPACES, or, with it unset, one where a target was found), so forged
// alerts naming thousands of namespaces cannot make thousands of series.
import t from 'tap';
import type { TargetRef } from '../../../src/actions/action.js';
import { OUT_OF_SCOPE, UNKNOWN_NAMESPACE } from '../../../src/metrics.js';
import { FakeDeploymentAction, firing, testEngine } from '../../support/engine.js';

/** The cluster double: only namespace prod exists. */
class OnlyProd extends FakeDeploymentAction {
  override async plan(ref: TargetRef) {
    const p = await super.plan(ref);
    return ref.namespace === 'prod' ? p : { ...p, refusal: { code: 'not_found' as const, message: `deployments.apps "${ref.name}" not found` } };
  }
}

async function namespaces(e: ReturnType<typeof testEngine>): Promise<string[]> {
  const m = await e.metrics.rollbacks.get();
  return [...new Set(m.values.map((v) => String(v.labels.namespace)))].sort();
}

t.test('forged alerts naming many namespaces make no series of their own (SCOPE_NAMESPACES unset)', async (t) => {
  const e = testEngine({ action: new OnlyProd() });
  e.prometheus!.value = 0.001; // the P2 and unconfirmed ones end before any plan
  for (let i = 0; i < 40; i++) {
    const ns = `forged-${i}`;
    await e.deliver(firing(i % 2 ? 'HighErrorRate' : 'MinorBug', `svc-${i}`, { labels: { alertname: i % 2 ? 'HighErrorRate' : 'MinorBug', namespace: ns, deployment: `svc-${i}` } }));
  }
  e.prometheus!.value = 0.2;
  for (let i = 40; i < 60; i++) await e.deliver(firing('HighErrorRate', 'x', { labels: { alertname: 'HighErrorRate', namespace: `forged-${i}`, deployment: 'x' } }));
  await e.deliver(firing('HighErrorRate', 'dns', { labels: { alertname: 'HighErrorRate', namespace: 'kube-system', deployment: 'coredns' } }));
  await e.deliver(firing('HighErrorRate', 'checkout'));
  t.equal((await e.engine.records.list({ limit: 100 })).length, 62, 'every alert was handled');
  t.same(await namespaces(e), [OUT_OF_SCOPE, 'prod', UNKNOWN_NAMESPACE].sort(), 'the real namespace, and two fixed values for the rest');
  const series = (await e.metrics.rollbacks.get()).values.length;
  t.ok(series <= 8, `${series} series for 62 alerts in 62 namespaces`);
});

t.test('with SCOPE_NAMESPACES, the listed namespaces are labels from the start; the rest are out_of_scope', async (t) => {
  const e = testEngine({ env: { SCOPE_NAMESPACES: 'prod,staging' } });
  e.prometheus!.value = 0.001; // not confirmed: no plan is made
  await e.deliver(firing('HighErrorRate', 'a', { labels: { alertname: 'HighErrorRate', namespace: 'staging', deployment: 'a' } }));
  await e.deliver(firing('HighErrorRate', 'b', { labels: { alertname: 'HighErrorRate', namespace: 'elsewhere', deployment: 'b' } }));
  t.same(await namespaces(e), [OUT_OF_SCOPE, 'staging']);
});
