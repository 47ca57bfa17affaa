// The API commands of the `rollguard` binary against a real `rollguard serve` (and a real
// Prometheus for status): tables, -o json|yaml, --help, exit codes, and errors naming the flag or
// variable to change. Approve and reject of real pending approvals: cli-approvals.test.ts.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { EXIT } from '../../src/cli/client.js';
import { rollbacksCommand } from '../../src/cli/rollbacks.js';
import { statusCommand } from '../../src/cli/status.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { fixture } from '../support/app.js';
import { cliEnv, runCli } from '../support/cli.js';
import { freePort, waitFor } from '../support/ports.js';
import { startPrometheus } from '../support/prometheus.js';
import { startServe } from '../support/serve.js';

const WEBHOOK_TOKEN = 'cli-webhook-token';
const ADMIN_TOKEN = 'cli-admin-token';
const READ_TOKEN = 'cli-read-token';

const prom = await startPrometheus(t);
const rg = await startServe({ WEBHOOK_TOKEN, ADMIN_TOKEN, READ_TOKEN, PROMETHEUS_URL: prom.url });
t.teardown(() => rg.proc.kill('SIGKILL'));
const admin = { ROLLGUARD_URL: rg.url, ROLLGUARD_TOKEN: ADMIN_TOKEN };
/** the read credential (READ_TOKEN): lists, gets, reports, status, watch */
const reader = { ROLLGUARD_URL: rg.url, ROLLGUARD_TOKEN: READ_TOKEN };

const api = async <T>(path: string): Promise<T> => (await (await fetch(`${rg.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as T;
const records = async () => (await api<{ rollbacks: RollbackRecord[] }>('/v1/rollbacks')).rollbacks;

const posted = await fetch(`${rg.url}/v1/alerts`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
  body: fixture('alertmanager/firing-two-alerts.json'),
});
// No assertion before the subtests: one here would let tap end the root test (and its teardowns) early.
if (posted.status !== 200) throw new Error(`the webhook answered ${posted.status}`);
await waitFor('two records', async () => {
  const r = await records();
  return r.length === 2 && r.every((x) => x.state !== 'deciding');
}, 30_000, 200);

t.test('rollbacks list (the binary, read token): an aligned table with relative ages', async (t) => {
  const r = await runCli(['rollbacks', 'list'], reader);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.equal(lines.length, 3, 'a header and two rows');
  t.match(lines[0], /^ID\s+TARGET\s+STATE\s+TRIGGER\s+AGE$/);
  for (const col of ['TARGET', 'STATE', 'TRIGGER', 'AGE']) {
    const at = lines[0]!.indexOf(col);
    for (const l of lines.slice(1)) t.equal(l[at - 1], ' ', `${col} starts at column ${at}: ${l}`);
    for (const l of lines.slice(1)) t.not(l[at], ' ', `${col} starts at column ${at}: ${l}`);
  }
  t.match(r.stdout, 'Deployment/production/checkout');
  t.match(r.stdout, 'Deployment/production/payments');
  t.match(r.stdout, 'error-rate-above-5pct');
  t.match(lines[1], /\d+s$/, 'age like kubectl (e.g. 12s)');
});

t.test('rollbacks list -o json / -o yaml: the API answer itself; --state and --target filter; --cursor pages', async (t) => {
  const answer = await api<{ rollbacks: RollbackRecord[] }>('/v1/rollbacks');
  const viaApi = answer.rollbacks;
  const j = cliEnv(reader);
  t.equal(await rollbacksCommand(['list', '-o', 'json'], j.e), 0);
  t.same(JSON.parse(j.out.join('\n')), answer);
  const y = cliEnv(reader);
  t.equal(await rollbacksCommand(['list', '--output', 'yaml'], y.e), 0);
  t.same(parseYaml(y.out.join('\n')), answer);
  const page1 = cliEnv(reader);
  t.equal(await rollbacksCommand(['list', '--limit', '1'], page1.e), 0);
  const hint = /\(more: rollguard rollbacks list --cursor (\S+) --limit 1\)$/.exec(page1.out.join('\n'));
  t.ok(hint, 'the first page says how to get the next');
  t.match(page1.out.join('\n'), viaApi[0]!.id);
  const page2 = cliEnv(reader);
  t.equal(await rollbacksCommand(['list', '--limit', '1', '--cursor', hint![1]!], page2.e), 0);
  t.match(page2.out.join('\n'), viaApi[1]!.id);
  t.notMatch(page2.out.join('\n'), viaApi[0]!.id);
  const one = cliEnv(reader);
  const checkout = viaApi.find((r) => r.target === 'Deployment/production/checkout')!;
  t.equal(await rollbacksCommand(['list', '-o', 'json', '--state', checkout.state, '--target', checkout.target], one.e), 0);
  t.same((JSON.parse(one.out.join('\n')) as { rollbacks: RollbackRecord[] }).rollbacks.map((r) => r.id), [checkout.id]);
  const none = cliEnv(reader);
  t.equal(await rollbacksCommand(['list', '--state', 'pending_approval'], none.e), 0);
  t.equal(none.out.join('\n'), 'no rollbacks');
});

t.test('rollbacks get and report', async (t) => {
  const [rec] = await records();
  const g = cliEnv(reader);
  t.equal(await rollbacksCommand(['get', rec!.id], g.e), 0);
  const text = g.out.join('\n');
  t.match(text, new RegExp(`^ID: +${rec!.id}$`, 'm'));
  t.match(text, new RegExp(`^Target: +${rec!.target}$`, 'm'));
  t.match(text, /^Source: +alert HighErrorRate, rule error-rate-above-5pct \(P0\)$/m);
  t.match(text, /^Timeline:\nAGE +STEP +MESSAGE\n/m);
  const gj = cliEnv(reader);
  t.equal(await rollbacksCommand(['get', rec!.id, '-o', 'json'], gj.e), 0);
  t.same(JSON.parse(gj.out.join('\n')), await api(`/v1/rollbacks/${rec!.id}`));
  const rp = cliEnv(reader);
  t.equal(await rollbacksCommand(['report', rec!.id], rp.e), 0);
  t.match(rp.out.join('\n'), new RegExp(`^# Incident report: ${rec!.target}`));
  const missing = cliEnv(reader);
  t.equal(await rollbacksCommand(['get', 'rb-0000000000'], missing.e), EXIT.notFound);
  t.match(missing.err.join('\n'), /rollguard rollbacks get: no rollback rb-0000000000/);
});

t.test('rollbacks create --dry-run: a manual rollback through the guards; approving a record not pending approval exits 6', async (t) => {
  const c = cliEnv(admin);
  t.equal(await rollbacksCommand(['create', 'deployment/shop/web', '--reason', 'bad config in v2', '--dry-run', '--by', 'alice', '-o', 'json'], c.e), 0, c.err.join('\n'));
  const rec = JSON.parse(c.out.join('\n')) as RollbackRecord;
  t.match(rec, { target: 'Deployment/shop/web', source: 'manual', requestedBy: 'alice', reason: 'bad config in v2' });
  const done = await waitFor('the manual record closed', async () => {
    const r = await api<RollbackRecord>(`/v1/rollbacks/${rec.id}`);
    return r.state !== 'deciding' && r;
  }, 30_000, 200);
  const a = cliEnv(admin);
  t.equal(await rollbacksCommand(['approve', rec.id], a.e), EXIT.conflict);
  t.match(a.err.join('\n'), `rollback ${rec.id} is ${done.state}, not pending approval`);
  const bad = cliEnv(admin);
  t.equal(await rollbacksCommand(['create', 'Deployment/Shop/web', '--reason', 'x'], bad.e), EXIT.invalid, 'the server refuses a name that is not a Kubernetes name');
  t.match(bad.err.join('\n'), /refused the request \(400\): body\.namespace: expected a Kubernetes name/);
});

t.test('rollbacks resume-gitops: 404 exits 5, a record that suspended nothing exits 6 (409), the read token exits 4; nothing changes', async (t) => {
  const missing = cliEnv(admin);
  t.equal(await rollbacksCommand(['resume-gitops', 'rb-0000000000'], missing.e), EXIT.notFound);
  t.equal(missing.err.join('\n'), 'rollguard rollbacks resume-gitops: no rollback rb-0000000000');
  const [rec] = await records();
  const before = await api<RollbackRecord>(`/v1/rollbacks/${rec!.id}`);
  const none = cliEnv(admin);
  t.equal(await rollbacksCommand(['resume-gitops', rec!.id, '--by', 'alice'], none.e), EXIT.conflict);
  t.equal(none.err.join('\n'), `rollguard rollbacks resume-gitops: rollback ${rec!.id} suspended no GitOps owner`);
  t.equal(none.out.length, 0);
  const named = cliEnv(admin);
  t.equal(await rollbacksCommand(['resume-gitops', rec!.id, '--reverted', 'rb-0000000001, rb-0000000002'], named.e), EXIT.conflict, 'ids named as reverted are sent and checked');
  t.equal(named.err.join('\n'), `rollguard rollbacks resume-gitops: rollback ${rec!.id} suspended no GitOps owner`);
  const readOnly = await runCli(['rollbacks', 'resume-gitops', rec!.id], reader);
  t.equal(readOnly.code, EXIT.auth);
  t.match(readOnly.stderr, /\(this needs the admin token; a read token only reads\)/);
  t.same(await api(`/v1/rollbacks/${rec!.id}`), before, 'the record is unchanged');
});

t.test('pause, status, resume; status exits 8 once Prometheus stops answering', async (t) => {
  const p = cliEnv(admin);
  t.equal(await statusCommand('pause', ['--reason', 'incident 42', '--by', 'alice'], p.e), 0, p.err.join('\n'));
  t.match(p.out.join('\n'), /^paused: YES, by alice 0s ago: incident 42/);
  const s = cliEnv(reader);
  t.equal(await statusCommand('status', [], s.e), 0, 'store and Prometheus answer');
  const text = s.out.join('\n');
  t.match(text, new RegExp(`^rollguard: +0\\.\\d+\\.\\d+ at ${rg.url} \\(replica `, 'm'));
  t.match(text, /^Paused: +YES, by alice \d+s ago: incident 42/m);
  t.match(text, /^Pending approvals: +0$/m);
  t.match(text, /^In flight: +0 rolling back, 0 deciding, \d+ held, \d+ scheduled$/m);
  t.match(text, /^Store: +memory: ok$/m);
  t.match(text, /^Prometheus: +ok$/m);
  t.match(text, /^Rules: +\d+ loaded$/m);
  const sj = cliEnv(reader);
  t.equal(await statusCommand('status', ['-o', 'json'], sj.e), 0);
  t.match(JSON.parse(sj.out.join('\n')), { paused: { paused: true, by: 'alice', reason: 'incident 42' }, store: { kind: 'memory', ok: true }, prometheus: { configured: true, ok: true } });
  const r = cliEnv(admin);
  t.equal(await statusCommand('resume', [], r.e), 0);
  t.equal(r.out.join('\n'), 'resumed: rollbacks run again');
  t.match(await api('/v1/pause'), { paused: false });

  await prom.stop();
  const down = cliEnv(reader);
  t.equal(await statusCommand('status', [], down.e), EXIT.degraded, 'Prometheus down: exit 8');
  t.match(down.out.join('\n'), /^Prometheus: +FAILING: Prometheus at http:\/\/127\.0\.0\.1:\d+ unreachable/m);
  t.match(down.out.join('\n'), /^Paused: +no$/m);
});

t.test('credentials (the binary): a wrong or missing token exits 4 naming ROLLGUARD_TOKEN / --token-file; the read token only reads; a token file works', async (t) => {
  const wrong = await runCli(['rollbacks', 'list'], { ROLLGUARD_URL: rg.url, ROLLGUARD_TOKEN: 'not-the-token' });
  t.equal(wrong.code, EXIT.auth);
  t.equal(wrong.stderr.trim(), 'rollguard rollbacks list: rollguard refused the token from ROLLGUARD_TOKEN (401: invalid bearer token): check ROLLGUARD_TOKEN');
  const readOnly = await runCli(['pause'], reader);
  t.equal(readOnly.code, EXIT.auth);
  t.equal(readOnly.stderr.trim(), 'rollguard pause: rollguard refused the token from ROLLGUARD_TOKEN (401: invalid bearer token): check ROLLGUARD_TOKEN (this needs the admin token; a read token only reads)');
  t.match(await api('/v1/pause'), { paused: false }, 'nothing changed');
  const noneRead = await runCli(['status'], { ROLLGUARD_URL: rg.url });
  t.equal(noneRead.code, EXIT.auth);
  t.match(noneRead.stderr, /wants a token for GET \/v1\/status .*set ROLLGUARD_TOKEN or pass --token-file FILE/);
  const none = await runCli(['rollbacks', 'reject', 'rb-0000000000'], { ROLLGUARD_URL: rg.url });
  t.equal(none.code, EXIT.auth);
  t.match(none.stderr, /wants a token for POST \/v1\/rollbacks\/rb-0000000000\/reject .*set ROLLGUARD_TOKEN or pass --token-file FILE/);
  const dir = mkdtempSync(join(tmpdir(), 'rg-cli-token-'));
  writeFileSync(join(dir, 'token'), `${ADMIN_TOKEN}\n`);
  const fromFile = await runCli(['resume', '--token-file', join(dir, 'token'), '--url', rg.url]);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.equal(fromFile.stdout.trim(), 'resumed: rollbacks run again');
});

t.test('an unreachable server (the binary): exit 3 naming ROLLGUARD_URL', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const r = await runCli(['rollbacks', 'list'], { ROLLGUARD_URL: dead, ROLLGUARD_TOKEN: READ_TOKEN });
  t.equal(r.code, EXIT.unreachable);
  t.equal(r.stderr.trim(), `rollguard rollbacks list: cannot reach rollguard at ${dead} (ECONNREFUSED): check ROLLGUARD_URL`);
  t.equal(r.stdout, '');
});

t.test('--help (the binary): the top-level usage names the API commands; each command has its own', async (t) => {
  const top = await runCli(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, 'rollguard rollbacks list|get|report|approve|reject|create|resume-gitops|watch');
  t.match(top.stdout, 'rollguard status | pause [--reason TEXT] | resume');
  const approve = await runCli(['rollbacks', 'approve', '--help']);
  t.equal(approve.code, 0);
  t.match(approve.stdout, /^usage: rollguard rollbacks approve ID \[--comment TEXT\] \[--by NAME\]\n/);
  t.match(approve.stdout, /--token-file FILE +a file holding the bearer token \(default: ROLLGUARD_TOKEN\)/);
  t.match(approve.stdout, /exit codes: 0 done;/);
  const resume = await runCli(['rollbacks', 'resume-gitops', '--help']);
  t.equal(resume.code, 0);
  t.match(resume.stdout, /^usage: rollguard rollbacks resume-gitops ID \[--reverted ID,ID… \| --all-reverted\] \[--by NAME\]\n\nPuts back exactly what a rollback suspended on its Argo CD \/ Flux owners/);
  t.match(resume.stdout, /Needs the admin token\. Exits 6 when the rollback suspended nothing/);
});

t.test('rollbacks watch (the binary): follows records as they come, one line each; Ctrl-C exits 0', async (t) => {
  const { spawn } = await import('node:child_process');
  const { ROOT } = await import('../support/serve.js');
  const w = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'rollbacks', 'watch', '--interval', '0.3'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...reader },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => w.kill('SIGKILL'));
  let out = '';
  let err = '';
  w.stdout.on('data', (d) => (out += d));
  w.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => w.once('exit', (code) => r(code)));
  await waitFor('the watch header', async () => out.startsWith('TIME'), 60_000, 100);
  const before = (await records()).map((r) => r.id);
  const c = cliEnv(admin);
  t.equal(await rollbacksCommand(['create', 'Deployment/shop/api', '--reason', 'watch me', '--dry-run', '-o', 'json'], c.e), 0);
  const id = (JSON.parse(c.out.join('\n')) as RollbackRecord).id;
  const line = await waitFor('the new record in the watch', async () => out.split('\n').find((l) => l.includes(id) && !/ deciding /.test(l)), 60_000, 100);
  t.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d +${id} +Deployment/shop/api +\\w+ +manual \\(`), 'time, id, target, state, trigger');
  t.match(line, /ended: /, 'and its last step');
  const header = out.split('\n')[0]!;
  t.equal(line.indexOf(id), header.indexOf('ID'), 'aligned under the header');
  t.notOk(before.some((old) => out.includes(old)), 'records older than the watch are not shown');
  w.kill('SIGINT');
  t.equal(await exited, 0, err);
});

t.test('rollbacks watch -o json: one record per line (NDJSON); --since shows recent ones first; ends when told', async (t) => {
  const stop = new AbortController();
  const j = cliEnv(reader, stop.signal);
  const running = rollbacksCommand(['watch', '-o', 'json', '--interval', '0.2', '--since', '1h'], j.e);
  const known = await records();
  const first = await waitFor('the records of the last hour', async () => j.out.length >= known.length && j.out.map((l) => JSON.parse(l) as RollbackRecord), 30_000, 100);
  t.same(new Set(first.map((r) => r.id)), new Set(known.map((r) => r.id)), '--since 1h: every record changed in the last hour, once');
  const c = cliEnv(admin);
  t.equal(await rollbacksCommand(['create', 'StatefulSet/shop/db', '--reason', 'json watch', '--dry-run', '-o', 'json'], c.e), 0);
  const id = (JSON.parse(c.out.join('\n')) as RollbackRecord).id;
  const mine = await waitFor('the new record', async () => {
    const r = j.out.map((l) => JSON.parse(l) as RollbackRecord).filter((x) => x.id === id);
    return r.some((x) => x.state !== 'deciding') && r;
  }, 30_000, 100);
  t.equal(mine[mine.length - 1]!.target, 'StatefulSet/shop/db');
  stop.abort();
  t.equal(await running, 0);
});

t.test('status on Redis: the store named, and exit 8 with the reason while Redis is down', async (t) => {
  const { startRedis } = await import('../support/redis.js');
  const redis = await startRedis();
  t.teardown(() => redis.destroy());
  const r2 = await startServe({ WEBHOOK_TOKEN, ADMIN_TOKEN, READ_TOKEN, REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT: '500ms' });
  t.teardown(() => r2.proc.kill('SIGKILL'));
  const env = { ROLLGUARD_URL: r2.url, ROLLGUARD_TOKEN: READ_TOKEN };
  const up = cliEnv(env);
  t.equal(await statusCommand('status', [], up.e), 0, up.err.join('\n'));
  t.match(up.out.join('\n'), /^Store: +redis: ok$/m);
  await redis.stop();
  const down = cliEnv(env);
  t.equal(await statusCommand('status', [], down.e), EXIT.degraded, 'the store does not answer: exit 8');
  const text = down.out.join('\n');
  t.match(text, /^Store: +redis: FAILING: \S.*$/m);
  t.match(text, /^Paused: +unknown \(the store does not answer\)$/m);
  t.match(text, /^Pending approvals: +-$/m);
  t.match(text, /^Prometheus: +not configured/m, 'the rest of the status is still shown');
});
