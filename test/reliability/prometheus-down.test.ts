// Prometheus down (issue 9): refusing connections (a real Prometheus, stopped), not answering
// (a socket that never replies), or answering 503. Each rule's onPrometheusDown policy holds and
// the outcome is recorded: act rolls back on the alert alone (recovery then 'unverified', never
// 'succeeded' without a check), hold waits and re-checks once Prometheus is back (a real
// Prometheus with a backfilled error rate), notify only notifies.
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import type { ActionContext, RollbackPlan, TargetRef } from '../../src/actions/action.js';
import type { Alert } from '../../src/alertmanager/alert.js';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/pipeline.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications } from '../../src/notify/notifier.js';
import { PrometheusClient, type PrometheusApi } from '../../src/prometheus/client.js';
import { MemoryStore } from '../../src/store/memory.js';
import { CapturingNotifier, FakeDeploymentAction, rules } from '../support/engine.js';
import { errorRateSeries, startPrometheus } from '../support/prometheus.js';
import { figures } from './figures.js';

const T0 = Date.UTC(2026, 9, 1, 12, 0);
// the real Prometheus (up): 20% errors in namespace "prod" for three hours from T0
const prom = await startPrometheus(t, errorRateSeries(T0));
// a Prometheus that was there and is gone: a real one, started and stopped (connection refused)
const gone = await startPrometheus(t);
const goneUrl = gone.url;
await gone.stop();
// one that accepts connections and never answers
const hanging = net.createServer(() => {});
await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
const sockets = new Set<net.Socket>();
hanging.on('connection', (s) => sockets.add(s));
t.teardown(() => {
  for (const s of sockets) s.destroy();
  hanging.close();
});
// one answering 503 (overloaded, restarting behind a proxy)
const busy = http.createServer((_req, res) => {
  res.statusCode = 503;
  res.end('service unavailable');
});
await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
t.teardown(() => {
  busy.closeAllConnections();
  busy.close();
});
const MODES: Record<string, string> = {
  refused: goneUrl,
  hanging: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`,
  http503: `http://127.0.0.1:${(busy.address() as AddressInfo).port}`,
};

/** The real client, pointed at whichever Prometheus the test says. */
class SwitchablePrometheus implements PrometheusApi {
  url: string;
  constructor(url: string) {
    this.url = url;
  }
  private client() {
    return new PrometheusClient({ url: this.url, timeoutMs: 1000 });
  }
  query(expr: string, timeMs: number) {
    return this.client().query(expr, timeMs);
  }
  queryRange(expr: string, startMs: number, endMs: number, stepMs: number) {
    return this.client().queryRange(expr, startMs, endMs, stepMs);
  }
}

/** The fake Deployment action, with each target rolled back on its own (not one shared flag). */
class PerTargetDeployments extends FakeDeploymentAction {
  private readonly done = new Set<string>();
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    this.applied = this.done.has(ref.name);
    return super.plan(ref);
  }
  override async execute(plan: RollbackPlan, ctx: ActionContext) {
    const res = await super.execute(plan, ctx);
    this.done.add(plan.target.name);
    return res;
  }
}

const RULES = `
rules:
  - name: act
    match: ['alertname="P0Errors"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
  - name: hold
    match: ['alertname="P1Errors"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    onPrometheusDown: hold
  - name: notify
    match: ['alertname="P1ErrorsNotify"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    onPrometheusDown: notify
`;

let faults = 0;
let alerts = 0;

for (const [mode, url] of Object.entries(MODES)) {
  t.test(`Prometheus ${mode}: act, hold and notify each hold, and say so in the record`, async (t) => {
    // the engine lives 90 minutes into the backfilled window, at real speed, plus jumps
    const offset = Date.now() - (T0 + 90 * 60_000);
    let jump = 0;
    const now = () => Date.now() - offset + jump;
    const config = loadConfig({ DRY_RUN: 'false', LOCK_TTL: '10s', RECOVERY_TIMEOUT: '2s', RECOVERY_POLL: '300ms', BUDGET_CLUSTER_PER_HOUR: '100' });
    const metrics = createMetrics({ defaults: false });
    const logger = pino({ level: 'silent' });
    const notifier = new CapturingNotifier();
    const notifications = new Notifications([notifier], logger, metrics);
    const action = new PerTargetDeployments();
    const prometheus = new SwitchablePrometheus(url);
    const engine = new Engine({ config, store: new MemoryStore(now), metrics, logger, rules: { rules: rules(RULES) }, prometheus, kube: null, actions: { Deployment: action }, notifications, owner: 'prom-down', now });
    action.createdAt = now() - 10 * 60_000;
    let n = 0;
    const alert = (alertname: string, deployment: string): Alert => ({ fingerprint: `${mode}-${alertname}`, status: 'firing', labels: { alertname, namespace: 'prod', deployment }, annotations: {}, startsAt: now() - 3 * 60_000, generatorURL: '', receiver: 'rollguard', groupKey: 'g', externalURL: '', receivedAt: now() });
    const deliver = (a: Alert) => engine.handle({ id: `ev-${++n}`, alert: a, deliveries: 1 }).finally(() => engine.idle());
    const rec = async (d: string) => (await engine.records.list({ target: `Deployment/prod/${d}` }))[0]!;

    await deliver(alert('P0Errors', 'p0'));
    await deliver(alert('P1Errors', 'p1'));
    await deliver(alert('P1ErrorsNotify', 'p1n'));
    alerts += 3;

    // act: rolled back on the alert alone; recovery could not be checked -> unverified, not succeeded
    const p0 = await rec('p0');
    t.equal(p0.confirmation?.outcome, 'prometheus_down', `p0 confirmation: ${p0.confirmation?.reason}`);
    t.match(p0.decision?.reason, /Prometheus unreachable, trusting the alert \(onPrometheusDown: act\)/);
    t.equal(p0.state, 'unverified', `p0: ${p0.state}: ${p0.outcome?.message}`);
    t.match(p0.outcome?.message, /the trigger could not be re-checked \(prometheus_down: /);
    t.equal(action.executed.filter((e) => e.ref.name === 'p0').length, 1, 'p0 rolled back once');

    // notify: no rollback, a notification
    const p1n = await rec('p1n');
    t.equal(p1n.state, 'notified', `p1n: ${p1n.state}: ${p1n.outcome?.message}`);
    t.match(p1n.outcome?.message, /onPrometheusDown: notify/);
    t.equal(action.executed.filter((e) => e.ref.name === 'p1n').length, 0, 'p1n not rolled back');

    // hold: waits; still down at its due time -> held again; Prometheus back -> confirmed -> rolled back
    let p1 = await rec('p1');
    t.equal(p1.state, 'held', `p1: ${p1.state}: ${p1.decision?.reason}`);
    t.match(p1.decision?.reason, /holding \(onPrometheusDown: hold\)/);
    t.equal(action.executed.filter((e) => e.ref.name === 'p1').length, 0, 'p1 not rolled back while Prometheus is down');
    const due = p1.dueAt!;
    jump += due - now() + 1000;
    await engine.tick();
    p1 = await rec('p1');
    t.equal(p1.state, 'held', 'due, Prometheus still down: held again');
    t.ok((p1.dueAt ?? 0) > due, 'with a later due time');
    t.equal(action.executed.filter((e) => e.ref.name === 'p1').length, 0);
    prometheus.url = prom.url;
    jump += (p1.dueAt ?? 0) - now() + 1000;
    await engine.tick();
    await engine.idle();
    p1 = await rec('p1');
    t.equal(p1.confirmation?.outcome, 'confirmed', `p1 confirmed once Prometheus is back: ${p1.confirmation?.reason}`);
    t.not(p1.state, 'held');
    t.equal(action.executed.filter((e) => e.ref.name === 'p1').length, 1, 'p1 rolled back once, after the confirmation');
    t.equal(p1.state, 'failed', `p1: ${p1.state}: ${p1.outcome?.message} (the backfilled error rate stays high: not recovered, escalated)`);

    await notifications.flush();
    t.ok(notifier.sent.some((x) => x.kind === 'notify_only' && x.target === 'Deployment/prod/p1n'), 'p1n: a notify-only notification');
    faults += 2; // Prometheus down at the first look and at the first re-check
    figures(t, `prometheus-down-${mode}`, { alerts_sent: 3, act: p0.state, hold: `held>held>${p1.state}`, notify: p1n.state, rollbacks: action.executed.length });
  });
}

t.test('figures', async (t) => {
  figures(t, 'prometheus-down', { faults_injected: faults, down_modes: Object.keys(MODES).join('/'), alerts_sent: alerts });
  t.pass();
});
