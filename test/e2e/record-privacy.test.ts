// A Deployment whose pod template holds env values (a connection string with its password, a
// plain value, one from a Secret) and an arg carrying a token, applied with kubectl (so its
// last-applied-configuration annotation repeats them), is rolled back on the real control plane by
// an alert. The record, the report, every log line and every Redis key name the paths and images
// the rollback changed, and none holds a value of the template.
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { QueueWorker } from '../../src/engine/worker.js';
import { rollbacksRoutes } from '../../src/http/rollbacks.js';
import { RedisStore } from '../../src/store/redis.js';
import { startCluster } from '../cluster/harness.js';
import { postAlerts, WEBHOOK_TOKEN } from '../support/app.js';
import { waitFor } from '../support/ports.js';
import { redisDump, startRedis } from '../support/redis.js';
import { clusterEngine } from '../support/engine.js';
import { assertNothingLeaked, secretTemplate } from '../support/secret-template.js';

const NS = 'private';
const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
const redis = await startRedis();
t.teardown(() => redis.destroy());

const RULES = `
rules:
  - name: orders-errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`;

interface Dep {
  metadata: { generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; template: { spec: { containers: { image: string }[] } } };
  status: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
}
const get = () => cluster.request<Dep>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/orders`);
const settled = (d: Dep, image: string) =>
  d.spec.template.spec.containers[0]!.image === image &&
  (d.status.observedGeneration ?? 0) >= d.metadata.generation &&
  d.status.updatedReplicas === d.spec.replicas &&
  d.status.availableReplicas === d.spec.replicas &&
  (d.status.replicas ?? 0) === d.spec.replicas;

async function apply(rev: 1 | 2): Promise<void> {
  const obj = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'orders', namespace: NS, labels: { app: 'orders' } }, spec: { replicas: 2, selector: { matchLabels: { app: 'orders' } }, template: secretTemplate('orders', rev) } };
  await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(obj), check: true });
  await cluster.poll(`orders at revision ${rev}`, get, (d) => settled(d, rev === 1 ? 'orders:v1' : 'orders:v2-bad'), 60_000);
}

t.test('a rolled-back pod template with env values: the record says what changed and repeats no value', async (t) => {
  await cluster.kubectl(['create', 'namespace', NS], { check: true });
  await apply(1);
  await apply(2);
  const lastApplied = (await get()).metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'] ?? '';
  t.match(lastApplied, /hunter2-rev2/, 'the Deployment itself repeats its env values (kubectl apply), so a copy of its annotations would too');

  const store = new RedisStore({ url: redis.url, prefix: 'privacy' });
  t.teardown(() => store.close());
  await store.waitReady(10_000);
  const env = { WEBHOOK_TOKEN, DRY_RUN: 'false', LOCK_TTL: '10s', VERIFY_TIMEOUT: '60s', QUEUE_CLAIM_IDLE: '30s' };
  const { engine, config, metrics, logs } = await clusterEngine({ kubeconfig: cluster.rollguardKubeconfig, env, rulesText: RULES, store, owner: 'privacy-a' });
  const worker = new QueueWorker({ store, metrics, logger: logs.logger, consumer: 'privacy-a', claimIdleMs: config.QUEUE_CLAIM_IDLE, maxDeliveries: 5, handler: (ev) => engine.handle(ev), blockMs: 200 });
  const app = buildApp({ config, store, metrics, logger: logs.logger, routes: [rollbacksRoutes(engine)] });
  t.teardown(() => app.close());
  worker.start();
  t.teardown(() => worker.stop());

  const startsAt = new Date().toISOString(); // fired after the deploy above, as an alert it causes does
  const res = await postAlerts(app, {
    version: '4',
    groupKey: '{}:{alertname="HighErrorRate"}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'rollguard',
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    alerts: [{ status: 'firing', labels: { alertname: 'HighErrorRate', namespace: NS, deployment: 'orders' }, annotations: { summary: 'orders 5xx above 5%' }, startsAt, endsAt: '0001-01-01T00:00:00Z', generatorURL: '', fingerprint: 'fp-orders' }],
  });
  t.equal(res.statusCode, 200);
  const rec = await waitFor(
    'the rollback to close',
    async () => {
      const l = await engine.records.list({});
      return l[0] && !['deciding', 'in_progress'].includes(l[0].state) ? l[0] : undefined;
    },
    90_000,
    250,
  );
  await engine.idle();
  t.equal(rec.state, 'unverified', `${rec.outcome?.message} (no Prometheus here to re-check; the rollout itself completed)`);
  await cluster.poll('orders back at v1', get, (d) => settled(d, 'orders:v1'), 60_000);

  const w = rec.plan!.writes![0]!;
  t.match(w, { kind: 'Deployment', namespace: NS, name: 'orders' });
  for (const path of ['spec.template.spec.containers[api].image', 'spec.template.spec.containers[api].env[DATABASE_URL].value', 'spec.template.spec.containers[api].args[1]', 'metadata.annotations["kubernetes.io/change-cause"]']) {
    t.ok(w.changed.includes(path), `the record names ${path}`);
  }
  t.same(w.images, [{ container: 'api', before: 'orders:v2-bad', after: 'orders:v1' }], 'images before and after');
  t.match(w.templateHash, { before: /^sha256:/, after: /^sha256:/ });

  const list = await app.inject({ method: 'GET', url: '/v1/rollbacks' });
  const one = await app.inject({ method: 'GET', url: `/v1/rollbacks/${rec.id}` });
  const report = await app.inject({ method: 'GET', url: `/v1/rollbacks/${rec.id}/report` });
  t.equal(report.statusCode, 200);
  t.match(report.body, /roll back deployment private\/orders from revision 2 to revision 1/);
  const dump = await redisDump(redis.url);
  t.match(dump, new RegExp(rec.id), 'the dump holds the record');
  assertNothingLeaked(t, { 'GET /v1/rollbacks': list.body, 'GET /v1/rollbacks/:id': one.body, report: report.body, logs: logs.text(), 'Redis keys': dump });
});
