import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { rulesCheckCommand, rulesTestCommand } from '../../../src/cli/rules.js';
import { simulateCommand } from '../../../src/cli/simulate.js';
import { loadRules } from '../../../src/rules/loader.js';
import { samples, startPrometheus } from '../../support/prometheus.js';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) } };
}

t.test('rules test passes for every shipped rule, and every shipped rule has tests', async (t) => {
  const files = (await readdir('rules/tests')).filter((f) => f.endsWith('.yaml')).map((f) => join('rules/tests', f));
  t.ok(files.length >= 5);
  const o = io();
  const code = await rulesTestCommand(files, o.io);
  t.equal(code, 0, o.out.join('\n') + o.err.join('\n'));
  t.match(o.out.join('\n'), /all \d+ tests passed/);

  const tested = new Set<string>();
  for (const f of files) for (const m of (await readFile(f, 'utf8')).matchAll(/- rule: (\S+)/g)) tested.add(m[1]!);
  const shipped = await loadRules(['rules']);
  for (const r of shipped.rules) t.ok(tested.has(r.name), `shipped rule ${r.name} has a rules test`);
});

t.test('rules test fails a deliberately wrong expectation and says why', async (t) => {
  const o = io();
  const code = await rulesTestCommand(['test/fixtures/rules/tests/wrong-expectation.yaml'], o.io);
  t.equal(code, 1);
  const text = o.out.join('\n');
  t.match(text, /FAILED \(2 of 2\)/);
  t.match(text, /wrong-expectation\.yaml:7: 2% errors \(wrongly\) expected to roll back/);
  t.match(text, /rule error-rate-above-5pct: expected confirmation confirmed, got not_confirmed: did not hold through the window: 9 of 9 samples not > 0\.05/);
  t.match(text, /query: \(sum\(rate\(http_requests_total/);
  t.match(text, /expected decision rollback_now, got no_action/);
  t.match(text, /expected targets \[Deployment shop\/web\], got \[Deployment shop\/api\]/);
  t.match(text, /wrong-expectation\.yaml:21: expects a rule that does not match\n\s+matched rules: expected \[error-rate-above-5pct\], got \[\]/);
});

t.test('rules test reports a broken test file and usage errors', async (t) => {
  let o = io();
  t.equal(await rulesTestCommand(['test/fixtures/rules/broken/bad-priority.yaml'], o.io), 1);
  t.match(o.out.join('\n'), /FAILED:/);
  o = io();
  t.equal(await rulesTestCommand([], o.io), 2);
  o = io();
  t.equal(await rulesTestCommand(['rules/tests/error-rate.yaml', '--prometheus-bin', '/nonexistent/prometheus'], o.io), 1);
  t.match(o.err.join('\n'), /prometheus not found at \/nonexistent\/prometheus/);
});

t.test('simulate --prometheus confirms against a real Prometheus, read-only', async (t) => {
  const T0 = Date.UTC(2026, 10, 23, 10, 0);
  let a = 0;
  let b = 0;
  const prom = await startPrometheus(t, [
    { metric: 'http_requests_total', labels: { namespace: 'shop', pod: 'api-7c9d8-x2x4z', code: '200' }, samples: samples(T0, 40, 15_000, (i) => (a += i ? 90 : 0)) },
    { metric: 'http_requests_total', labels: { namespace: 'shop', pod: 'api-7c9d8-x2x4z', code: '500' }, samples: samples(T0, 40, 15_000, (i) => (b += i ? 10 : 0)) },
  ]);
  const o = io();
  t.equal(await simulateCommand(['test/fixtures/rules/payloads/high-error-rate.json', '--prometheus', prom.url, '--now', new Date(T0 + 8 * 60_000).toISOString()], o.io), 0);
  const text = o.out.join('\n');
  t.match(text, /confirmation: confirmed: held at all 9 of 9 samples \(value 0\.1 > 0\.05\)/);
  t.match(text, /decision: rollback_now/);
});

t.test('rules check also checks PromQL with promtool', async (t) => {
  let o = io();
  t.equal(await rulesCheckCommand(['test/fixtures/rules/broken/custom-bad-promql.yaml'], o.io), 1);
  t.match(o.err.join('\n'), /custom-bad-promql\.yaml:2: rules\[0\]\.trigger: query is not valid PromQL \(could not parse expression: .*unexpected <by> in aggregation\)/);
  o = io();
  t.equal(await rulesCheckCommand(['--no-promql', 'test/fixtures/rules/broken/custom-bad-promql.yaml'], o.io), 0, '--no-promql skips it');
  o = io();
  t.equal(await rulesCheckCommand(['--promql', 'rules'], o.io), 0);
  t.match(o.out.join('\n'), /SUCCESS: 6 rules in 6 files, PromQL checked with promtool/);
});

t.test('rules test: maintenance windows, approval and target lists', async (t) => {
  const o = io();
  t.equal(await rulesTestCommand(['test/fixtures/rules/tests/window.yaml'], o.io), 0, o.out.join('\n'));
  t.match(o.out.join('\n'), /SUCCESS \(3 tests\)/);
});

t.test("docs/rules.md's owner-join trigger (kube_pod_owner, kube_replicaset_owner), as written there, under its tests", async (t) => {
  const md = await readFile('docs/rules.md', 'utf8');
  const block = /```yaml\n(# rule file: rules\/error-rate-by-owner\.yaml\n[\s\S]*?)```/.exec(md)?.[1];
  t.ok(block, 'docs/rules.md shows rules/error-rate-by-owner.yaml');
  const dir = await mkdtemp(join(tmpdir(), 'rollguard-owner-join-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'error-rate-by-owner.yaml'), block!);
  await copyFile('test/fixtures/rules/docs/error-rate-by-owner.test.yaml', join(dir, 'error-rate-by-owner.test.yaml'));
  const o = io();
  t.equal(await rulesTestCommand([join(dir, 'error-rate-by-owner.test.yaml')], o.io), 0, o.out.join('\n') + o.err.join('\n'));
  t.match(o.out.join('\n'), /SUCCESS \(4 tests\)/);
});
