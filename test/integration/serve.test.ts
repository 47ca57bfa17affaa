import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ADMIN_TOKEN, fixture, WEBHOOK_TOKEN } from '../support/app.js';
import { ROOT, startServe } from '../support/serve.js';
import { P0_EXTRA_CALLS } from '../../src/turns.js';

/** Alertmanager's webhook with two firing alerts, with the webhook token. */
const postTwoAlerts = (url: string) =>
  fetch(`${url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
    body: fixture('alertmanager/firing-two-alerts.json'),
  });

t.test('a bad setting stops start-up with a message naming it', async (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve', '--port', 'eighty'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, REDIS_URL: 'mysql://x' },
    encoding: 'utf8',
  });
  t.equal(r.status, 2);
  t.match(r.stderr, /PORT \(--port\): expected an integer/);
  t.match(r.stderr, /REDIS_URL \(--redis-url\)/);
});

t.test('an open webhook in front of real rollbacks is refused at start-up, unless on purpose', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  // a kubeconfig that loads (nothing connects to it at start-up)
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'rg-serve-open-')), 'kubeconfig');
  writeFileSync(
    kubeconfig,
    'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
  );
  const run = (env: Record<string, string>) => spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve', '--port', '0'], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', timeout: 60_000 });
  // the refusal as serve says it (every combination: test/unit/http/auth.test.ts, openLiveWebhook)
  const r = run({ KUBECONFIG: kubeconfig });
  t.equal(r.status, 2, `a kubeconfig, no webhook credential: refused (${r.stderr})`);
  t.match(r.stderr, /the webhook has no credential \(WEBHOOK_TOKEN, WEBHOOK_TOKEN_FILE or WEBHOOK_BASIC_USER\) and rollbacks are real/);
  t.match(r.stderr, /Set WEBHOOK_TOKEN \(or WEBHOOK_TOKEN_FILE\).*or DRY_RUN=true, or WEBHOOK_ALLOW_UNAUTHENTICATED=true/);
  // on purpose: it starts and takes alerts without a credential
  const s = await startServe({ KUBECONFIG: kubeconfig, WEBHOOK_ALLOW_UNAUTHENTICATED: 'true' });
  t.teardown(() => s.proc.kill('SIGKILL'));
  const res = await fetch(`${s.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: fixture('alertmanager/firing-two-alerts.json') });
  t.equal(res.status, 200, 'WEBHOOK_ALLOW_UNAUTHENTICATED=true: an open webhook on purpose');
});

t.test('SIGTERM: stops accepting, drains what is queued, exits 0 within the bound', async (t) => {
  const s = await startServe({ WEBHOOK_TOKEN, SHUTDOWN_TIMEOUT: '10s' });
  t.teardown(() => s.proc.kill('SIGKILL'));
  const res = await postTwoAlerts(s.url);
  t.equal(res.status, 200);
  const t0 = Date.now();
  s.proc.kill('SIGTERM');
  const code = await s.exited;
  t.equal(code, 0, s.stderr());
  t.ok(Date.now() - t0 < 11_000, 'exits within SHUTDOWN_TIMEOUT');
  const msgs = s.logs().map((l) => l.msg);
  t.ok(msgs.includes('shutting down: no new requests, draining the queue'));
  t.ok(msgs.includes('stopped'));
  const closed = s.logs().filter((l) => l.msg === 'rollback record closed');
  t.same(
    closed.map((l) => [l.target, l.state]).sort(),
    [
      ['Deployment/production/checkout', 'dry_run'],
      ['Deployment/production/payments', 'dry_run'],
    ],
    'both queued alerts handled (dry-run: no cluster configured) before exit',
  );
  t.notOk(msgs.some((m) => typeof m === 'string' && /lost/.test(m)), 'nothing lost');
});

t.test('rules: broken files stop start-up with file:line; SIGHUP reloads', async (t) => {
  const { mkdtempSync, writeFileSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'rg-serve-rules-'));
  writeFileSync(join(dir, 'bad.yaml'), 'rules:\n  - name: x\n    priority: P7\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve', '--port', '0', '--rules-path', dir], { cwd: ROOT, env: { PATH: process.env.PATH }, encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /bad\.yaml:\d+: rules\[0\]/);

  writeFileSync(join(dir, 'bad.yaml'), readFileSync(join(ROOT, 'rules', 'error-rate.yaml'), 'utf8'));
  const s = await startServe({ WEBHOOK_TOKEN, RULES_PATH: dir });
  t.teardown(() => s.proc.kill('SIGKILL'));
  s.proc.kill('SIGHUP');
  const { waitFor } = await import('../support/ports.js');
  const line = await waitFor('a reload triggered by SIGHUP', async () => s.logs().find((l) => l.trigger === 'SIGHUP'), 15_000, 100);
  t.equal(line.msg, 'rules loaded');
  t.equal(line.rules, 1);
  s.proc.kill('SIGTERM');
  t.equal(await s.exited, 0);
});

t.test('no webhook credential: the laptop default stays open and says so at start-up, naming WEBHOOK_TOKEN', async (t) => {
  const s = await startServe({});
  t.teardown(() => s.proc.kill('SIGKILL'));
  const warning = s.logs().find((l) => l.level === 40 && typeof l.msg === 'string' && l.msg.startsWith('the webhook is open'));
  t.ok(warning, 'a start-up warning');
  t.match(warning?.msg, /set WEBHOOK_TOKEN/);
  const res = await fetch(`${s.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: fixture('alertmanager/firing-two-alerts.json') });
  t.equal(res.status, 200, 'open, as the warning says');
  s.proc.kill('SIGTERM');
  t.equal(await s.exited, 0);
});

// A port picked free and taken by another process before serve binds it: another server answering
// /healthz there must not be taken for ours; serve is started again on a fresh port.
for (const level of ['info', 'warn']) {
  t.test(`a port taken before serve binds it: started again on a fresh one (LOG_LEVEL ${level})`, async (t) => {
    const { createServer } = await import('node:http');
    const { freePort } = await import('../support/ports.js');
    const foreign = createServer((_q, res) => res.end('ok'));
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.1', r));
    t.teardown(() => foreign.close());
    const taken = (foreign.address() as { port: number }).port;
    const picked: number[] = [];
    const rg = await startServe({ LOG_LEVEL: level }, [], {
      pickPort: async () => {
        const p = picked.length === 0 ? taken : await freePort();
        picked.push(p);
        return p;
      },
    });
    t.teardown(() => void rg.proc.kill('SIGKILL'));
    t.equal(picked[0], taken, 'the first try had the taken port');
    t.not(rg.port, taken, 'serve runs on another one');
    t.equal(rg.proc.exitCode, null, 'and is running');
    const body = (await (await fetch(`${rg.url}/healthz`)).json()) as Record<string, unknown>;
    t.ok(body && typeof body === 'object', 'and answers as rollguard (JSON), not the foreign server');
  });
}

t.test(`serve bounds the queries it sends Prometheus at once (PROMETHEUS_MAX_CONCURRENT, and ${P0_EXTRA_CALLS} more kept for P0 alerts' queries), apart from QUEUE_CONCURRENCY`, async (t) => {
  const { createServer } = await import('node:http');
  const held: import('node:http').ServerResponse[] = [];
  const prom = createServer((req, res) => {
    req.resume();
    req.on('end', () => held.push(res));
  });
  await new Promise<void>((r) => prom.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    prom.closeAllConnections();
    prom.close();
  });
  const port = (prom.address() as import('node:net').AddressInfo).port;
  const s = await startServe({ WEBHOOK_TOKEN, PROMETHEUS_URL: `http://127.0.0.1:${port}`, PROMETHEUS_MAX_CONCURRENT: '1', PROMETHEUS_TIMEOUT: '60s' });
  t.teardown(() => s.proc.kill('SIGKILL'));
  // P0 alerts (the shipped error-rate rule) for two more targets than the places they may take
  const body = JSON.parse(fixture('alertmanager/firing-two-alerts.json')) as { alerts: { labels: Record<string, string>; fingerprint: string }[] };
  const one = body.alerts[0]!;
  body.alerts = Array.from({ length: 2 + P0_EXTRA_CALLS }, (_, i) => ({ ...one, labels: { ...one.labels, deployment: `svc-${i}`, service: `svc-${i}` }, fingerprint: `b0${String(i).padStart(14, '0')}` }));
  const res = await fetch(`${s.url}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` }, body: JSON.stringify(body) });
  t.equal(res.status, 200);
  // the alerts are in hand at once; their trigger queries go to Prometheus 1 + P0_EXTRA_CALLS at a time
  const most = 1 + P0_EXTRA_CALLS;
  const waiting = async () => /rollguard_dependency_calls_waiting\{dependency="prometheus"\} 1\b/.test(await (await fetch(`${s.url}/metrics`)).text());
  const end = Date.now() + 30_000;
  while (!(held.length === most && (await waiting())) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.equal(held.length, most, `${most} queries at Prometheus: the setting's one, and the places kept for P0 alerts' queries`);
  t.ok(await waiting(), 'the last counted waiting its turn');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(held.length, most, 'still as many: the last waits for one of them');
});

t.test('serve bounds the reads it sends the API server at once (KUBE_MAX_CONCURRENT_READS)', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { createServer } = await import('node:http');
  // an API server that holds every Deployment read, and answers anything else 404
  const held: string[] = [];
  const seen: string[] = [];
  const api = createServer((req, res) => {
    req.resume();
    seen.push(`${req.method} ${req.url}`);
    if (req.method === 'GET' && /\/deployments\/[^/?]+(\?|$)/.test(req.url ?? '')) {
      held.push(req.url!);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 }));
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    api.closeAllConnections();
    api.close();
  });
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'rg-serve-reads-')), 'kubeconfig');
  const port = (api.address() as import('node:net').AddressInfo).port;
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`,
  );
  const s = await startServe({ WEBHOOK_TOKEN, ADMIN_TOKEN, KUBECONFIG: kubeconfig, DRY_RUN: 'false', KUBE_MAX_CONCURRENT_READS: '1' });
  t.teardown(() => s.proc.kill('SIGKILL'));
  // two manual rollbacks of two Deployments: each plan reads its Deployment first
  for (const name of ['web', 'api']) {
    const res = await fetch(`${s.url}/v1/rollbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ kind: 'Deployment', namespace: 'shop', name, reason: 'bad deploy' }),
    });
    t.equal(res.status, 202, await res.text());
  }
  const waiting = async () => /rollguard_dependency_calls_waiting\{dependency="kubernetes"\} 1\b/.test(await (await fetch(`${s.url}/metrics`)).text());
  const end = Date.now() + 30_000;
  while (!(held.length === 1 && (await waiting())) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.equal(held.length, 1, `one read at the API server (all requests: ${seen.join(', ')})`);
  t.ok(await waiting(), 'the other counted waiting its turn');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(held.length, 1, 'still one: the second waits for the first');
});
