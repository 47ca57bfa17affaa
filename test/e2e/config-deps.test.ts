// What a revision depends on, on the real control plane (the Go-built API server,
// controller-manager and kwok nodes): the ConfigMaps and Secrets of the revision a rollback
// restores.
//  (a) revision 1 used a hashed ConfigMap (kustomize's configMapGenerator naming) that was pruned
//      after revision 2: rollguard refuses in one sentence, records and notifies it, and writes
//      nothing; `kubectl rollout undo` of a twin Deployment writes the rollback and its new
//      ReplicaSet's pods reference a ConfigMap that does not exist;
//  (b) a ConfigMap edited in place after revision 1, rule policy warn (the default): rolled back,
//      and the record, the notification and the report name the drifted ConfigMap;
//  (e) a Secret changed after revision 1: reported, not restored, and neither its old nor its new
//      data appears in a record, a report, a notification, a log line or a Redis key.
import t from 'tap';
import type { Alert } from '../../src/alertmanager/alert.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { incidentReport } from '../../src/engine/report.js';
import { RESOURCES } from '../../src/kube/kube.js';
import { RedisStore } from '../../src/store/redis.js';
import { applyChartRbac, deploymentSettled, startCluster } from '../cluster/harness.js';
import { clusterEngine, firingNow } from '../support/engine.js';
import { redisDump, startRedis } from '../support/redis.js';

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
const redis = await startRedis();
t.teardown(() => redis.destroy());

const RULES = `
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`;

const store = new RedisStore({ url: redis.url, prefix: 'configdeps' });
t.teardown(() => store.close());
await store.waitReady(10_000);
// the ServiceAccount with exactly the chart's RBAC with actions.checkSecrets: true (an explicit
// choice cluster-wide; the default, auto, grants no right on Secrets there): get on configmaps and
// secrets, nothing more. CONFIG_CHECK_SECRETS is on (its default), as the chart sets it then.
await applyChartRbac(cluster, ['actions.checkSecrets=true', 'actions.checkSecretsClusterWide=true']);
const { engine, config, kube, metrics, notifier, notifications, logs } = await clusterEngine({
  kubeconfig: cluster.rollguardKubeconfig,
  env: { DRY_RUN: 'false', LOCK_TTL: '10s', VERIFY_TIMEOUT: '60s' },
  rulesText: RULES,
  store,
  owner: 'configdeps-a',
});

interface Dep {
  metadata: { generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; template: { spec: { containers: { image: string; envFrom?: unknown[] }[]; volumes?: { configMap?: { name: string } }[] } } };
  status: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
}
const getDep = (ns: string, name: string) => cluster.request<Dep>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
const settled = (d: Dep, image: string) => deploymentSettled(d, image);

const kubectl = (args: string[], input?: string) => cluster.kubectl(args, { check: true, ...(input ? { input } : {}) });
const applyObj = (o: unknown) => kubectl(['apply', '-f', '-'], JSON.stringify(o));
const configMap = (ns: string, name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data });

/** A Deployment whose pod reads `config` (a ConfigMap by envFrom and volume, or a Secret by envFrom). */
function deployment(ns: string, name: string, image: string, config: { configMap?: string; secret?: string }) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: ns, labels: { app: name } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: 'app',
              image,
              envFrom: [...(config.configMap ? [{ configMapRef: { name: config.configMap } }] : []), ...(config.secret ? [{ secretRef: { name: config.secret } }] : [])],
              ...(config.configMap ? { volumeMounts: [{ name: 'config', mountPath: '/etc/app' }] } : {}),
            },
          ],
          ...(config.configMap ? { volumes: [{ name: 'config', configMap: { name: config.configMap } }] } : {}),
        },
      },
    },
  };
}

async function deploy(ns: string, name: string, image: string, config: { configMap?: string; secret?: string }) {
  await applyObj(deployment(ns, name, image, config));
  await cluster.poll(`${ns}/${name} at ${image}`, () => getDep(ns, name), (d) => settled(d, image), 90_000);
}

/** Past the next whole second: object times are kept to the second, and "after revision 1 was created" must be true of them. */
const nextSecond = () => new Promise((r) => setTimeout(r, 1100));

const alert = (ns: string, deployment: string): Alert =>
  firingNow('HighErrorRate', deployment, { labels: { alertname: 'HighErrorRate', namespace: ns, deployment }, annotations: { summary: `${deployment} 5xx above 5%` } });

async function fire(ns: string, deployment: string): Promise<RollbackRecord> {
  await engine.handle({ id: `ev-${ns}-${deployment}`, alert: alert(ns, deployment), deliveries: 1 });
  await engine.idle();
  await notifications.flush();
  const rec = (await engine.records.list({})).find((r) => r.target === `Deployment/${ns}/${deployment}`);
  if (!rec) throw new Error(`no record for ${ns}/${deployment}`);
  return rec;
}

const notificationsOf = (rec: RollbackRecord) => notifier.sent.filter((n) => n.title.includes(rec.target));

t.test('(a) a pruned hashed ConfigMap: rollguard refuses and writes nothing; kubectl rollout undo writes a rollback whose pods cannot get their config', async (t) => {
  const ns = 'cfg-a';
  await kubectl(['create', 'namespace', ns]);
  await applyObj(configMap(ns, 'app-config-7f9c2', { MODE: 'v1' }));
  for (const name of ['web', 'web-twin']) await deploy(ns, name, 'web:v1', { configMap: 'app-config-7f9c2' });
  await applyObj(configMap(ns, 'app-config-b8d41', { MODE: 'v2' }));
  for (const name of ['web', 'web-twin']) await deploy(ns, name, 'web:v2', { configMap: 'app-config-b8d41' });
  // kustomize's prune (or a Helm upgrade) removes the old generated ConfigMap
  await kubectl(['delete', 'configmap', '-n', ns, 'app-config-7f9c2']);
  const before = await getDep(ns, 'web');

  const rec = await fire(ns, 'web');
  const sentence = 'revision 1 needs ConfigMap cfg-a/app-config-7f9c2, which no longer exists; rolling back would leave its pods unable to start';
  t.equal(rec.state, 'refused');
  t.equal(rec.outcome?.message, sentence, 'recorded in those words');
  t.ok(rec.timeline.some((s) => s.message.includes(sentence)), 'on the timeline');
  const sent = notificationsOf(rec);
  t.same(sent.map((n) => n.kind), ['rollback_refused']);
  t.same(sent[0]?.lines, [sentence], 'notified in those words');
  const after = await getDep(ns, 'web');
  t.equal(after.metadata.generation, before.metadata.generation, 'nothing written: the Deployment is as it was');
  t.equal(after.spec.template.spec.containers[0]!.image, 'web:v2');

  // the same undo by kubectl: it restores the template and nothing else
  const undo = await cluster.kubectl(['rollout', 'undo', '-n', ns, 'deployment/web-twin']);
  t.equal(undo.code, 0, `kubectl rollout undo: ${undo.stdout}${undo.stderr}`);
  t.match(undo.stdout, /rolled back/);
  const twin = await cluster.poll('the twin at web:v1', () => getDep(ns, 'web-twin'), (d) => d.spec.template.spec.containers[0]!.image === 'web:v1', 30_000);
  t.same(twin.spec.template.spec.volumes?.map((v) => v.configMap?.name), ['app-config-7f9c2'], 'the rolled-back template names the pruned ConfigMap');
  type Pod = { metadata: { name: string }; spec: { containers: { image: string; envFrom?: { configMapRef?: { name: string } }[] }[]; volumes?: { configMap?: { name: string } }[] } };
  const pods = await cluster.poll(
    "the rollback's new pods",
    async () => (await cluster.request<{ items: Pod[] }>('GET', `/api/v1/namespaces/${ns}/pods?labelSelector=app%3Dweb-twin`)).items.filter((p) => p.spec.containers[0]!.image === 'web:v1'),
    (p) => p.length > 0,
    60_000,
  );
  for (const p of pods) {
    t.same(p.spec.containers[0]!.envFrom?.map((e) => e.configMapRef?.name), ['app-config-7f9c2'], `pod ${p.metadata.name} takes its env from app-config-7f9c2`);
    t.same(p.spec.volumes?.filter((v) => v.configMap).map((v) => v.configMap?.name), ['app-config-7f9c2'], `and mounts it`);
  }
  const missing = await cluster.kubectl(['get', 'configmap', '-n', ns, 'app-config-7f9c2']);
  t.not(missing.code, 0);
  t.match(missing.stderr, /configmaps "app-config-7f9c2" not found/, 'which does not exist');
  // kwok's nodes run no containers, so these pods are marked running; a real kubelet keeps such a
  // pod in CreateContainerConfigError ('configmap "app-config-7f9c2" not found', for envFrom) and
  // ContainerCreating with FailedMount events (for the volume): never ready, and the outage goes on.
  t.comment('kubectl rollout undo of web-twin: new pods reference the missing ConfigMap app-config-7f9c2');
});

t.test('(b) a ConfigMap edited in place after revision 1, policy warn: rolled back, and the record, the notification and the report say so', async (t) => {
  const ns = 'cfg-b';
  await kubectl(['create', 'namespace', ns]);
  await applyObj(configMap(ns, 'app-settings', { TIMEOUT: '5s' }));
  await deploy(ns, 'api', 'api:v1', { configMap: 'app-settings' });
  await nextSecond();
  // the bad deploy: the image and, edited in place, the ConfigMap
  await kubectl(['patch', 'configmap', '-n', ns, 'app-settings', '--type=merge', '-p', '{"data":{"TIMEOUT":"50ms"}}']);
  await deploy(ns, 'api', 'api:v2', { configMap: 'app-settings' });

  const rec = await fire(ns, 'api');
  t.equal(rec.state, 'unverified', `${rec.outcome?.message} (no Prometheus here to re-check; the rollout itself completed)`);
  await cluster.poll('api back at v1', () => getDep(ns, 'api'), (d) => settled(d, 'api:v1'), 60_000);
  const drift = /^ConfigMap cfg-b\/app-settings changed at \d\d:\d\d UTC, after revision 1 was created: the old code will run with the new configuration$/;
  t.equal(rec.plan?.configDrift?.length, 1);
  t.match(rec.plan?.configDrift?.[0], drift, 'the record names the drifted ConfigMap');
  t.match(rec.timeline.find((s) => s.step === 'config_drift')?.message, drift, 'on the timeline');
  const started = notificationsOf(rec).find((n) => n.kind === 'rollback_started');
  t.ok(started?.lines.some((l) => drift.test(l.replace(/^Configuration: /, ''))), 'the "rollback in progress" notification names it');
  t.match(incidentReport(rec), /Configuration: ConfigMap cfg-b\/app-settings changed at \d\d:\d\d UTC, after revision 1 was created/, 'and the report');
  const cm = await cluster.request<{ data: Record<string, string> }>('GET', `/api/v1/namespaces/${ns}/configmaps/app-settings`);
  t.equal(cm.data.TIMEOUT, '50ms', 'warn: the ConfigMap is left as it is');
});

t.test('(e) a Secret changed after revision 1: reported, not restored; its data is nowhere in records, reports, notifications, logs or Redis', async (t) => {
  const ns = 'cfg-e';
  const OLD = 'old-db-password-5e1b7c';
  const NEW = 'new-db-password-9a3f2d';
  const secret = (value: string) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-creds', namespace: ns }, stringData: { DB_PASSWORD: value } });
  await kubectl(['create', 'namespace', ns]);
  await applyObj(secret(OLD));
  await deploy(ns, 'orders', 'orders:v1', { secret: 'db-creds' });
  await nextSecond();
  await applyObj(secret(NEW));
  await deploy(ns, 'orders', 'orders:v2', { secret: 'db-creds' });

  const rec = await fire(ns, 'orders');
  t.equal(rec.state, 'unverified', rec.outcome?.message ?? '');
  await cluster.poll('orders back at v1', () => getDep(ns, 'orders'), (d) => settled(d, 'orders:v1'), 60_000);
  t.match(rec.plan?.configDrift, [/^Secret cfg-e\/db-creds changed at \d\d:\d\d UTC, after revision 1 was created: the old code will run with the new configuration$/], 'reported');
  const s = await cluster.request<{ data: Record<string, string> }>('GET', `/api/v1/namespaces/${ns}/secrets/db-creds`);
  t.equal(Buffer.from(s.data.DB_PASSWORD!, 'base64').toString(), NEW, 'not restored');
  // how rollguard reads it: the API server answers a PartialObjectMetadata, which has no data
  const meta = await kube!.getMetadata(RESOURCES.secrets, ns, 'db-creds');
  t.same([meta.apiVersion, meta.kind, meta.metadata.name], ['meta.k8s.io/v1', 'PartialObjectMetadata', 'db-creds'], 'a metadata-only answer');

  const parts: Record<string, string> = {
    records: JSON.stringify(await engine.records.list({})),
    report: incidentReport(rec),
    notifications: JSON.stringify(notifier.sent),
    logs: logs.text(),
    'Redis keys': await redisDump(redis.url),
  };
  t.match(parts['Redis keys'], rec.id, 'the dump holds the record');
  for (const [where, text] of Object.entries(parts)) {
    for (const v of [OLD, NEW]) {
      for (const form of [v, Buffer.from(v).toString('base64')]) t.notOk(text.includes(form), `${where} holds no Secret value (${form === v ? 'plain' : 'base64'})`);
    }
  }
});
