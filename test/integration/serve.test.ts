import { spawnSync } from 'node:child_process';
import t from 'tap';
import { fixture, WEBHOOK_TOKEN } from '../support/app.js';
import { ROOT, startServe } from '../support/serve.js';

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

t.test('SIGTERM: stops accepting, drains what is queued, exits 0 within the bound', async (t) => {
  const s = await startServe({ WEBHOOK_TOKEN, SHUTDOWN_TIMEOUT: '10s' });
  t.teardown(() => s.proc.kill('SIGKILL'));
  const res = await fetch(`${s.url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
    body: fixture('alertmanager/firing-two-alerts.json'),
  });
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
