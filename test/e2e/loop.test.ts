// The whole loop (docs/loop.md): the demo app healthy, a bad revision deployed on the real control
// plane, Prometheus' own rule evaluation fires the error-rate alert, two Alertmanagers with two
// receivers each post it (four copies) to rollguard (`serve`, Redis store, the rollguard service
// account), which confirms it in Prometheus and rolls the Deployment back; the error rate falls
// under 0.1%, the alert resolves. Exactly one rollback; one observation in each time histogram.
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { startAlertmanager, type LocalAlertmanager } from '../support/alertmanager.js';
import { createDemoDeployment, followDeployment, highErrorRateRule, rolloutComplete, startDemoProcess, startScrapingPrometheus } from '../support/demo-app.js';
import { freePort, waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { startServe, type ServeProcess } from '../support/serve.js';

const NS = 'loop';
const APP = 'web';
// The demo app runs as one local process standing for the Deployment's pods; Prometheus labels its
// series with a pod name of the Deployment's shape, as Kubernetes service discovery would.
const POD = `${APP}-6b7f9c8d5-q8z2x`;
const TOKEN = 'loop-webhook-token';
const REVISION = 'deployment.kubernetes.io/revision';
const T_START = Date.now();

t.test('the whole loop: bad deploy, alert, one rollback, recovery, resolution', async (t) => {
  // Setup inside the test: a failure here still runs every teardown (no orphaned processes).
  const cluster: Cluster = await startCluster({ argoCrds: false });
  t.teardown(() => cluster.stop({ keep: !t.passing() }));
  t.comment(`control plane up after ${((Date.now() - T_START) / 1000).toFixed(1)}s`);

  const complete = rolloutComplete;
  const dep = await createDemoDeployment(cluster, NS, APP);

  // rollguard: serve as a process, Redis store, the service account's rights, a fast error-rate rule.
  const redis = await startRedis();
  t.teardown(() => redis.destroy());
  const tmp = mkdtempSync(join(tmpdir(), 'rollguard-loop-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  writeFileSync(
    join(tmp, 'loop-rules.yaml'),
    `# The shipped rules/error-rate.yaml at test speed: 8s window, 1s step, 10s rate window.
  rules:
    - name: loop-error-rate
      match: ['alertname="HighErrorRate"']
      target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
      trigger:
        kind: error_rate
        rateWindow: 10s
        selector:
          namespace: "{{ $labels.namespace }}"
          pod: { regex: "{{ $labels.deployment }}-[4-9bcdf]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}" }
        threshold: 0.05
        for: 8s
        step: 1s
      priority: P0
  `,
  );

  // A generic-webhook receiver: the notifications of the loop, as a chat or paging bridge gets them.
  const notes: Array<{ kind: string; title: string; lines: string[] }> = [];
  const receiver = createServer((req, res) => {
    let b = '';
    req.on('data', (d) => (b += d));
    req.on('end', () => {
      notes.push(JSON.parse(b) as (typeof notes)[number]);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => receiver.close(() => r())));
  const receiverPort = (receiver.address() as { port: number }).port;

  // rollguard first: Prometheus' port is chosen now (serve only queries it once alerts arrive), then the
  // Alertmanagers pointing at rollguard, then Prometheus pointing at the Alertmanagers.
  // LOOP_REPLICAS=2 runs two replicas sharing Redis, one Alertmanager posting to each (rollguard's HA
  // setup); the default is one replica receiving from both Alertmanagers.
  const REPLICAS = Number(process.env.LOOP_REPLICAS ?? '1');
  if (REPLICAS !== 1 && REPLICAS !== 2) throw new Error(`LOOP_REPLICAS must be 1 or 2, got ${process.env.LOOP_REPLICAS}`);
  const promPort = await freePort();
  const replicas: ServeProcess[] = [];
  for (const name of ['rollguard-a', 'rollguard-b'].slice(0, REPLICAS)) {
    const r = await startServe({
      KUBECONFIG: cluster.rollguardKubeconfig,
      REDIS_URL: redis.url,
      RULES_PATH: join(tmp, 'loop-rules.yaml'),
      WEBHOOK_TOKEN: TOKEN,
      PROMETHEUS_URL: `http://127.0.0.1:${promPort}`,
      NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${receiverPort}/hook`,
      VERIFY_TIMEOUT: '60s',
      RECOVERY_TIMEOUT: '60s',
      RECOVERY_POLL: '1s',
      SCHEDULER_INTERVAL: '1s',
      CONSUMER_NAME: name,
      LOG_LEVEL: 'info',
    });
    t.teardown(async () => {
      r.proc.kill('SIGTERM');
      await r.exited;
    });
    const reap = () => r.proc.kill('SIGKILL');
    process.once('exit', reap);
    void r.exited.then(() => process.off('exit', reap));
    replicas.push(r);
  }
  const serve = replicas[0]!;

  // Two Alertmanagers (no clustering: each sends), each routing every notification to two receivers.
  const ams: LocalAlertmanager[] = [];
  for (let i = 0; i < 2; i++) {
    const am = await startAlertmanager({ webhookUrl: `${replicas[i % REPLICAS]!.url}/v1/alerts`, token: TOKEN, receivers: 2 });
    t.teardown(() => am.stop());
    ams.push(am);
  }

  const demo = await startDemoProcess({ image: 'demo:v1', loadPerSecond: 40 });
  t.teardown(() => demo.stop());
  const follower = followDeployment(dep, demo, 200);
  t.teardown(() => follower.stop());

  // The shipped alert rule, at test speed: the same expression with [10s] rate windows, for 10s.
  const { shipped: highErrorRate, fast: fastRule } = highErrorRateRule();
  const prom = await startScrapingPrometheus({
    targets: [
      { job: 'demo', target: `127.0.0.1:${demo.port}`, labels: { namespace: NS, pod: POD } },
      ...replicas.map((r, i) => ({ job: `rollguard-${'ab'[i]}`, target: `127.0.0.1:${r.port}`, labels: { replica: `rollguard-${'ab'[i]}` } })),
    ],
    rules: JSON.stringify({ groups: [{ name: 'loop', rules: [fastRule] }] }),
    alertmanagers: ams.map((a) => `127.0.0.1:${a.port}`),
    port: promPort,
  });
  t.teardown(() => prom.stop());

  const ERROR_RATIO = `sum(rate(http_requests_total{namespace="${NS}",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="${NS}"}[10s]))`;
  const ratio = async () => {
    const r = await prom.query(ERROR_RATIO);
    return r.length ? Number(r[0]!.value[1]) : undefined;
  };
  /** Both replicas' /metrics, one after the other (the sums below add them up). */
  const rollguardMetrics = async () => (await Promise.all(replicas.map(async (r) => (await fetch(`${r.url}/metrics`)).text()))).join('\n');
  /** The sum over both replicas of the samples with exactly these labels. */
  const sample = (text: string, name: string, labels = '') => {
    const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const ms = [...text.matchAll(new RegExp(`^${esc}${labels ? `\\{${labels}\\}` : ''} (\\S+)$`, 'gm'))];
    return ms.length ? ms.reduce((a, m) => a + Number(m[1]), 0) : undefined;
  };
  const sumOf = (text: string, name: string) =>
    [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);

  const fail = (what: string) => `${what}\n--- rollguard log tails:\n${replicas.flatMap((r) => r.logs().slice(-25)).map((l) => JSON.stringify(l)).join('\n')}\n--- prometheus log tail:\n${prom.log().split('\n').slice(-5).join('\n')}`;

  t.match(String(highErrorRate.expr), /\[1m\]/, 'the shipped rule uses 1m rate windows; the loop runs it with 10s');
  t.match(fastRule.expr, /\[10s\]/);

  // 1. Healthy: traffic scraped, no errors.
  await waitFor('healthy traffic in Prometheus', async () => (await ratio()) === 0, 30_000, 250);
  t.equal((await demo.revision()).mode, 'healthy', 'demo app runs v1: healthy');
  t.same(await prom.alerts(), [], 'no alert while healthy');

  // 2. Deploy the bad revision (as a release pipeline would).
  const deployedAt = Date.now();
  await cluster.kubectl(['-n', NS, 'set', 'image', `deployment/${APP}`, 'app=demo:v2-bad'], { check: true });
  await waitFor('Deployment at revision 2', async () => complete(await dep(), '2'), 60_000, 200);
  await waitFor('demo app follows v2-bad', async () => (await demo.revision()).mode === 'failing', 10_000, 100);
  t.comment(`bad revision deployed; demo app failing after ${((follower.events.at(-1)!.at - deployedAt) / 1000).toFixed(1)}s`);

  // 3. Prometheus' own rule evaluation fires the alert.
  const firing = await waitFor(
    'HighErrorRate firing in Prometheus',
    async () => (await prom.alerts()).find((a) => a.labels.alertname === 'HighErrorRate' && a.state === 'firing'),
    60_000,
    250,
  );
  t.same({ namespace: firing.labels.namespace, deployment: firing.labels.deployment }, { namespace: NS, deployment: APP }, 'the alert names the Deployment');
  t.comment(`alert firing ${((Date.now() - deployedAt) / 1000).toFixed(1)}s after the deploy (error ratio ${(await ratio())?.toFixed(3)})`);

  // 4. Alertmanager posts; rollguard confirms and rolls back on the real cluster.
  const done = await waitFor(
    'the rollback record to close',
    async () => {
      const r = (await (await fetch(`${serve.url}/v1/rollbacks`)).json()) as { rollbacks: Array<{ id: string; state: string; times: Record<string, number>; outcome?: { message: string } }> };
      const rec = r.rollbacks[0];
      return rec && !['deciding', 'in_progress', 'held', 'scheduled', 'pending_approval'].includes(rec.state) ? r.rollbacks : undefined;
    },
    120_000,
    500,
  ).catch((e: unknown) => {
    throw new Error(fail(String(e)));
  });
  t.equal(done.length, 1, 'one rollback record');
  t.equal(done[0]!.state, 'succeeded', `outcome: ${done[0]!.outcome?.message}`);
  if (done[0]!.state !== 'succeeded') t.comment(fail('rollback did not succeed'));

  const after = await dep();
  t.equal(after.spec.template.spec.containers[0]!.image, 'demo:v1', 'the Deployment runs v1 again');
  t.equal(after.metadata.annotations?.[REVISION], '3', 'rolled back once: v1 reused as revision 3');
  t.match(after.metadata.annotations?.['kubernetes.io/change-cause'] ?? '', /^rollguard: rule loop-error-rate, alert HighErrorRate/, 'the change-cause says who and why');
  await waitFor('demo app follows the rollback to v1', async () => (await demo.revision()).mode === 'healthy', 10_000, 100);

  // 5. The error rate falls under 0.1% (the runbook's post-rollback check) and the alert resolves.
  await waitFor('error ratio under 0.1%', async () => {
    const r = await ratio();
    return r !== undefined && r < 0.001;
  }, 60_000, 250);
  t.pass('error rate back under 0.1%');
  await waitFor('HighErrorRate gone from Prometheus', async () => !(await prom.alerts()).some((a) => a.labels.alertname === 'HighErrorRate'), 60_000, 250);
  for (const am of ams) {
    await waitFor(`alert resolved in Alertmanager ${am.port}`, async () => !(await am.alerts()).some((a) => a.labels.alertname === 'HighErrorRate' && a.status.state === 'active'), 60_000, 250);
  }
  await waitFor('rollguard handles the resolved notification', async () => replicas.some((r) => r.logs().some((l) => l.msg === 'alert resolved' && l.records === 1)), 30_000, 250);
  const resolved = await waitFor(
    'the resolution written to the rollback record',
    async () => {
      const r = (await (await fetch(`${serve.url}/v1/rollbacks/${done[0]!.id}`)).json()) as { times: Record<string, number>; timeline: Array<{ step: string }> };
      return r.times.resolvedAt !== undefined ? r : undefined;
    },
    60_000,
    500,
  ).catch((e: unknown) => {
    throw new Error(fail(String(e)));
  });
  t.ok(resolved.timeline.some((s) => s.step === 'resolved'), 'the record says the alert resolved');

  // 6. Exactly one rollback for four copies of each notification.
  const text = await rollguardMetrics();
  t.equal(sumOf(text, 'rollguard_rollbacks_total'), 1, 'rollguard_rollbacks_total: one rollback');
  t.equal(sample(text, 'rollguard_rollbacks_total', `rule="loop-error-rate",namespace="${NS}",kind="Deployment",outcome="succeeded"`), 1);
  const firingPosts = sample(text, 'rollguard_alerts_received_total', 'status="firing"') ?? 0;
  const dupes = sample(text, 'rollguard_alerts_deduplicated_total') ?? 0;
  t.ok(firingPosts >= 4, `firing alert received ${firingPosts} times (2 Alertmanagers x 2 receivers)`);
  t.ok(dupes >= 3, `${dupes} copies dropped as duplicates`);
  const closedBy = replicas.map((r) => r.logs().filter((l) => l.msg === 'rollback record closed').length);
  t.equal(closedBy.reduce((a, b) => a + b, 0), 1, `one record closed (per replica: ${closedBy.join(', ')})`);
  if (REPLICAS === 2) {
    const accepted = replicas.map((r) => r.logs().filter((l) => l.msg === 'alerts accepted').length);
    t.ok(accepted.every((n) => n >= 2), `both replicas were posted to (webhook calls: ${accepted.join(', ')})`);
  }
  t.comment(`webhook: ${firingPosts} firing and ${sample(text, 'rollguard_alerts_received_total', 'status="resolved"') ?? 0} resolved copies received, ${dupes} deduplicated`);
  const rs = await cluster.request<{ items: Array<{ metadata: { ownerReferences?: Array<{ uid: string }> } }> }>('GET', `/apis/apps/v1/namespaces/${NS}/replicasets`);
  t.equal(rs.items.filter((r) => r.metadata.ownerReferences?.some((o) => o.uid === after.metadata.uid)).length, 2, 'two ReplicaSets: v1 (reused) and v2-bad');

  // 7. One observation in each time histogram; the loop's times against the runbook's targets.
  const times: Record<string, number> = {};
  for (const [h, label, target] of [
    ['detect', 'TTD', 300],
    ['decide', 'decide', 600],
    ['rollback', 'TTR', 900],
    ['recover', 'MTTR', 1800],
  ] as const) {
    t.equal(sample(text, `rollguard_time_to_${h}_seconds_count`), 1, `one observation in rollguard_time_to_${h}_seconds`);
    const v = sample(text, `rollguard_time_to_${h}_seconds_sum`)!;
    times[label] = v;
    t.ok(v >= 0 && v < target, `${label} ${v.toFixed(2)}s is under the runbook's target (${target}s)`);
  }
  t.comment(`TTD ${times.TTD!.toFixed(2)}s, decide ${times.decide!.toFixed(2)}s, TTR ${times.TTR!.toFixed(2)}s, MTTR ${times.MTTR!.toFixed(2)}s`);

  // 8. The runbook's messages reached the notification receiver.
  await waitFor('notifications delivered', async () => notes.some((n) => n.kind === 'rollback_succeeded'), 10_000, 100);
  const started = notes.find((n) => n.kind === 'rollback_started');
  t.ok(started, 'rollback in progress notified');
  t.match(started?.lines.join('\n') ?? '', new RegExp(`Service: Deployment/${NS}/${APP}[\\s\\S]*Reason: HighErrorRate[\\s\\S]*Impact: .*of requests to ${NS}/${APP} fail with 5xx`));
  t.ok(notes.some((n) => n.kind === 'rollback_succeeded' && /Rollback completed/.test(n.title)), 'rollback completed notified');
  t.equal(notes.filter((n) => n.kind === 'rollback_started').length, 1, 'notified once');
  for (const n of notes) t.comment(`notification ${n.kind}: ${n.title} | ${n.lines.join(' | ')}`);

  // Prometheus scraped rollguard too: the dashboard's MTTR query sees the loop.
  await waitFor('Prometheus scraped rollguard_time_to_recover_seconds_count 1', async () => {
    const r = await prom.query('sum(rollguard_time_to_recover_seconds_count)');
    return r.length === 1 && r[0]!.value[1] === '1';
  }, 20_000, 250);
  t.comment(`whole loop ${((Date.now() - T_START) / 1000).toFixed(1)}s including the control plane`);
});

t.test('the demo app behaves as each revision: healthy, 20% 5xx, slow', async (t) => {
  const { startDemoApp } = await import('../../examples/demo-app/server.js');
  const app = await startDemoApp({ image: 'demo:v1' });
  t.teardown(() => app.close());
  const url = `http://127.0.0.1:${app.port}`;
  const hit = async (n: number) => {
    const codes: number[] = [];
    for (let i = 0; i < n; i++) codes.push((await fetch(`${url}/work`).then(async (r) => (await r.arrayBuffer(), r))).status);
    return codes;
  };
  t.same(await hit(10), Array(10).fill(200), 'v1: every request answers 200');
  app.setImage('demo:v2-bad');
  t.equal(app.mode(), 'failing');
  const bad = await hit(10);
  t.equal(bad.filter((c) => c === 500).length, 2, 'v2-bad: every 5th request answers 500 (20%)');
  const r = await fetch(`${url}/-/revision`, { method: 'POST', body: JSON.stringify({ image: 'registry.example/demo:v3-slow' }) });
  t.same(await r.json(), { image: 'registry.example/demo:v3-slow', mode: 'slow' }, 'the mode follows the image tag');
  const t0 = Date.now();
  t.same(await hit(1), [200]);
  t.ok(Date.now() - t0 >= 2100, 'v3-slow: 2.2 s per request');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  t.match(metrics, /^http_requests_total\{code="200"\} 19$/m);
  t.match(metrics, /^http_requests_total\{code="500"\} 2$/m);
  t.match(metrics, /^http_request_duration_seconds_bucket\{le="1"\} 20$/m, 'twenty fast requests');
  t.match(metrics, /^http_request_duration_seconds_bucket\{le="2.5"\} 21$/m, 'the slow one lands in the 2.5 s bucket');
  t.match(metrics, /^http_request_duration_seconds_count 21$/m);
  t.match(metrics, /^demo_revision_info\{image="registry.example\/demo:v3-slow",mode="slow"\} 1$/m);
  t.equal((await fetch(`${url}/-/revision`, { method: 'POST', body: '{}' })).status, 400, 'an image is required');
});
