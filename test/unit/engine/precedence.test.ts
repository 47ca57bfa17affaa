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

t.test("a rollback's reads carry its rule's lane; a human's rollback goes first", async (t) => {
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
  t.same([...new Set(kube2.seen)], [0], 'each in lane 0: first');
});

t.test("a query that never got its turn holds the decision, even for a P0 rule whose onPrometheusDown is act: rollguard's own line never decides a rollback unconfirmed", async (t) => {
  const busy = new (class extends FakePrometheus {
    override async queryRange(): Promise<RangeSeries[]> {
      throw new PrometheusBusyError('Prometheus at http://prometheus:9090: no turn to query it within PROMETHEUS_TIMEOUT (10000ms): PROMETHEUS_MAX_CONCURRENT=16 queries were in flight all that time; never sent');
    }
  })();
  const e = testEngine({ prometheus: busy });
  await e.deliver(firing('HighErrorRate', 'checkout')); // the P0 rule: onPrometheusDown act by default
  const [rec] = await e.engine.records.list({ limit: 1 });
  t.equal(rec?.priority, 'P0');
  t.equal(rec?.state, 'held', 'held for a re-check');
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
  t.match(rec?.confirmation?.reason, /never sent; held for a re-check whatever onPrometheusDown \(act\) says/);

  // the same rule with Prometheus itself timing out: act, as before
  const down = new FakePrometheus();
  down.down = true;
  const e2 = testEngine({ prometheus: down });
  await e2.deliver(firing('HighErrorRate', 'checkout'));
  t.equal(e2.action.executed.length, 1, 'Prometheus down: onPrometheusDown act rolls back, unchanged');
});
