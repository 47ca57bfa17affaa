import t from 'tap';
import { parseRuleFile } from '../../../src/rules/loader.js';
import { invalidName } from '../../../src/kube/names.js';
import { formatTarget, resolveTargets, TargetResolutionError } from '../../../src/rules/targets.js';
import { MissingLabelError, parseTemplate, renderTemplate, TemplateSyntaxError } from '../../../src/rules/template.js';

function targetsOf(yaml: string) {
  const r = parseRuleFile('t.yaml', `rules:
  - name: t
    match: { alertname: A }
    target:
${yaml}
    trigger: { kind: deployment_failed, for: 5m }
    priority: P1
`);
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.rules[0]!.targets;
}

t.test('templates: {{ $labels.x }} only, parsed at load', async (t) => {
  const tpl = parseTemplate('{{ $labels.app }}-canary');
  t.same(tpl.labels, ['app']);
  t.equal(renderTemplate(tpl, { app: 'web' }), 'web-canary');
  t.equal(parseTemplate('{{$labels.a}}{{ $labels.b }}').labels.length, 2);
  t.ok(parseTemplate('plain').literal);
  t.throws(() => parseTemplate('{{ .labels.app }}'), TemplateSyntaxError);
  t.throws(() => parseTemplate('{{ $labels.app | toUpper }}'), TemplateSyntaxError);
  t.throws(() => parseTemplate('{{ $labels.app '), /unclosed/);
  t.throws(() => renderTemplate(tpl, {}), MissingLabelError);
  t.throws(() => renderTemplate(tpl, { app: '' }), MissingLabelError, 'an empty label is missing, as in Alertmanager');
});

t.test('one target, templated from the alert', async (t) => {
  const specs = targetsOf('      kind: Deployment\n      namespace: "{{ $labels.namespace }}"\n      name: "{{ $labels.deployment }}"');
  const r = resolveTargets(specs, { namespace: 'nexus-platform', deployment: 'backend-api' });
  t.same(r, [{ kind: 'Deployment', namespace: 'nexus-platform', name: 'backend-api' }]);
  t.equal(formatTarget(r[0]!), 'Deployment nexus-platform/backend-api');
});

t.test('a list of targets is kept in order (the runbook\'s rolling back multiple services)', async (t) => {
  const specs = targetsOf(`      - { kind: Deployment, namespace: "{{ $labels.namespace }}", name: backend-api }
      - { kind: Deployment, namespace: "{{ $labels.namespace }}", name: auth-service }
      - { kind: Deployment, namespace: "{{ $labels.namespace }}", name: content-management }`);
  const r = resolveTargets(specs, { namespace: 'nexus-platform' });
  t.same(r.map((x) => x.name), ['backend-api', 'auth-service', 'content-management']);
});

t.test('kinds with params: each kind maps its rule params onto its own options', async (t) => {
  const bg = targetsOf('      kind: BlueGreen\n      namespace: shop\n      name: "{{ $labels.service }}"\n      params: { selectorLabel: version, previous: blue }');
  t.same(resolveTargets(bg, { service: 'hotswap-api' })[0], {
    kind: 'BlueGreen',
    namespace: 'shop',
    name: 'hotswap-api',
    options: { service: 'hotswap-api', selectorKey: 'version', to: 'blue' },
  });
  const c = targetsOf('      kind: Canary\n      namespace: shop\n      name: "{{ $labels.app }}-canary"\n      params: { stable: "{{ $labels.app }}-stable" }');
  t.same(resolveTargets(c, { app: 'backend-api' })[0], {
    kind: 'Canary',
    namespace: 'shop',
    name: 'backend-api-canary',
    options: { canary: 'backend-api-canary', stable: 'backend-api-stable' },
  });
  t.equal(formatTarget(resolveTargets(c, { app: 'api' })[0]!), 'Canary shop/api-canary (canary=api-canary, stable=api-stable)');
  t.throws(() => targetsOf('      kind: Deployment\n      namespace: shop\n      name: x\n      params: { stable: y }'), /unknown param for Deployment/);
  const ro = targetsOf('      kind: Rollout\n      namespace: shop\n      name: r\n      params: { mode: "{{ $labels.mode }}", toRevision: "3" }');
  t.same(resolveTargets(ro, { mode: 'undo' }), [{ kind: 'Rollout', namespace: 'shop', name: 'r', toRevision: 3, options: { mode: 'undo' } }]);
  t.throws(() => resolveTargets(ro, { mode: 'bogus' }), /target\.params\.mode: resolved to "bogus", which is not one of abort, undo/);
  t.throws(() => targetsOf('      kind: Rollout\n      namespace: shop\n      name: r\n      params: { mode: sideways }'), /"field":"rules\[0\]\.target\.params\.mode","message":"expected one of abort, undo, got \\"sideways\\""/, 'a literal is checked at load');
});

t.test('toRevision: a revision number, for the kinds that have revisions', async (t) => {
  const specs = targetsOf('      kind: StatefulSet\n      namespace: prod\n      name: db\n      params: { toRevision: "{{ $labels.rev }}" }');
  t.same(resolveTargets(specs, { rev: '3' }), [{ kind: 'StatefulSet', namespace: 'prod', name: 'db', toRevision: 3 }]);
  t.equal(formatTarget(resolveTargets(specs, { rev: '3' })[0]!), 'StatefulSet prod/db (toRevision=3)');
  for (const bad of ['0', '-1', '1.5', 'latest', '9999999999']) {
    t.throws(() => resolveTargets(specs, { rev: bad }), new TargetResolutionError(`target.params.toRevision: resolved to ${JSON.stringify(bad)}, which is not a revision number (1 or more)`), bad);
  }
  t.throws(() => targetsOf('      kind: BlueGreen\n      namespace: shop\n      name: api\n      params: { toRevision: "2" }'), /unknown param for BlueGreen \(expected one of selectorLabel, previous\)/);
});

t.test('a missing label is an error for that alert, never an empty name', async (t) => {
  const specs = targetsOf('      kind: Deployment\n      namespace: "{{ $labels.namespace }}"\n      name: "{{ $labels.deployment }}"');
  t.throws(() => resolveTargets(specs, { namespace: 'shop' }), new TargetResolutionError('target.name: alert has no label "deployment" (needed by "{{ $labels.deployment }}")'));
});

t.test('hostile label values cannot name something else', async (t) => {
  const specs = targetsOf('      kind: Deployment\n      namespace: "{{ $labels.namespace }}"\n      name: "{{ $labels.deployment }}"');
  const hostile = [
    '../kube-system',
    'api,auth',
    'api/../../x',
    'API',
    'api\nother',
    'a'.repeat(254),
    '-api',
    'api-',
    'api name',
    '*',
  ];
  for (const h of hostile) {
    t.throws(() => resolveTargets(specs, { namespace: 'shop', deployment: h }), TargetResolutionError, `name ${JSON.stringify(h).slice(0, 30)}`);
  }
  t.throws(() => resolveTargets(specs, { namespace: 'kube-system.evil', deployment: 'api' }), /target\.namespace: resolved to "kube-system.evil", which is not a DNS-1123 label/);
  t.throws(() => resolveTargets(specs, { namespace: 'a'.repeat(64), deployment: 'api' }), /DNS-1123 label/);
});

t.test('name rules per kind', async (t) => {
  t.equal(invalidName('subdomain', 'backend-api.v2'), undefined);
  t.ok(invalidName('label', 'backend.api'));
  t.ok(invalidName('service', '1api'), 'a Service name starts with a letter');
  t.ok(invalidName('helm', 'a'.repeat(54)), 'Helm release names are at most 53');
  t.equal(invalidName('labelValue', 'Blue_1.0'), undefined);
  t.ok(invalidName('labelValue', 'blue green'));
});
