// Rollback drills on the whole real loop (docs/operations.md, "Drills"): the demo app standing for
// Deployment staging/web on the real control plane, Prometheus evaluating the shipped HighErrorRate
// rule (at test speed, as test/e2e/loop.test.ts runs it), Alertmanager routing to rollguard
// (`serve`, Redis store, the chart's service account, DRILL_NAMESPACES=staging).
//   (c) a drill outside DRILL_NAMESPACES is refused with the setting's name (HTTP 422, CLI exit 9);
//   (a)+(d) `rollguard drill run … env DEMO_ERRORS=on` flips the demo app's error switch: the alert
//       fires, reaches Alertmanager and rollguard, which rolls back: passed, every link timestamped,
//       the report printed by the CLI;
//   (b) with the Alertmanager route changed so the alert does not reach rollguard, the drill fails
//       naming that link, and restores the pre-drill revision itself.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../src/cli/client.js';
import type { DrillRecord } from '../../src/drills/store.js';
import { templateHash } from '../../src/drills/workload.js';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { alertmanagerConfig, startAlertmanager, type AlertmanagerOptions } from '../support/alertmanager.js';
import { runCli } from '../support/cli.js';
import { createDemoDeployment, followDeployment, highErrorRateRule, rolloutComplete, startDemoProcess, startScrapingPrometheus } from '../support/demo-app.js';
import { freePort, waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { startServe } from '../support/serve.js';

const NS = 'staging';
const APP = 'web';
const POD = `${APP}-6b7f9c8d5-q8z2x`;
const TOKEN = 'drill-webhook-token';
const ADMIN = 'drill-admin-token';
const READ = 'drill-read-token';
const REVISION = 'deployment.kubernetes.io/revision';

t.test('drills on the whole loop: refused outside DRILL_NAMESPACES, passed, failed at the Alertmanager route and restored', async (t) => {
  const cluster: Cluster = await startCluster({ argoCrds: false });
  t.teardown(() => cluster.stop({ keep: !t.passing() }));
  const dep = await createDemoDeployment(cluster, NS, APP);
  const preDrill = templateHash('Deployment', ((await dep()).spec as { template: unknown }).template);

  const redis = await startRedis();
  t.teardown(() => redis.destroy());
  const tmp = mkdtempSync(join(tmpdir(), 'rollguard-drill-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  // The loop's rule at test speed, with a short cooldown so that the second drill may follow the first.
  writeFileSync(
    join(tmp, 'rules.yaml'),
    `rules:
  - name: staging-error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger:
      kind: error_rate
      rateWindow: 10s
      selector: { namespace: "{{ $labels.namespace }}", pod: { regex: "{{ $labels.deployment }}-[4-9bcdf]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}" } }
      threshold: 0.05
      for: 8s
      step: 1s
    priority: P0
    guards: { cooldown: 5s }
`,
  );

  // Ports first: Alertmanager posts to rollguard, rollguard reads Alertmanager's API and Prometheus.
  const [servePort, promPort] = [await freePort(), await freePort()];
  const amOpts: AlertmanagerOptions = { webhookUrl: `http://127.0.0.1:${servePort}/v1/alerts`, token: TOKEN };
  const am = await startAlertmanager(amOpts);
  t.teardown(() => am.stop());
  const serve = await startServe(
    {
      KUBECONFIG: cluster.rollguardKubeconfig,
      REDIS_URL: redis.url,
      RULES_PATH: join(tmp, 'rules.yaml'),
      WEBHOOK_TOKEN: TOKEN,
      ADMIN_TOKEN: ADMIN,
      READ_TOKEN: READ,
      PROMETHEUS_URL: `http://127.0.0.1:${promPort}`,
      ALERTMANAGER_URL: am.url,
      DRILL_NAMESPACES: NS,
      VERIFY_TIMEOUT: '60s',
      RECOVERY_TIMEOUT: '60s',
      RECOVERY_POLL: '1s',
      SCHEDULER_INTERVAL: '1s',
      CONSUMER_NAME: 'rollguard-drill',
    },
    [],
    { port: servePort },
  );
  t.teardown(async () => {
    serve.proc.kill('SIGTERM');
    await serve.exited;
  });

  const demo = await startDemoProcess({ image: 'demo:v1', loadPerSecond: 40 });
  t.teardown(() => demo.stop());
  const follower = followDeployment(dep, demo, 200);
  t.teardown(() => follower.stop());
  const { fast: fastRule } = highErrorRateRule();
  const prom = await startScrapingPrometheus({
    targets: [{ job: 'demo', target: `127.0.0.1:${demo.port}`, labels: { namespace: NS, pod: POD } }],
    rules: JSON.stringify({ groups: [{ name: 'drill', rules: [fastRule] }] }),
    alertmanagers: [`127.0.0.1:${am.port}`],
    port: promPort,
  });
  t.teardown(() => prom.stop());

  const api = async <T>(method: string, path: string, token: string, body?: unknown) => {
    const r = await fetch(`${serve.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
    return { status: r.status, body: (r.headers.get('content-type') ?? '').includes('json') ? ((await r.json()) as T) : ((await r.text()) as T) };
  };
  const cli = (args: string[]) => runCli(['drill', ...args], { ROLLGUARD_URL: serve.url, ROLLGUARD_TOKEN: ADMIN });
  const fail = (what: string) => `${what}\n--- rollguard log tail:\n${serve.logs().slice(-30).map((l) => JSON.stringify(l)).join('\n')}`;
  const quiet = async () => {
    await waitFor('no HighErrorRate in Prometheus', async () => !(await prom.alerts()).some((a) => a.labels.alertname === 'HighErrorRate'), 90_000, 250);
    await waitFor('no active HighErrorRate in Alertmanager', async () => !(await am.alerts()).some((a) => a.labels.alertname === 'HighErrorRate' && a.status.state === 'active'), 60_000, 250);
  };
  await waitFor('healthy traffic in Prometheus', async () => {
    const r = await prom.query(`sum(rate(http_requests_total{namespace="${NS}"}[10s]))`);
    return r.length > 0 && Number(r[0]!.value[1]) > 0;
  }, 30_000, 250);

  // (c) Outside DRILL_NAMESPACES: refused with the setting's name, nothing changed.
  const outside = await api<{ error: string; message: string }>('POST', '/v1/drills', ADMIN, { target: { kind: 'Deployment', namespace: 'prod', name: APP }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' } });
  t.equal(outside.status, 422);
  t.same(outside.body, { error: 'outside_drill_namespaces', message: `namespace prod is not in DRILL_NAMESPACES (${NS}): drills run only there` });
  const outsideCli = await cli(['run', `Deployment/prod/${APP}`, 'env', 'DEMO_ERRORS=on']);
  t.equal(outsideCli.code, EXIT.refused, 'the CLI exits 9');
  t.match(outsideCli.stderr, /rollguard refused: namespace prod is not in DRILL_NAMESPACES \(staging\)/);
  t.equal((await dep()).metadata.annotations?.[REVISION], '1', 'nothing changed');

  // (a) + (d) The error switch: the whole chain rolls it back; the CLI follows it and prints the report.
  const run = await cli(['run', `Deployment/${NS}/${APP}`, 'env', 'DEMO_ERRORS=on', '--deadline', '2m', '--by', 'drill-test']);
  t.equal(run.code, EXIT.ok, fail(`drill run exited ${run.code}:\n${run.stderr}`));
  const id = /drill (dr-[a-z0-9]+) started on Deployment\/staging\/web: env DEMO_ERRORS set on container app \(its value is not recorded\)/.exec(run.stderr)?.[1];
  t.ok(id, 'the CLI says which drill started');
  const passed = (await api<DrillRecord>('GET', `/v1/drills/${id}`, READ)).body;
  t.equal(passed.state, 'passed', passed.result?.message ?? '');
  t.same(Object.keys(passed.links).sort(), ['alert_firing', 'alert_in_alertmanager', 'decision', 'fault_applied', 'guards', 'rollback_written', 'rollout_complete', 'rule_matched', 'trigger_cleared', 'webhook_received'], 'every link timestamped');
  t.match(passed.links.alert_in_alertmanager?.detail ?? '', /routed to receiver\(s\) rollguard/);
  t.match(run.stdout, new RegExp(`^# Drill report: Deployment/${NS}/${APP}\\n\\nDrill \`${id}\` · \\*\\*passed\\*\\* · requested by drill-test`), '(d) the CLI prints the report');
  t.match(run.stdout, /\| time to roll back, TTR \(decision → rollout complete\) \| [\d.]+ (s|min) \| < 15 min \| met \|/);
  t.match(run.stdout, /\| time to recover, MTTR \(fault → healthy, trigger cleared\) \| [\d.]+ (s|min) \| < 30 min; this drill's deadline 2.0 min \| met \|/);
  for (const l of ['alert firing in Prometheus', 'alert in Alertmanager', 'webhook received by rollguard', 'rollback written', 'trigger cleared']) {
    t.match(run.stdout, new RegExp(`\\| ${l} \\| \\d\\d:\\d\\d:\\d\\d \\| \\+`), `the report dates "${l}"`);
  }
  const report = await api<string>('GET', `/v1/drills/${id}/report`, READ);
  t.equal(report.body.trimEnd(), run.stdout.trimEnd(), 'GET /v1/drills/:id/report is what the CLI printed');
  const rec = (await api<{ source: string; drill: string; state: string }>('GET', `/v1/rollbacks/${passed.rollback}`, READ)).body;
  t.same({ source: rec.source, drill: rec.drill, state: rec.state }, { source: 'drill', drill: id, state: 'succeeded' }, 'the rollback record says source: drill');
  const afterA = await dep();
  t.equal(templateHash('Deployment', (afterA.spec as { template: unknown }).template), preDrill, 'back on the pre-drill template');
  t.equal(afterA.metadata.annotations?.[REVISION], '3', 'rolled back by rollguard: revision 1 reused as 3');
  const m = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? `${((b - a) / 1000).toFixed(1)}s` : '-');
  t.comment(`drill (a): TTD ${m(passed.faultAt, passed.links.webhook_received?.at)}, decide ${m(passed.links.webhook_received?.at, passed.links.decision?.at)}, TTR ${m(passed.links.decision?.at, passed.links.rollout_complete?.at)}, MTTR ${m(passed.faultAt, passed.links.trigger_cleared?.at)}`);

  // (b) The route changed: Alertmanager sends the alert elsewhere. The drill fails naming the link and restores itself.
  await quiet();
  const unrouted = `${alertmanagerConfig(amOpts).replace('  receiver: rollguard\n', '  receiver: unrouted\n').replace(`matchers: ['rollguard="enabled"']`, `matchers: ['rollguard="never"']`)}  - name: unrouted\n`;
  writeFileSync(am.config, unrouted);
  t.equal((await fetch(`${am.url}/-/reload`, { method: 'POST' })).status, 200, 'Alertmanager reloaded the changed route');
  const started = await waitFor(
    'the second drill accepted (once the cooldown of the first ended)',
    async () => {
      const r = await api<DrillRecord & { error?: string }>('POST', '/v1/drills', ADMIN, { target: { kind: 'Deployment', namespace: NS, name: APP }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, deadline: '45s' });
      if (r.status === 409 && r.body.error === 'cooldown') return undefined;
      return r;
    },
    30_000,
    1000,
  );
  t.equal(started.status, 202, JSON.stringify(started.body));
  const failed = await waitFor(
    'the second drill to end',
    async () => {
      const d = (await api<DrillRecord>('GET', `/v1/drills/${started.body.id}`, READ)).body;
      return d.state !== 'running' ? d : undefined;
    },
    120_000,
    1000,
  ).catch((e: unknown) => {
    throw new Error(fail(String(e)));
  });
  t.equal(failed.state, 'failed');
  t.equal(failed.result?.link, 'webhook_received', failed.result?.message ?? '');
  t.match(failed.result?.message ?? '', /^deadline of 45s passed: the alert HighErrorRate fired in Prometheus at \d\d:\d\d:\d\d but never reached rollguard: check the Alertmanager route \(seen: Alertmanager routed HighErrorRate to receiver\(s\) unrouted\)$/);
  t.equal(failed.restore?.outcome, 'restored', failed.restore?.message ?? '');
  const afterB = await dep();
  t.equal(templateHash('Deployment', (afterB.spec as { template: unknown }).template), preDrill, 'back on the pre-drill template (kubectl-exact)');
  t.match(afterB.metadata.annotations?.['kubernetes.io/change-cause'] ?? '', new RegExp(`^rollguard drill ${failed.id}: restoring the pre-drill template \\(revision 3\\)`), 'restored as rollout undo --to-revision=3 would, and says so');
  await waitFor('Deployment complete after the restore', async () => rolloutComplete(await dep()), 60_000, 200);
  await waitFor('demo app follows the restore', async () => (await demo.revision()).mode === 'healthy', 10_000, 100);
  const reportB = await api<string>('GET', `/v1/drills/${failed.id}/report`, READ);
  t.match(reportB.body, /\| webhook received by rollguard \| – \| – \| \*\*broke here\*\*: Alertmanager routed HighErrorRate to receiver\(s\) unrouted \|/);
  t.match(reportB.body, /Restore: the drill restored the workload itself/);

  const metrics = await (await fetch(`${serve.url}/metrics`)).text();
  t.match(metrics, /^rollguard_drills_total\{result="passed"\} 1$/m);
  t.match(metrics, /^rollguard_drills_total\{result="failed"\} 1$/m);
  t.match(metrics, /^rollguard_drill_time_to_recover_seconds_count 1$/m);
  t.match(metrics, new RegExp(`^rollguard_drill_last_end_timestamp_seconds\\{target="Deployment/${NS}/${APP}",result="failed"\\} `, 'm'), 'the last drill of the target');
  const list = (await api<{ drills: DrillRecord[] }>('GET', '/v1/drills', READ)).body.drills;
  t.same(list.map((d) => d.state), ['failed', 'passed'], 'GET /v1/drills: newest first');
});

t.test("the demo app's error switch: DEMO_ERRORS on fails any revision", async (t) => {
  const { startDemoApp } = await import('../../examples/demo-app/server.js');
  const app = await startDemoApp({ image: 'demo:v1' });
  t.teardown(() => app.close());
  const url = `http://127.0.0.1:${app.port}`;
  const post = (b: unknown) => fetch(`${url}/-/revision`, { method: 'POST', body: JSON.stringify(b) });
  t.same(await (await post({ image: 'demo:v1', env: { DEMO_ERRORS: 'on' } })).json(), { image: 'demo:v1', mode: 'failing' });
  const codes: number[] = [];
  for (let i = 0; i < 10; i++) codes.push((await fetch(`${url}/work`).then(async (r) => (await r.arrayBuffer(), r))).status);
  t.equal(codes.filter((c) => c === 500).length, 2, 'every 5th request answers 500');
  t.same(await (await post({ image: 'demo:v1', env: { DEMO_ERRORS: 'off' } })).json(), { image: 'demo:v1', mode: 'healthy' });
  t.same(await (await post({ image: 'demo:v1' })).json(), { image: 'demo:v1', mode: 'healthy' }, 'no env: the switch is off');
  t.equal((await post({ image: 'demo:v1', env: { DEMO_ERRORS: 1 } })).status, 400, 'env values are strings');
});
