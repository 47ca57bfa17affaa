import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { rulesCheckCommand } from '../../../src/cli/rules.js';
import { formatRuleError, loadRules, parseRuleFile } from '../../../src/rules/loader.js';

const FIX = 'test/fixtures/rules/broken';

/** Each broken fixture, and the exact `file:line: field: message` start it must produce. */
const cases: Array<[file: string, expected: string]> = [
  ['threshold-string.yaml', ':11: rules[0].trigger.threshold: expected number, got string ("high")'],
  ['bad-duration.yaml', ':12: rules[0].trigger.for: expected a duration like 30s, 5m, 1h30m'],
  ['bad-priority.yaml', ':13: rules[0].priority: expected one of "P0", "P1", "P2", got "P3"'],
  ['unknown-trigger-kind.yaml', ':10: rules[0].trigger.kind: expected one of error_rate, latency, health_check, memory, crash_loop, deployment_failed, custom, got "error_ratio"'],
  ['typo-field.yaml', ':11: rules[0].trigger.treshold: unknown field "treshold" (did you mean "threshold"?)'],
  ['re2-lookahead.yaml', ':4: rules[0].match[0]: invalid regex "(?!Watchdog).*": invalid or unsupported Perl syntax'],
  ['bad-regex.yaml', ':4: rules[0].match[0]: invalid regex "High(Error"'],
  ['bad-template.yaml', ':8: rules[0].target.name: template "{{ .labels.deployment }}": expected {{ $labels.<label name> }}'],
  ['bad-literal-name.yaml', ':8: rules[0].target.name: expected a DNS-1123 subdomain'],
  ['bad-matcher.yaml', ':5: rules[0].match[1]: expected a matcher like name="value"'],
  ['p0-approval.yaml', ':16: rules[0].guards.approval.required: P0 rules roll back without waiting for approval'],
  ['bad-window.yaml', ':14: rules[0].maintenanceWindow: invalid time of day in "Sat,Sun 25:00-26:00"'],
  ['baseline-no-offset.yaml', ':13: rules[0].trigger.baseline.offset: expected a duration (e.g. 1d) with relativeTo: offset'],
  ['bad-target-kind.yaml', ':6: rules[0].target.kind: expected one of "Deployment", "StatefulSet"'],
  ['yaml-syntax.yaml', ':5: invalid YAML:'],
  ['bad-metric-name.yaml', ':13: rules[0].trigger.metric: expected a metric name'],
  ['missing-fields.yaml', ':2: rules[0].match: missing (expected list or map)'],
  ['custom-unquoted-placeholder.yaml', ':7: rules[0].trigger.query: a {{ $labels.x }} placeholder in a custom query must be inside a double-quoted string'],
];

t.test('each broken file is refused with file:line: field: what was expected', async (t) => {
  for (const [file, expected] of cases) {
    const path = join(FIX, file);
    const r = await loadRules([path]);
    t.equal(r.rules.length, 0, `${file}: no rules from a broken load`);
    const lines = r.errors.map(formatRuleError);
    t.ok(lines.some((l) => l.startsWith(path + expected)), `${file}:${expected.split(':')[1]}`, { expected: path + expected, got: lines });
  }
});

t.test('a missing required field is reported at the rule, each one', async (t) => {
  const r = await loadRules([join(FIX, 'missing-fields.yaml')]);
  const fields = r.errors.map((e) => e.field);
  t.same(fields.sort(), ['rules[0].match', 'rules[0].priority', 'rules[0].target', 'rules[0].trigger']);
  t.ok(r.errors.every((e) => e.line === 2));
});

t.test('rule names are unique across files', async (t) => {
  const r = await loadRules([join(FIX, 'dup')]);
  t.equal(r.errors.length, 1);
  t.match(formatRuleError(r.errors[0]!), /dup\/b\.yaml:2: rules\[0\]\.name: rule name "dup-rule" is already used at .*dup\/a\.yaml:2/);
});

t.test('the shipped rules load, and a directory skips its subdirectories (rules/tests)', async (t) => {
  const r = await loadRules(['rules']);
  t.same(r.errors, []);
  t.same(
    r.rules.map((x) => x.name).sort(),
    ['deployment-failed', 'error-rate-above-5pct', 'health-checks-failing-above-50pct', 'latency-p95-2x-baseline', 'latency-p99-above-2s', 'memory-above-95pct'],
  );
  const er = r.rules.find((x) => x.name === 'error-rate-above-5pct')!;
  t.equal(er.priority, 'P0');
  t.equal(er.onPrometheusDown, 'act', 'P0 trusts the alert when Prometheus is down, by default');
  t.equal(er.trigger.threshold, 0.05);
  t.equal(er.trigger.forMs, 120_000);
  t.equal(er.line, 3);
  t.equal(er.guards.cooldown, 30 * 60_000);
  t.equal(er.guards.onlyIfDeployedWithin, 24 * 3600_000);
  t.equal(er.guards.budget.perTargetPerHour, 1);
  t.equal(er.guards.allowStepBack, false);
  const lat = r.rules.find((x) => x.name === 'latency-p99-above-2s')!;
  t.equal(lat.onPrometheusDown, 'hold', 'below P0 holds by default');
});

t.test('defaults and the full set of fields', async (t) => {
  const text = `
rules:
  - name: full
    description: every field
    match: { alertname: Foo, severity: critical }
    target:
      - { kind: Deployment, namespace: "{{ $labels.namespace }}", name: backend-api }
      - { kind: Deployment, namespace: "{{ $labels.namespace }}", name: auth-service }
      - kind: Canary
        namespace: shop
        name: "{{ $labels.deployment }}-canary"
        params: { stable: "{{ $labels.deployment }}-stable" }
    trigger:
      kind: custom
      query: 'sum(rate(errors_total{namespace="{{ $labels.namespace }}"}[5m]))'
      op: ">="
      threshold: 10
      for: 10m
      minCoverage: 0.5
      baseline: { relativeTo: offset, offset: 1w, window: 30m }
    priority: P1
    action: rollback
    onPrometheusDown: notify
    sloAtRisk: true
    recheckAfter: 5m
    maintenanceWindow: "Sat,Sun 02:00-06:00"
    guards:
      dryRun: true
      onlyIfDeployedWithin: 2h
      cooldown: 1h
      budget: { perTargetPerHour: 2, perRulePerHour: 5 }
      approval: { required: true, expiresAfter: 15m }
      allowStepBack: true
      maxStepBack: 2
`;
  const r = parseRuleFile('inline.yaml', text);
  t.same(r.errors, []);
  const rule = r.rules[0]!;
  t.equal(rule.targets.length, 3);
  t.equal(rule.matchers.length, 2);
  t.equal(rule.trigger.stepMs, 60_000, 'default step: a tenth of the window, at most 1m');
  t.same(rule.trigger.baseline, { relativeTo: 'offset', windowMs: 30 * 60_000, offsetMs: 7 * 24 * 3600_000 });
  t.equal(rule.onPrometheusDown, 'notify');
  t.equal(rule.recheckAfterMs, 300_000);
  t.equal(rule.maintenanceWindow?.startMinute, 120);
  t.same(rule.guards, {
    dryRun: true,
    onlyIfDeployedWithin: 2 * 3600_000,
    cooldown: 3600_000,
    budget: { perTargetPerHour: 2, perRulePerHour: 5 },
    approval: { required: true, expiresAfter: 15 * 60_000 },
    allowStepBack: true,
    maxStepBack: 2,
    configDrift: 'warn',
  });
  t.equal(rule.trigger.query({ namespace: 'shop' }), 'sum(rate(errors_total{namespace="shop"}[5m]))');
});

t.test('cross-field rules', async (t) => {
  const rule = (extra: string, priority = 'P0', action = 'rollback') => `
rules:
  - name: x
    match: ['alertname="A"']
    target: { kind: Deployment, namespace: a, name: b }
    trigger: { kind: deployment_failed, for: 5m }
    priority: ${priority}
    action: ${action}
${extra}`;
  const msg = (text: string) => parseRuleFile('x.yaml', text).errors.map(formatRuleError).join('\n');
  t.match(msg(rule('    sloAtRisk: true', 'P0')), /x\.yaml:9: rules\[0\]\.sloAtRisk: sloAtRisk applies to P1 rules only/);
  t.match(msg(rule('    maintenanceWindow: "Sun 02:00-03:00"', 'P0')), /maintenanceWindow: P0 rules roll back now/);
  t.match(msg(rule('    maintenanceWindow: "Sun 02:00-03:00"', 'P2', 'notify')), /maintenanceWindow applies to action: rollback only/);
  t.match(msg(rule('    guards: { maxStepBack: 3 }', 'P1')), /maxStepBack > 1 needs allowStepBack: true/);
  t.equal(msg(rule('    maintenanceWindow: "Sun 02:00-03:00"', 'P2')), '', 'P2 may schedule a rollback into a window');
  t.match(msg(rule('', 'P1').replace("['alertname=\"A\"']", '[]')), /at least one matcher/);
  t.match(msg('rules: 3\n'), /x\.yaml:1: rules: expected list, got number/);
  t.match(msg(''), /empty file/);
  t.match(msg('rules: []\nextra: 1\n'), /x\.yaml:2: extra: unknown field "extra"/);
});

// A matcher list that matches any alert loaded though an empty list was refused as "a rule must not
// match every alert": `alertname=~".*"` with P0 and a templated target confirmed its trigger (and,
// Prometheus down, rolled back under onPrometheusDown: act) for every alert Alertmanager sent.
t.test('matchers that match any alert are refused at their field; ones that pin a label load', async (t) => {
  const rule = (match: string) => `rules:
  - name: storm
    match: ${match}
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, threshold: 0.05, for: 2m }
    priority: P0
`;
  const msg = (match: string) => parseRuleFile('x.yaml', rule(match)).errors.map(formatRuleError).join('\n');
  for (const m of [`['alertname=~".*"']`, `['alertname=~".+"']`, `['alertname!="Watchdog"']`, `['team!~"qa|test"']`, `['severity=~".*"', 'alertname=~"(?s).*"']`]) {
    t.match(msg(m), /^x\.yaml:3: rules\[0\]\.match: these matchers match any alert \(no matcher pins a label/, m);
  }
  for (const m of [`['alertname="HighErrorRate"']`, `['alertname=~"High.*"']`, `['severity=~".*"', 'namespace="prod"']`, `['namespace=~".+"']`, `['alertname!="Watchdog"', 'team="db"']`, `{ alertname: HighErrorRate }`]) {
    t.equal(msg(m), '', m);
  }
  // through the loader, as serve, a reload and rules check read it
  const dir = await mkdtemp(join(tmpdir(), 'rg-storm-'));
  await writeFile(join(dir, 'storm.yaml'), rule(`['alertname=~".*"']`));
  const r = await loadRules([dir]);
  t.equal(r.rules.length, 0);
  t.match(r.errors.map(formatRuleError).join('\n'), /storm\.yaml:3: rules\[0\]\.match: these matchers match any alert/);
});

t.test('rollguard rules check: exit codes and output', async (t) => {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (s: string) => out.push(s), err: (s: string) => err.push(s) };
  t.equal(await rulesCheckCommand(['rules'], io), 0);
  t.match(out.join('\n'), /SUCCESS: 6 rules in 6 files/);
  t.same(err, []);

  out.length = 0;
  t.equal(await rulesCheckCommand([FIX], io), 1, 'non-zero exit on broken files');
  t.match(err.join('\n'), /threshold-string\.yaml:11: rules\[0\]\.trigger\.threshold: expected number, got string/);
  t.match(err[err.length - 1]!, /^FAILED: \d+ errors in \d+ files$/);

  err.length = 0;
  t.equal(await rulesCheckCommand(['rules', join(FIX, 'bad-priority.yaml')], io), 1, 'one bad file fails the whole check');
  t.equal(await rulesCheckCommand(['does-not-exist'], io), 1);
  t.match(err.join('\n'), /does-not-exist:0: cannot read: ENOENT/);
  t.equal(await rulesCheckCommand(['--bogus'], io), 2);
});

t.test('rules check on a fresh directory with a good file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-rules-'));
  await writeFile(
    join(dir, 'a.yml'),
    'rules:\n  - name: a\n    match: { alertname: A }\n    target: { kind: HelmRelease, namespace: shop, name: web }\n    trigger: { kind: crash_loop, threshold: 3, for: 5m }\n    priority: P2\n',
  );
  await writeFile(join(dir, 'notes.txt'), 'not a rule file');
  const out: string[] = [];
  t.equal(await rulesCheckCommand([dir], { out: (s) => out.push(s), err: () => {} }), 0);
  t.match(out.join('\n'), /SUCCESS: 1 rule in 1 file/);
});

t.test('YAML anchors and merge keys share settings between rules', async (t) => {
  const r = parseRuleFile(
    'anchors.yaml',
    `x-defaults: &defaults
  target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
  priority: P1
  guards: { cooldown: 1h }
rules:
  - <<: *defaults
    name: a
    match: { alertname: A }
    trigger: { kind: crash_loop, threshold: 3, for: 5m }
  - <<: *defaults
    name: b
    match: { alertname: B }
    trigger: { kind: crash_loop, threshold: 5, for: 5m }
    priority: P0
`,
  );
  t.match(r.errors.map(formatRuleError).join('\n'), /anchors\.yaml:1: x-defaults: unknown field "x-defaults"/, 'only "rules" at the top');
  const ok = parseRuleFile('anchors.yaml', `rules:
  - &a
    name: a
    match: { alertname: A }
    target: { kind: Deployment, namespace: shop, name: api }
    trigger: { kind: crash_loop, threshold: 3, for: 5m }
    priority: P1
    guards: { cooldown: 1h }
  - <<: *a
    name: b
    match: { alertname: B }
`);
  t.same(ok.errors, []);
  t.same(ok.rules.map((x) => [x.name, x.guards.cooldown, x.line]), [['a', 3600_000, 3], ['b', 3600_000, 9]]);
});

t.test('aliases: a hundred rules may share one anchor; a file whose aliases expand too far is reported at the alias, not thrown', async (t) => {
  const shared = (n: number) => {
    let y = 'rules:\n';
    for (let i = 0; i < n; i++) {
      y += `  - name: svc-${i}\n    match: [alertname="HighErrorRate", service="svc-${i}"]\n    target: { kind: Deployment, namespace: shop, name: svc-${i} }\n    priority: P0\n    trigger: { kind: deployment_failed, for: 5m }\n    guards: ${i === 0 ? '&g { cooldown: 1h, onlyIfDeployedWithin: 6h }' : '*g'}\n`;
    }
    return y;
  };
  const dir = await mkdtemp(join(tmpdir(), 'rg-alias-'));
  await writeFile(join(dir, 'shared.yaml'), shared(121));
  const loaded = await loadRules([join(dir, 'shared.yaml')]);
  t.same(loaded.errors, []);
  t.equal(loaded.rules.length, 121, '120 uses of *g (the yaml library counted 100 at most)');
  t.same(loaded.rules[120]!.guards.cooldown, 3600_000);

  // nine levels of nine aliases: billions of nodes once resolved
  let bomb = 'x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let i = 1; i < 10; i++) bomb += `x${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(',')}]\n`;
  await writeFile(join(dir, 'bomb.yaml'), `${bomb}rules: []\n`);
  const refused = await loadRules([join(dir, 'bomb.yaml')]);
  t.same(refused.rules, []);
  t.match(refused.errors.map(formatRuleError), [/bomb\.yaml:6: x5\[0\]: with the alias \*a4 \(66,430 nodes\), the file's aliases add more than 100,000 YAML nodes when resolved, .*split the file$/]);

  const err: string[] = [];
  t.equal(await rulesCheckCommand([join(dir, 'bomb.yaml')], { out: () => {}, err: (s) => err.push(s) }), 1, 'rules check fails with the error, no stack trace');
  t.match(err.join('\n'), /bomb\.yaml:6: x5\[0\]: with the alias \*a4/);

  const cycle = parseRuleFile('cycle.yaml', 'rules: &r\n  - *r\n');
  t.match(cycle.errors.map(formatRuleError), [/^cycle\.yaml:2: rules\[0\]: the alias \*r is inside its own anchor &r/]);
});

t.test('names every JavaScript object has are refused as keys and label names, at their field', async (t) => {
  const rule = (lines: string) =>
    parseRuleFile('proto.yaml', `rules:\n  - name: p\n    match: [alertname="X"]\n    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }\n    priority: P0\n${lines}`)
      .errors.map(formatRuleError);
  const errorRate = (selector: string) => rule(`    trigger:\n      kind: error_rate\n      selector:\n        ${selector}\n      threshold: 0.05\n      for: 2m\n`);
  const what = /"(__proto__|constructor|toString)" is the name of a property every JavaScript object has, which a rule file cannot use as a label name or key; use another name/;
  // a __proto__ key vanished from the selector: the query read every namespace
  t.match(errorRate('__proto__: "{{ $labels.namespace }}"'), [/^proto\.yaml:9: rules\[0\]\.trigger\.selector\.__proto__: "__proto__" is the name/]);
  t.match(errorRate('constructor: shop'), [/^proto\.yaml:9: rules\[0\]\.trigger\.selector\.constructor: /]);
  t.match(errorRate('namespace: "{{ $labels.constructor }}"'), [/^proto\.yaml:8: rules\[0\]\.trigger\.selector: namespace: template "\{\{ \$labels\.constructor \}\}": "constructor" is the name/]);
  t.match(rule('    trigger: { kind: custom, query: \'up{job="{{ $labels.toString }}"}\', threshold: 0, for: 1m }\n'), [what]);
  t.match(
    parseRuleFile('proto.yaml', 'rules:\n  - name: p\n    match: { __proto__: X }\n    target: { kind: Deployment, namespace: a, name: b }\n    priority: P0\n    trigger: { kind: crash_loop, threshold: 3, for: 5m }\n').errors.map(formatRuleError),
    [/^proto\.yaml:3: rules\[0\]\.match\.__proto__: "__proto__" is the name/],
  );
  t.match(
    parseRuleFile('proto.yaml', 'rules:\n  - name: p\n    match: [alertname="X", constructor=~".*"]\n    target: { kind: Deployment, namespace: a, name: b }\n    priority: P0\n    trigger: { kind: crash_loop, threshold: 3, for: 5m }\n').errors.map(formatRuleError),
    [/^proto\.yaml:3: rules\[0\]\.match\[1\]: "constructor" is the name/],
  );
  t.match(
    parseRuleFile('proto.yaml', 'rules:\n  - name: p\n    match: [alertname="X"]\n    target: { kind: Deployment, namespace: a, name: "{{ $labels.valueOf }}", params: { hasOwnProperty: "3" } }\n    priority: P0\n    trigger: { kind: crash_loop, threshold: 3, for: 5m }\n').errors.map(formatRuleError),
    [/^proto\.yaml:4: rules\[0\]\.target\.params\.hasOwnProperty: "hasOwnProperty" is the name/],
  );
  // a key written as an alias of a __proto__ scalar: refused as the name itself is
  t.match(
    parseRuleFile('proto.yaml', 'rules:\n  - name: p\n    match: { team: &n __proto__, ? *n : prod, alertname: A }\n    target: { kind: Deployment, namespace: a, name: b }\n    priority: P0\n    trigger: { kind: crash_loop, threshold: 3, for: 5m }\n').errors.map(formatRuleError),
    [/^proto\.yaml:3: rules\[0\]\.match\.__proto__: "__proto__" is the name/],
    'in match',
  );
  t.match(errorRate('team: &n __proto__\n        ? *n : x'), [/^proto\.yaml:10: rules\[0\]\.trigger\.selector\.__proto__: "__proto__" is the name/], 'in a selector');
});
