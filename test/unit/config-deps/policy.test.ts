import t from 'tap';
import type { ActionContext, RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { incidentReport } from '../../../src/engine/report.js';
import { parseRuleFile } from '../../../src/rules/loader.js';
import { FakeDeploymentAction, firing, testEngine } from '../../support/engine.js';

const DRIFT = 'ConfigMap prod/app-settings changed at 14:02 UTC, after revision 1 was created: the old code will run with the new configuration';

/** The engine's Deployment double, whose plan reports one drifted ConfigMap. */
class DriftedAction extends FakeDeploymentAction {
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    const p = await super.plan(ref);
    return { ...p, configDrift: [{ kind: 'ConfigMap', namespace: 'prod', name: 'app-settings', changedAt: Date.parse('2026-11-20T14:02:00Z'), message: DRIFT }] };
  }
}

const rule = (policy?: string) => `
rules:
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
${policy ? `    guards: { configDrift: ${policy} }\n` : ''}`;

function engine(policy?: string) {
  const e = testEngine({ action: new DriftedAction(), ruleText: rule(policy) });
  const run = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await run(p, c);
    e.prometheus!.value = 0.001;
    return r;
  };
  return e;
}

t.test('configDrift: a rule field, warn by default; another word is an error naming the field', async (t) => {
  t.equal(parseRuleFile('r.yaml', rule()).rules[0]?.guards.configDrift, 'warn');
  t.equal(parseRuleFile('r.yaml', rule('approve')).rules[0]?.guards.configDrift, 'approve');
  const bad = parseRuleFile('r.yaml', rule('ignore'));
  t.equal(bad.rules.length, 0);
  t.match(JSON.stringify(bad.errors), /guards\.configDrift/);
});

t.test('warn (default): rolled back; the record, the notification and the report name the drifted ConfigMap', async (t) => {
  const e = engine();
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 1, 'rolled back');
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded');
  t.same(rec!.plan?.configDrift, [DRIFT]);
  t.same(rec!.timeline.filter((s) => s.step === 'config_drift').map((s) => s.message), [DRIFT]);
  t.match(rec!.guards.find((g) => g.guard === 'approval')?.result, 'allow');
  await e.notifications.flush();
  const started = e.notifier.sent.find((n) => n.kind === 'rollback_started');
  t.ok(started?.lines.includes(`Configuration: ${DRIFT}`), 'the "in progress" notification says it');
  t.match(incidentReport(rec!), `Configuration: ${DRIFT}.`);
});

for (const [policy, reason] of [
  ['approve', /configDrift: approve, and ConfigMap prod\/app-settings changed at 14:02 UTC/],
  ['restore', /configDrift: restore, but rollguard keeps no snapshot of the configuration to restore \(CONFIG_SNAPSHOTS is off\), so a human decides as with approve: ConfigMap prod\/app-settings/],
] as const) {
  t.test(`${policy}: waits for a human through the approval path, nothing written`, async (t) => {
    const e = engine(policy);
    await e.deliver(firing('HighErrorRate'));
    t.equal(e.action.executed.length, 0);
    const [rec] = await e.engine.records.list({});
    t.equal(rec!.state, 'pending_approval');
    t.match(rec!.guards.find((g) => g.guard === 'approval'), { result: 'wait', reason });
    await e.notifications.flush();
    t.match(e.notifier.sent.find((n) => n.kind === 'approval_requested')?.lines[0], reason);
  });
}

t.test('no drift: approve and restore do not wait', async (t) => {
  const e = testEngine({ ruleText: rule('approve') });
  const run = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await run(p, c);
    e.prometheus!.value = 0.001;
    return r;
  };
  await e.deliver(firing('HighErrorRate'));
  t.equal(e.action.executed.length, 1);
});

t.test('CONFIG_CHECK_SECRETS: the plans of a rollback read no Secret when it is off, as before when it is on (the default)', async (t) => {
  for (const [env, expected] of [[{}, undefined], [{ CONFIG_CHECK_SECRETS: 'false' }, false]] as const) {
    const seen: (boolean | undefined)[] = [];
    class Capturing extends FakeDeploymentAction {
      override async plan(ref: TargetRef, ctx?: ActionContext): Promise<RollbackPlan> {
        seen.push(ctx?.checkSecrets);
        return super.plan(ref);
      }
    }
    const e = testEngine({ action: new Capturing(), ruleText: rule(), env });
    await e.deliver(firing('HighErrorRate'));
    t.ok(seen.length > 0, 'planned');
    t.ok(seen.every((v) => v === expected), `${JSON.stringify(env)}: checkSecrets ${expected}`);
  }
});
