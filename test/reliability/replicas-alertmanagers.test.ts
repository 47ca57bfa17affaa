// Three rollguard replicas behind a round-robin balancer (as behind a Service) and two real,
// unclustered Alertmanagers each routing every alert to two receivers: every notification reaches
// rollguard four times or more, on any replica. Exactly one rollback per target: one record that
// acted, one PATCH the API server received (counted by the proxy), the revision moved once.
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startCluster } from '../cluster/harness.js';
import { startAlertmanager, type LocalAlertmanager } from '../support/alertmanager.js';
import { WEBHOOK_TOKEN } from '../support/app.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { startServe, type ServeProcess } from '../support/serve.js';
import { deployV1ThenV2, getDep, image, REVISION, rolledOut } from './cluster-support.js';
import { figures } from './figures.js';
import { records, ruleFile, scrape } from './support.js';

const NS = 'ha';
const TARGETS = ['cart', 'checkout', 'payments', 'search'];

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
const redis = await startRedis();
t.teardown(() => redis.destroy());
const proxy = await startFaultProxy({ server: cluster.server, caFile: cluster.caFile });
t.teardown(() => proxy.close());

const rules = ruleFile(
  t,
  `rules:
  - name: ha-errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
  - name: ha-latency
    match: ['alertname="HighLatency"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`,
);

await cluster.kubectl(['create', 'namespace', NS], { check: true });
await Promise.all(TARGETS.map((n) => deployV1ThenV2(cluster, NS, n)));

const kubeconfig = proxy.kubeconfig(cluster.rollguardToken);
const replicas: ServeProcess[] = [];
for (const name of ['ha-a', 'ha-b', 'ha-c']) {
  const p = await startServe({
    REDIS_URL: redis.url,
    KUBECONFIG: kubeconfig,
    WEBHOOK_TOKEN,
    RULES_PATH: rules,
    DRY_RUN: 'false',
    LOG_LEVEL: 'warn',
    LOCK_TTL: '5s',
    SCHEDULER_INTERVAL: '1s',
    QUEUE_CLAIM_IDLE: '5s',
    VERIFY_TIMEOUT: '60s',
    MAX_CONCURRENT_ROLLBACKS: '10',
    BUDGET_CLUSTER_PER_HOUR: '20',
    CONSUMER_NAME: name,
  });
  replicas.push(p);
  t.teardown(() => void p.proc.kill('SIGKILL'));
}

// --- a round-robin balancer in front of the replicas (a Service), counting what it forwards
const delivered = new Map<number, number>(); // status -> count
const perReplica = replicas.map(() => 0);
let rr = 0;
const lb = http.createServer((req, res) => {
  const i = rr++ % replicas.length;
  perReplica[i]!++;
  const up = http.request({ host: '127.0.0.1', port: replicas[i]!.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
    delivered.set(ur.statusCode ?? 0, (delivered.get(ur.statusCode ?? 0) ?? 0) + 1);
    res.writeHead(ur.statusCode ?? 502, ur.headers);
    ur.pipe(res);
  });
  up.on('error', (e) => {
    res.statusCode = 502;
    res.end(String(e));
  });
  req.pipe(up);
});
await new Promise<void>((r) => lb.listen(0, '127.0.0.1', r));
t.teardown(() => {
  lb.closeAllConnections();
  lb.close();
});
const webhookUrl = `http://127.0.0.1:${(lb.address() as AddressInfo).port}/v1/alerts`;

const ams: LocalAlertmanager[] = [];
for (let i = 0; i < 2; i++) {
  const am = await startAlertmanager({ webhookUrl, token: WEBHOOK_TOKEN, receivers: 2, groupWait: '1s', groupInterval: '2s', repeatInterval: '1m' });
  ams.push(am);
  t.teardown(() => am.stop());
}

async function fire(am: LocalAlertmanager, alerts: { labels: Record<string, string>; startsAt: string }[]): Promise<void> {
  const r = await fetch(`${am.url}/api/v2/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(alerts.map((a) => ({ ...a, annotations: { summary: 'error rate above 5%' }, generatorURL: 'http://prometheus.example/graph' }))) });
  if (!r.ok) throw new Error(`alertmanager ${am.url}: ${r.status} ${await r.text()}`);
}

t.test('3 replicas x 2 Alertmanagers x 2 receivers: exactly one rollback per target', async (t) => {
  const startsAt = new Date().toISOString(); // fired after the deploys above, as an alert they cause does
  const alerts = TARGETS.map((d) => ({ labels: { alertname: 'HighErrorRate', namespace: NS, deployment: d, rollguard: 'enabled', severity: 'critical' }, startsAt }));
  // Prometheus sends every evaluation to every Alertmanager; a few evaluations
  for (let round = 0; round < 3; round++) {
    await Promise.all(ams.map((am) => fire(am, alerts)));
    await new Promise((r) => setTimeout(r, 500));
  }
  // and a second alert about one target, with its own start: another record, never a second rollback
  const other = [{ labels: { alertname: 'HighLatency', namespace: NS, deployment: 'search', rollguard: 'enabled', severity: 'critical' }, startsAt: new Date().toISOString() }];
  await Promise.all(ams.map((am) => fire(am, other)));

  const recs = await waitFor(
    'one closed record per alert and target',
    async () => {
      const l = await records(replicas[0]!.url);
      return l.length >= TARGETS.length + 1 && l.every((r) => !['deciding', 'in_progress'].includes(r.state)) ? l : undefined;
    },
    120_000,
    500,
  );
  const deliveries = [...delivered.values()].reduce((a, b) => a + b, 0);
  t.ok(deliveries >= 2 * 2 * (TARGETS.length + 1), `each notification reached rollguard from 2 Alertmanagers x 2 receivers (${deliveries} webhook deliveries)`);
  t.same([...delivered.keys()], [200], 'every delivery answered 200');
  t.ok(perReplica.every((n) => n > 0), `every replica received deliveries (${perReplica.join(', ')})`);

  let duplicates = 0;
  for (const name of TARGETS) {
    const mine = recs.filter((r) => r.target === `Deployment/${NS}/${name}`);
    const acted = mine.filter((r) => r.times.executedAt !== undefined);
    t.equal(acted.length, 1, `${name}: one record acted (${mine.map((r) => `${r.state}: ${r.outcome?.message}`).join(' | ')})`);
    const patches = proxy.count('PATCH', new RegExp(`/namespaces/${NS}/deployments/${name}(\\?|$)`));
    t.equal(patches, 1, `${name}: one PATCH reached the API server`);
    if (patches > 1 || acted.length > 1) duplicates++;
    const d = await cluster.poll(`${name} at revision 3`, () => getDep(cluster, NS, name), (x) => rolledOut(x, '3'), 60_000);
    t.equal(image(d), `${name}:v1`);
    t.equal(d.metadata.annotations?.[REVISION], '3', `${name}: the revision moved once`);
  }
  const hcRecords = recs.filter((r) => r.alert?.labels.alertname === 'HighErrorRate');
  t.equal(hcRecords.length, TARGETS.length, 'one record per HighErrorRate alert, however many deliveries');
  const second = recs.find((r) => r.alert?.labels.alertname === 'HighLatency');
  t.ok(second && second.times.executedAt === undefined && ['blocked', 'refused'].includes(second.state), `the second alert on search did not roll it back again: ${second?.state}: ${second?.outcome?.message}`);
  const deduped = (await Promise.all(replicas.map((r) => scrape(r.url, 'rollguard_alerts_deduplicated_total')))).reduce((a, b) => a + b, 0);
  const received = (await Promise.all(replicas.map((r) => scrape(r.url, 'rollguard_alerts_received_total')))).reduce((a, b) => a + b, 0);
  t.ok(deduped > 0, `${deduped} of ${received} received alerts were resends, deduplicated`);
  figures(t, 'replicas-alertmanagers', {
    replicas: replicas.length,
    alertmanagers: ams.length,
    targets: TARGETS.length,
    webhook_deliveries: deliveries,
    alerts_received: received,
    alerts_deduplicated: deduped,
    rollbacks: recs.filter((r) => r.times.executedAt !== undefined).length,
    duplicate_rollbacks: duplicates,
    patches: proxy.count('PATCH', new RegExp(`/namespaces/${NS}/deployments/`)),
  });
});
