// Who goes first at a bounded dependency (src/turns.ts): the engine hands each query and each read
// the lane of the rule it is for (P0 first), a human's rollback goes first, and the status page's
// check never waits. The bound itself: test/unit/turns.test.ts and the clients' tests.
import t from 'tap';
import { createActions } from '../../../src/actions/index.js';
import { RESOURCES, type KubeObject, type RequestOptions, type ResourceType } from '../../../src/kube/kube.js';
import { PrometheusBusyError, type QueryOptions, type RangeSeries } from '../../../src/prometheus/client.js';
import type { Precedence } from '../../../src/turns.js';
import { FakePrometheus, firing, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { OWNER_RESOURCES } from '../../../src/gitops/types.js';

class SeeingPrometheus extends FakePrometheus {
  seen: (Precedence | undefined)[] = [];
  override async query(expr: string, timeMs: number, opts?: QueryOptions) {
    this.seen.push(opts?.precedence);
    return super.query(expr, timeMs);
  }
  override async queryRange(expr: string, startMs: number, endMs: number, stepMs: number, opts?: QueryOptions): Promise<RangeSeries[]> {
    this.seen.push(opts?.precedence);
    return super.queryRange(expr, startMs, endMs, stepMs);
  }
}

class SeeingKube extends FakeKube {
  seen: (Precedence | undefined)[] = [];
  override async get(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject> {
    this.seen.push(opts?.precedence);
    return super.get(rt, namespace, name, opts);
  }
  override async list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]> {
    this.seen.push(opts?.precedence);
    return super.list(rt, namespace, opts);
  }
}

t.test("each trigger query carries its rule's priority lane: P0 0, P1 1, P2 2", async (t) => {
  const prometheus = new SeeingPrometheus();
  prometheus.value = 0.001; // not confirmed: nothing rolls back
  const e = testEngine({ prometheus });
  for (const [alertname, lane] of [['HighErrorRate', 0], ['SlowBurn', 1], ['MinorBug', 2]] as const) {
    prometheus.seen = [];
    await e.deliver(firing(alertname, `svc-${lane}`));
    t.ok(prometheus.seen.length > 0, `${alertname}: queried`);
    t.same([...new Set(prometheus.seen)], [lane], `${alertname}: every query in lane ${lane}`);
  }
});

/** checkout at revision 2, its ReplicaSets of revisions 1 and 2, rolled out at once when patched. */
function cluster(): SeeingKube {
  const kube = new SeeingKube();
  const uid = '33333333-3333-3333-3333-333333333333';
  const template = (rev: number) => ({ metadata: { labels: { app: 'checkout' } }, spec: { containers: [{ name: 'app', image: `checkout:${rev}` }] } });
  for (const [rev, hash] of [[1, 'aaa1'], [2, 'bbb2']] as const) {
    kube.add(RESOURCES.replicasets, {
      metadata: {
        name: `checkout-${hash}`,
        namespace: 'prod',
        labels: { app: 'checkout', 'pod-template-hash': hash },
        annotations: { 'deployment.kubernetes.io/revision': String(rev) },
        creationTimestamp: new Date(Date.now() - (rev === 1 ? 86_400_000 : 600_000)).toISOString(),
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'checkout', uid, controller: true }],
      },
      spec: { replicas: rev === 2 ? 2 : 0, selector: { matchLabels: { app: 'checkout', 'pod-template-hash': hash } }, template: template(rev) },
    });
  }
  kube.add(RESOURCES.deployments, {
    metadata: { name: 'checkout', namespace: 'prod', uid, generation: 2, annotations: { 'deployment.kubernetes.io/revision': '2' } },
    spec: { replicas: 2, selector: { matchLabels: { app: 'checkout' } }, template: template(2) },
    status: { observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2 },
  });
  kube.onPatch = (rt, obj, fake) => {
    if (rt.plural === 'deployments') fake.put(rt, { ...obj, status: { observedGeneration: obj.metadata.generation, replicas: 2, updatedReplicas: 2, availableReplicas: 2 } });
  };
  return kube;
}

t.test("a rollback's reads carry its rule's lane; a human's rollback goes first, unset, taking no place kept for P0 alerts", async (t) => {
  const kube = cluster();
  const e = testEngine({ kube, actions: createActions() });
  e.prometheus!.value = 0.2;
  kube.onPatch = ((orig) => (rt: ResourceType, obj: KubeObject, fake: FakeKube) => {
    orig!(rt, obj, fake);
    e.prometheus!.value = 0.001;
  })(kube.onPatch);
  await e.deliver(firing('SlowBurn', 'checkout')); // a P1 rule that rolls back (P2 only notifies)
  const [rec] = await e.engine.records.list({ limit: 1 });
  t.equal(rec?.priority, 'P1');
  t.ok(rec?.timeline.some((s) => s.step === 'executed' || s.step === 'patched' || /patch/i.test(s.step)), `rolled back (${rec?.timeline.map((s) => s.step).join(', ')})`);
  t.ok(kube.seen.length > 1, 'the plan and the verification read the cluster');
  t.same([...new Set(kube.seen)], [1], "each of its reads, the verification's polls included, in lane 1, the P1 rule's");

  const kube2 = cluster();
  const m = testEngine({ kube: kube2, actions: createActions() });
  await m.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, reason: 'bad deploy', requestedBy: 'ops' });
  await m.engine.idle();
  t.ok(kube2.seen.length > 0, 'the manual rollback read the cluster');
  // unset, not 0: first in line (lane 0), but not in the places kept for P0 alerts' reads (src/turns.ts p0Extra)
  t.same([...new Set(kube2.seen)], [undefined], 'each with its precedence unset: first, but no place kept for P0 alerts');
});

t.test("a query that never got its turn holds the decision, even for a P0 rule whose onPrometheusDown is act: rollguard's own line never decides a rollback unconfirmed", async (t) => {
  const busy = new (class extends FakePrometheus {
    override async queryRange(): Promise<RangeSeries[]> {
      throw new PrometheusBusyError('Prometheus at http://prometheus:9090: no turn to query it within PROMETHEUS_TIMEOUT (10000ms): PROMETHEUS_MAX_CONCURRENT=16 queries were in flight all that time; never sent');
    }
  })();
  let clock = Date.now();
  const e = testEngine({ prometheus: busy, now: () => clock });
  await e.deliver(firing('HighErrorRate', 'checkout')); // the P0 rule: onPrometheusDown act by default
  const [rec] = await e.engine.records.list({ limit: 1 });
  t.equal(rec?.priority, 'P0');
  t.equal(rec?.state, 'held', 'held for a re-check');
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
  t.match(rec?.confirmation?.reason, /never sent; held for a re-check whatever onPrometheusDown \(act\) says/);
  t.match(rec?.decision?.reason, /^no turn at Prometheus/, 'the decision says why, not "unreachable"');
  const confirmations = await e.metrics.triggerConfirmations.get();
  t.same(confirmations.values.filter((v) => v.labels.outcome === 'prometheus_busy').map((v) => v.value), [1], 'counted as prometheus_busy');
  t.equal(confirmations.values.filter((v) => v.labels.outcome === 'prometheus_down').length, 0, 'not as prometheus_down');

  // a P0 hold is escalated at once, once: a human hears of it now, not at HOLD_MAX_AGE
  const escalated = async () => (await e.metrics.escalations.get()).values.filter((v) => v.labels.reason === 'prometheus_busy').map((v) => v.value);
  t.same(await escalated(), [1], 'escalated: rollguard_escalations_total{reason="prometheus_busy"}');
  await e.notifications.flush();
  const pages = e.notifier.sent.filter((n) => n.kind === 'trigger_busy');
  t.equal(pages.length, 1, 'a trigger_busy notification');
  t.equal(pages[0]?.severity, 'critical');
  t.match(pages[0]?.lines.join('\n'), /PROMETHEUS_MAX_CONCURRENT/, 'naming the setting');
  clock += 61_000;
  await e.engine.tick(); // the re-check, still no turn
  const again = (await e.engine.records.get(rec!.id))!;
  t.equal(again.state, 'held', 'still held on its re-check');
  t.ok(again.timeline.filter((s) => s.step === 'decided').length >= 2, 're-checked');
  t.same(await escalated(), [1], 'not escalated again at the re-check');
  await e.notifications.flush();
  t.equal(e.notifier.sent.filter((n) => n.kind === 'trigger_busy').length, 1, 'nor notified again');

  // a P1 rule's hold for the same reason waits quietly (HOLD_MAX_AGE escalates it)
  const p1 = testEngine({ prometheus: busy });
  await p1.deliver(firing('SlowBurn', 'checkout'));
  const [held] = await p1.engine.records.list({ limit: 1 });
  t.equal(held?.state, 'held');
  t.equal(held?.timeline.some((s) => s.step === 'escalated'), false, 'P1: not escalated');

  // the same rule with Prometheus itself timing out: act, as before
  const down = new FakePrometheus();
  down.down = true;
  const e2 = testEngine({ prometheus: down });
  await e2.deliver(firing('HighErrorRate', 'checkout'));
  t.equal(e2.action.executed.length, 1, 'Prometheus down: onPrometheusDown act rolls back, unchanged');
});

t.test("a GitOps owner's reads (the Argo CD Application of the workload) go in the rule's lane too", async (t) => {
  const kube = cluster();
  const dep = kube.peek(RESOURCES.deployments, 'prod', 'checkout')!;
  dep.metadata.annotations = { ...dep.metadata.annotations, 'argocd.argoproj.io/tracking-id': 'checkout:apps/Deployment:prod/checkout' };
  kube.put(RESOURCES.deployments, dep);
  kube.add(OWNER_RESOURCES.Application, {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Application',
    metadata: { name: 'checkout', namespace: 'argocd' },
    spec: { syncPolicy: { automated: { selfHeal: true } } },
  });
  const e = testEngine({ kube, actions: createActions() });
  e.prometheus!.value = 0.2;
  await e.deliver(firing('SlowBurn', 'checkout')); // P1
  const [rec] = await e.engine.records.list({ limit: 1 });
  t.ok(rec?.timeline.some((s) => s.step === 'gitops'), `the owner was looked up (${rec?.timeline.map((s) => s.step).join(', ')})`);
  const ownerReads = kube.calls.filter((c) => c.resource === 'applications' && ['get', 'getMetadata', 'list'].includes(c.verb));
  t.ok(ownerReads.length > 0, 'the Application was read');
  t.same([...new Set(ownerReads.map((c) => c.precedence))], [1], "each in lane 1, the P1 rule's");
});
