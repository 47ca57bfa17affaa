import t from 'tap';
import { simulateCommand } from '../../../src/cli/simulate.js';

const PAYLOAD = 'test/fixtures/rules/payloads/high-error-rate.json';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) } };
}

t.test('simulate prints matched rules, targets, the query and the decision', async (t) => {
  const o = io();
  t.equal(await simulateCommand([PAYLOAD, '--now', '2026-11-23T10:05:00Z'], o.io), 0);
  const text = o.out.join('\n');
  t.match(text, /rule error-rate-above-5pct \(P0, rules\/error-rate\.yaml:3\)/);
  t.match(text, /targets: Deployment shop\/api/);
  t.match(text, /query: \(sum\(rate\(http_requests_total\{namespace="shop"/);
  t.match(text, /decision: rollback_now/);
  t.match(text, /targets: ERROR target\.name: resolved to "Bad_Name"/);
  t.match(text, /decision: no_action \(targets do not resolve\)/);
  t.match(text, /alert Watchdog firing .*\n  no rule matches: nothing would happen/);
});

t.test('simulate --json', async (t) => {
  const o = io();
  t.equal(await simulateCommand([PAYLOAD, '--json', '--rules', 'rules'], o.io), 0);
  const report = JSON.parse(o.out.join('\n'));
  t.equal(report.length, 3);
  t.equal(report[0].rules[0].rule, 'error-rate-above-5pct');
  t.same(report[0].rules[0].targets, ['Deployment shop/api']);
  t.equal(report[0].rules[0].decision.decision, 'rollback_now');
  t.equal(report[0].rules[0].confirmation.outcome, 'assumed');
  t.same(report[2].rules, []);
});

t.test('simulate usage and input errors', async (t) => {
  let o = io();
  t.equal(await simulateCommand([], o.io), 2);
  o = io();
  t.equal(await simulateCommand([PAYLOAD, '--bogus'], o.io), 2);
  o = io();
  t.equal(await simulateCommand(['package.json'], o.io), 1);
  t.match(o.err.join('\n'), /not an Alertmanager webhook payload: payload\.version/);
  o = io();
  t.equal(await simulateCommand([PAYLOAD, '--rules', 'test/fixtures/rules/broken/bad-priority.yaml'], o.io), 1);
  t.match(o.err.join('\n'), /bad-priority\.yaml:13/);
});
