// What a rollback's record, report, notifications and log lines say of the change: the paths it
// changes, the images before and after, a hash of each pod template; never an env value, an arg,
// or an annotation outside the allow-list.
import t from 'tap';
import { createActions } from '../../../src/actions/index.js';
import { buildApp } from '../../../src/app.js';
import { rollbacksRoutes } from '../../../src/http/rollbacks.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { firing, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { assertNothingLeaked, capturingLogger, secretTemplate } from '../../support/secret-template.js';

const NS = 'prod';
const UID = '22222222-2222-2222-2222-222222222222';

/** checkout at revision 2 (bad), its ReplicaSets of revisions 1 and 2; a controller that rolls out at once. */
function cluster(): FakeKube {
  const kube = new FakeKube();
  const rs = (rev: 1 | 2, hash: string): KubeObject => ({
    metadata: {
      name: `checkout-${hash}`,
      namespace: NS,
      labels: { app: 'checkout', 'pod-template-hash': hash },
      annotations: { 'deployment.kubernetes.io/revision': String(rev) },
      creationTimestamp: new Date(Date.now() - (rev === 1 ? 86_400_000 : 600_000)).toISOString(),
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'checkout', uid: UID, controller: true }],
    },
    spec: { replicas: rev === 2 ? 2 : 0, selector: { matchLabels: { app: 'checkout', 'pod-template-hash': hash } }, template: { ...secretTemplate('checkout', rev), metadata: { labels: { app: 'checkout', 'pod-template-hash': hash } } } },
  });
  kube.add(RESOURCES.replicasets, rs(1, 'aaa1'));
  kube.add(RESOURCES.replicasets, rs(2, 'bbb2'));
  kube.add(RESOURCES.deployments, {
    metadata: {
      name: 'checkout',
      namespace: NS,
      uid: UID,
      generation: 2,
      annotations: {
        'deployment.kubernetes.io/revision': '2',
        // what `kubectl apply` leaves: the whole object, env values included
        'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec: { template: secretTemplate('checkout', 2) } }),
      },
    },
    spec: { replicas: 2, selector: { matchLabels: { app: 'checkout' } }, template: secretTemplate('checkout', 2) },
    status: { observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2 },
  });
  kube.onPatch = (rt, obj, fake) => {
    if (rt.plural !== 'deployments') return;
    fake.put(rt, { ...obj, status: { observedGeneration: obj.metadata.generation, replicas: 2, updatedReplicas: 2, availableReplicas: 2 } });
  };
  return kube;
}

t.test('a rolled-back Deployment with env values: the record names paths and images, nothing holds a value', async (t) => {
  const kube = cluster();
  const logs = capturingLogger();
  const store = new MemoryStore();
  const e = testEngine({ kube, actions: createActions(), logger: logs.logger, store });
  const alert = firing('HighErrorRate', 'checkout', {
    annotations: {
      summary: 'checkout 5xx above 5%',
      // an annotation outside the allow-list, as an alert rule may template any label into one
      dump: 'DATABASE_URL=postgres://app:hunter2-rev2@db.prod.svc:5432/orders',
      description: `long ${'x'.repeat(10_000)}`,
    },
    generatorURL: 'http://admin:prom-pass@prometheus.example:9090/graph?g0.expr=up&token=prom-query-token',
  });
  e.prometheus!.value = 0.2;
  kube.onPatch = ((orig) => (rt, obj, fake) => {
    orig!(rt, obj, fake);
    e.prometheus!.value = 0.001; // recovered once rolled back
  })(kube.onPatch);
  await e.deliver(alert);
  await e.notifications.flush();

  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  t.equal(kube.peek(RESOURCES.deployments, NS, 'checkout')!.spec.template.spec.containers[0].image, 'checkout:v1', 'rolled back');

  const w = rec!.plan!.writes![0]!;
  t.match(w, { kind: 'Deployment', namespace: NS, name: 'checkout' }, 'the object written');
  for (const path of [
    'spec.template.spec.containers[api].image',
    'spec.template.spec.containers[api].env[DATABASE_URL].value',
    'spec.template.spec.containers[api].env[MODE].value',
    'spec.template.spec.containers[api].args[1]',
    'metadata.annotations["kubernetes.io/change-cause"]',
  ]) {
    t.ok(w.changed.includes(path), `the record names the changed path ${path}`);
  }
  t.notOk(w.changed.some((p) => p.includes('API_KEY')), 'the env from a Secret did not change, so it is not named');
  t.same(w.images, [{ container: 'api', before: 'checkout:v2-bad', after: 'checkout:v1' }], 'images before and after');
  t.match(w.templateHash, { before: /^sha256:[0-9a-f]{64}$/, after: /^sha256:[0-9a-f]{64}$/ });
  t.not(w.templateHash!.before, w.templateHash!.after, 'the two templates differ');
  t.same(Object.keys(rec!.alert!.annotations).sort(), ['description', 'summary'], 'only allow-listed annotations');
  t.equal(Buffer.byteLength(rec!.alert!.annotations.description!), e.config.ALERT_MAX_ANNOTATION_BYTES, 'cut to ALERT_MAX_ANNOTATION_BYTES');
  t.notMatch(rec!.alert!.generatorURL, /prom-pass|admin@|prom-query-token/, 'no credentials of the generator URL, in its user part or its query');
  t.match(rec!.alert!.generatorURL, /g0\.expr=up&token=\*\*\*/, 'the rest of its query kept');

  const app = buildApp({ config: e.config, store, metrics: e.metrics, logger: false, routes: [rollbacksRoutes(e.engine)] });
  t.teardown(() => app.close());
  const list = await app.inject({ method: 'GET', url: '/v1/rollbacks' });
  const one = await app.inject({ method: 'GET', url: `/v1/rollbacks/${rec!.id}` });
  const report = await app.inject({ method: 'GET', url: `/v1/rollbacks/${rec!.id}/report` });
  t.equal(report.statusCode, 200);
  t.match(report.body, /checkout 5xx above 5%/, 'the report still has the allowed annotation');
  assertNothingLeaked(t, {
    'GET /v1/rollbacks': list.body,
    'GET /v1/rollbacks/:id': one.body,
    report: report.body,
    notifications: JSON.stringify(e.notifier.sent),
    logs: logs.text(),
    'the stored record': JSON.stringify(await store.getRecord(rec!.id)),
  });
  t.notMatch(list.body + report.body, /prom-pass|"dump"/, 'neither the dropped annotation nor the URL password');
});

t.test('records written by an earlier version lose the values their writes held when read', async (t) => {
  const e = testEngine();
  const legacy = { description: 'replace /spec/template', namespace: NS, name: 'checkout', patchType: 'json', patch: [{ op: 'replace', path: '/spec/template', value: secretTemplate('checkout', 1) }] };
  await e.store.putRecord({ id: 'rb-legacy', target: 'Deployment/prod/checkout', state: 'succeeded', createdAt: 1, plan: { summary: 's', writes: [legacy] }, timeline: [] });
  assertNothingLeaked(t, { get: JSON.stringify(await e.engine.records.get('rb-legacy')), list: JSON.stringify(await e.engine.records.list({})) });
  t.equal((await e.engine.records.get('rb-legacy'))!.plan!.writes![0]!.description, 'replace /spec/template', 'what is not a value stays');
});
