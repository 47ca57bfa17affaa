import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { replayCommand } from '../../../src/cli/replay/command.js';
import { main } from '../../../src/main.js';
import { freePort } from '../../../src/prometheus/local.js';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) } };
}

const RANGE = ['--from', '2024-03-01T00:00:00Z', '--to', '2024-03-02T00:00:00Z'];

t.test('bad flags: exit 2, naming the flag, nothing sent', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--prometheus', 'http://127.0.0.1:1', '--from', 'yesterday'], /--from: expected an RFC 3339 time .* got "yesterday"/],
    [['--prometheus', 'http://127.0.0.1:1', '--from', '2024-03-02T00:00:00Z', '--to', '2024-03-01T00:00:00Z'], /--from \(2024-03-02T00:00:00.000Z\) is not before --to \(2024-03-01T00:00:00.000Z\)/],
    [['--prometheus', 'http://127.0.0.1:1'], /--from: needed/],
    [RANGE, /--prometheus: needed/],
    [['--prometheus', 'localhost:9090', ...RANGE], /--prometheus: expected an http\(s\) URL, got "localhost:9090"/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--format', 'html'], /--format: expected text, markdown or json/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--fail-on', 'many'], /--fail-on "many"/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--max-queries', '0'], /--max-queries: expected a whole number/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--step', 'fast'], /--step: expected a duration/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--label', 'x'], /--label: expected NAME=VALUE/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--budget-cluster-per-hour', 'many'], /BUDGET_CLUSTER_PER_HOUR \(--budget-cluster-per-hour\): expected an integer/],
    [['--prometheus', 'http://127.0.0.1:1', ...RANGE, 'extra'], /unknown argument extra/],
  ];
  for (const [args, why] of cases) {
    const o = io();
    t.equal(await replayCommand(args, o.io), 2, args.join(' '));
    t.match(o.err.join('\n'), why);
    t.same(o.out, []);
  }
});

t.test('broken rule files: exit 2 with file:line', async (t) => {
  const o = io();
  t.equal(await replayCommand(['--prometheus', 'http://127.0.0.1:1', ...RANGE, '--rules', 'test/fixtures/rules/broken/bad-priority.yaml'], o.io), 2);
  t.match(o.err.join('\n'), /bad-priority\.yaml:13/);
});

t.test('an unreachable Prometheus: exit 3, naming --prometheus, without its credentials', async (t) => {
  const port = await freePort(); // nothing listens there
  const o = io();
  t.equal(await replayCommand(['--prometheus', `http://user:secret@127.0.0.1:${port}`, ...RANGE, '--rules', 'rules'], o.io), 3);
  const err = o.err.join('\n');
  t.match(err, new RegExp(`replay: --prometheus: Prometheus at http://\\*\\*\\*@127\\.0\\.0\\.1:${port} unreachable: ECONNREFUSED`));
  t.notMatch(err, /secret/);
});

t.test('rollguard replay is dispatched by main, and --help prints the usage', async (t) => {
  const o = io();
  t.equal(await replayCommand(['--help'], o.io), 0);
  t.match(o.out.join('\n'), /usage: rollguard replay --prometheus URL --from TIME/);
  const writes: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (writes.push(String(s)), true)) as typeof process.stderr.write;
  try {
    t.equal(await main(['replay', '--from', 'nope']), 2);
  } finally {
    process.stderr.write = write;
  }
  t.match(writes.join(''), /replay: --from: expected/);
});

t.test('triggers are confirmed within PROMETHEUS_TIMEOUT and PROMETHEUS_MAX_RESPONSE_BYTES, as serve confirms them: an answer too big is held, not judged', async (t) => {
  const { createServer } = await import('node:http');
  const start = Date.parse('2024-03-01T10:00:00Z') / 1000;
  const timeouts: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      const p = new URLSearchParams(body);
      const q = p.get('query') ?? '';
      const answer = (resultType: string, result: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data: { resultType, result } }));
      if (q.startsWith('timestamp(ALERTS')) {
        const values = [0, 60, 120, 180].map((d) => [start + d, String(start + d)]);
        return answer('matrix', [{ metric: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'web' }, values }]);
      }
      if (req.url?.endsWith('/query_range') && !q.includes('kube_')) {
        timeouts.push(p.get('timeout') ?? '');
        // the trigger: 300 series of 121 high samples, about 1 MB, over the 64 KiB bound below
        const s0 = Number(p.get('start'));
        const values = Array.from({ length: 121 }, (_, i) => [s0 + i, '0.5']);
        return answer('matrix', Array.from({ length: 300 }, (_, i) => ({ metric: { pod: `web-${i}` }, values })));
      }
      return answer('vector', []);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const rules = join(await mkdtemp(join(tmpdir(), 'replay-')), 'rules.yaml');
  await writeFile(
    rules,
    `rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: custom, query: 'errors{deployment="{{ $labels.deployment }}"}', threshold: 0.05, for: 2m, step: 1s }
    priority: P0
`,
  );
  const o = io();
  const code = await replayCommand(
    ['--prometheus', `http://127.0.0.1:${port}`, '--from', '2024-03-01T09:00:00Z', '--to', '2024-03-01T12:00:00Z', '--rules', rules, '--format', 'json', '--quiet', '--prometheus-timeout', '5s', '--prometheus-max-response-bytes', '65536'],
    o.io,
  );
  t.equal(code, 0, o.err.join('\n'));
  const report = JSON.parse(o.out.join('\n')) as { summary: { rollbacks: number }; alerts: Array<{ rows: Array<{ outcome: string; reason: string }> }> };
  t.equal(report.summary.rollbacks, 0);
  t.equal(report.alerts[0]!.rows[0]!.outcome, 'held');
  t.match(report.alerts[0]!.rows[0]!.reason, /PROMETHEUS_MAX_RESPONSE_BYTES \(65536 bytes\)/);
  t.same(timeouts, ['4.000'], "the trigger's query carries PROMETHEUS_TIMEOUT less a second as Prometheus' own timeout");
});
