// Notifications against a real HTTP receiver on 127.0.0.1: the Slack-compatible incoming webhook and
// the generic JSON webhook carry the runbook's messages (rollback in progress: service, reason, impact;
// completed; failed: escalate), and a failing, slow or absent receiver never blocks or delays a rollback.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/pipeline.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications, type Notification, type Notifier } from '../../src/notify/notifier.js';
import { SlackNotifier } from '../../src/notify/slack.js';
import { WebhookNotifier } from '../../src/notify/webhook.js';
import { MemoryStore } from '../../src/store/memory.js';
import { metricValue } from '../support/app.js';
import { FakeDeploymentAction, FakePrometheus, firing, rules } from '../support/engine.js';
import { freePort } from '../support/ports.js';

// A port nothing listens on (connection refused).
const refusedPort = await freePort();

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A local receiver: `behaviour` answers each request (default 200 "ok"). */
async function receiver(t: Test, behaviour: 'ok' | 'fail' | 'hang' = 'ok') {
  const got: Received[] = [];
  const hanging = new Set<import('node:http').ServerResponse>();
  const server: Server = createServer((req, res) => {
    let b = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (b += d));
    req.on('end', () => {
      got.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(b) as Record<string, unknown> });
      if (behaviour === 'ok') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      else if (behaviour === 'fail') res.writeHead(500, { 'content-type': 'text/plain' }).end('receiver broken');
      else hanging.add(res); // never answers
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const port = (server.address() as { port: number }).port;
  return { got, url: (path: string) => `http://127.0.0.1:${port}${path}` };
}

const sample: Notification = {
  kind: 'rollback_started',
  severity: 'warning',
  title: 'Rollback in progress: Deployment/shop/checkout',
  lines: ['Service: Deployment/shop/checkout', 'Reason: HighErrorRate (value 0.2, limit 0.05)', 'Impact: 20% of requests to shop/checkout fail with 5xx', 'Action: Deployment shop/checkout: revision 2 -> 1'],
  recordId: 'rb-1',
  target: 'Deployment/shop/checkout',
  rule: 'error-rate-above-5pct',
  link: 'https://rollguard.example/v1/rollbacks/rb-1/report',
  at: Date.UTC(2026, 10, 23, 14, 30),
};

t.test('Slack-compatible incoming webhook: text and a mrkdwn section, one bullet per line, the record link', async (t) => {
  const r = await receiver(t);
  await new SlackNotifier(r.url('/services/T000/B000/XXX')).send(sample, AbortSignal.timeout(5000));
  t.equal(r.got.length, 1);
  const { path, headers, body } = r.got[0]!;
  t.equal(path, '/services/T000/B000/XXX');
  t.match(headers['content-type'], /^application\/json/);
  const text = body.text as string;
  t.match(text, /^:warning: \*Rollback in progress: Deployment\/shop\/checkout\*\n/);
  t.match(text, /• Service: Deployment\/shop\/checkout\n• Reason: HighErrorRate \(value 0\.2, limit 0\.05\)\n• Impact: 20% of requests/);
  t.match(text, /<https:\/\/rollguard\.example\/v1\/rollbacks\/rb-1\/report\|Rollback record>$/);
  t.same(body.blocks, [{ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } }], 'blocks carry the same text (Slack shows blocks, Mattermost and Rocket.Chat the text)');
});

t.test('generic JSON webhook: the notification as it is, versioned, with an ISO time', async (t) => {
  const r = await receiver(t);
  await new WebhookNotifier(r.url('/hook')).send(sample, AbortSignal.timeout(5000));
  t.equal(r.got.length, 1);
  t.match(r.got[0]!.headers['content-type'], /^application\/json/);
  t.same(r.got[0]!.body, { version: '1', ...sample, at: '2026-11-23T14:30:00.000Z' });
});

t.test('a receiver answering 500 is an error for the notifier (counted as failed, never thrown at the caller)', async (t) => {
  const r = await receiver(t, 'fail');
  await t.rejects(new WebhookNotifier(r.url('/hook')).send(sample, AbortSignal.timeout(5000)), /answered 500/);
  const metrics = createMetrics({ defaults: false });
  const n = new Notifications([new WebhookNotifier(r.url('/hook')), new SlackNotifier(r.url('/slack'))], pino({ level: 'silent' }), metrics, 2000);
  n.emit(sample);
  // emit() does not wait for the sends: when it returns, neither failure has been counted yet.
  t.equal((await metricValue(metrics, 'rollguard_notifications_total', { notifier: 'webhook', outcome: 'failed' })) ?? 0, 0, 'emit returns before the send ends');
  await n.flush();
  t.equal(await metricValue(metrics, 'rollguard_notifications_total', { notifier: 'webhook', outcome: 'failed' }), 1);
  t.equal(await metricValue(metrics, 'rollguard_notifications_total', { notifier: 'slack', outcome: 'failed' }), 1);
});

/** An engine with real notifiers (the engine's own wiring, as serve builds it). */
function engineWith(notifiers: Notifier[], timeoutMs: number) {
  const config = loadConfig({ DRY_RUN: 'false', RECOVERY_TIMEOUT: '300ms', RECOVERY_POLL: '20ms', LOCK_TTL: '2s', EXTERNAL_URL: 'https://rollguard.example' });
  const metrics = createMetrics({ defaults: false });
  const logger = pino({ level: 'silent' });
  const notifications = new Notifications(notifiers, logger, metrics, timeoutMs);
  const action = new FakeDeploymentAction();
  const prometheus = new FakePrometheus();
  const engine = new Engine({ config, store: new MemoryStore(), metrics, logger, rules: { rules: rules() }, prometheus, kube: null, actions: { Deployment: action }, notifications, owner: 'replica-a' });
  let n = 0;
  const deliver = async (alert = firing('HighErrorRate')) => {
    await engine.handle({ id: `ev-${++n}`, alert, deliveries: 1 });
    await engine.idle(); // verification runs in the background once the cluster is changed
  };
  // The error rate falls once the undo is applied.
  const execute = action.execute.bind(action);
  action.execute = async (p, c) => {
    const r = await execute(p, c);
    if (recovers) prometheus.value = 0.0002;
    return r;
  };
  let recovers = true;
  return { engine, metrics, notifications, action, prometheus, deliver, noRecovery: () => (recovers = false) };
}

t.test("a rollback's notifications, end to end through both notifiers: the runbook's messages", async (t) => {
  const r = await receiver(t);
  const e = engineWith([new SlackNotifier(r.url('/slack')), new WebhookNotifier(r.url('/hook'))], 5000);
  e.prometheus.value = 0.2;
  await e.deliver(firing('HighErrorRate', 'checkout', { annotations: { summary: '20% of requests to prod/checkout fail with 5xx' } }));
  await e.notifications.flush();
  const hooks = r.got.filter((g) => g.path === '/hook').map((g) => g.body as unknown as Notification & { at: string });
  const slack = r.got.filter((g) => g.path === '/slack').map((g) => g.body.text as string);
  t.same(hooks.map((h) => h.kind), ['rollback_started', 'rollback_succeeded']);
  t.equal(slack.length, 2);

  // "ROLLBACK IN PROGRESS / Service / Reason / Impact" (the runbook's Slack template)
  const started = hooks[0]!;
  t.equal(started.title, 'Rollback in progress: Deployment/prod/checkout');
  t.equal(started.severity, 'warning');
  t.match(started.lines.join('\n'), /^Service: Deployment\/prod\/checkout$/m);
  t.match(started.lines.join('\n'), /^Reason: HighErrorRate \(error rate 20\.00%, limit 5\.00%\)$/m, 'the reason shows the value that failed and the limit');
  t.match(started.lines.join('\n'), /^ETA: rollout within /m);
  t.match(started.lines.join('\n'), /^Impact: 20% of requests to prod\/checkout fail with 5xx$/m, "impact from the alert's summary");
  t.match(started.lines.join('\n'), /^Action: Deployment prod\/checkout: revision 2 -> 1$/m);
  t.equal(started.rule, 'error-rate');
  t.match(started.link, /^https:\/\/rollguard\.example\/v1\/rollbacks\/rb-[^/]+\/report$/);
  t.match(slack[0]!, /^:warning: \*Rollback in progress: Deployment\/prod\/checkout\*\n• Service: Deployment\/prod\/checkout\n• Reason: HighErrorRate/);

  // "Rollback completed ... Error rate ... All services healthy" (the runbook's completion message)
  const done = hooks[1]!;
  t.equal(done.title, 'Rollback completed: Deployment/prod/checkout');
  t.equal(done.severity, 'info');
  t.match(done.lines.join('\n'), /rollout complete and the trigger cleared/);
  t.match(done.lines.join('\n'), /^Error rate: 0\.020% \(limit 5\.00%\)$/m, 'the error rate after recovery is in the message');
  t.match(done.lines.join('\n'), /^Health: rollout complete/m);
  t.match(slack[1]!, /^:white_check_mark: \*Rollback completed: Deployment\/prod\/checkout\*/);
});

t.test('a rollback that does not recover the service says escalate (critical)', async (t) => {
  const r = await receiver(t);
  const e = engineWith([new WebhookNotifier(r.url('/hook'))], 5000);
  e.prometheus.value = 0.3;
  e.noRecovery();
  await e.deliver();
  await e.notifications.flush();
  const hooks = r.got.map((g) => g.body as unknown as Notification);
  t.same(hooks.map((h) => h.kind), ['rollback_started', 'rollback_failed']);
  const failed = hooks[1]!;
  t.equal(failed.severity, 'critical');
  t.match(failed.title, /did not recover the service: escalate$/);
  t.match(failed.lines.join('\n'), /trigger still holds/);
  t.match(failed.lines.join('\n'), /Failed Rollback Recovery/);
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'rollback_failed' }), 1);
});

for (const behaviour of ['fail', 'hang', 'refused'] as const) {
  t.test(`a receiver that ${behaviour === 'fail' ? 'answers 500' : behaviour === 'hang' ? 'never answers' : 'refuses connections'} neither blocks nor delays the rollback`, async (t) => {
    const target = behaviour === 'refused' ? { got: [] as Received[], url: (p: string) => `http://127.0.0.1:${refusedPort}${p}` } : await receiver(t, behaviour);
    const e = engineWith([new SlackNotifier(target.url('/slack')), new WebhookNotifier(target.url('/hook'))], 1500);
    e.prometheus.value = 0.2;
    await e.deliver();
    const [rec] = await e.engine.records.list({});
    t.equal(rec!.state, 'succeeded', 'the rollback completes');
    t.equal(e.action.executed.length, 1, 'the undo was applied');
    if (behaviour === 'hang') {
      // The rollback ended while every send to the hanging receiver was still open (notify timeout 1.5 s).
      t.equal((await metricValue(e.metrics, 'rollguard_notifications_total', { notifier: 'webhook', outcome: 'failed' })) ?? 0, 0, 'the rollback did not wait for the hanging receiver');
    }
    await e.notifications.flush();
    t.equal(await metricValue(e.metrics, 'rollguard_notifications_total', { notifier: 'webhook', outcome: 'failed' }), 2);
    t.equal(await metricValue(e.metrics, 'rollguard_notifications_total', { notifier: 'slack', outcome: 'failed' }), 2);
    t.equal(await metricValue(e.metrics, 'rollguard_rollbacks_total', { rule: 'error-rate', outcome: 'succeeded', kind: 'Deployment', namespace: 'prod' }), 1);
  });
}

t.test('emit returns at once even while a notifier hangs, and a good notifier beside it still delivers', async (t) => {
  const bad = await receiver(t, 'hang');
  const good = await receiver(t);
  const metrics = createMetrics({ defaults: false });
  const n = new Notifications([new WebhookNotifier(bad.url('/hook')), new SlackNotifier(good.url('/slack'))], pino({ level: 'silent' }), metrics, 800);
  for (let i = 0; i < 20; i++) n.emit({ ...sample, recordId: `rb-${i}` });
  // The good receiver gets all twenty while the hanging one still holds every one of its sends.
  while (good.got.length < 20) await new Promise((r) => setTimeout(r, 10));
  t.equal((await metricValue(metrics, 'rollguard_notifications_total', { notifier: 'webhook', outcome: 'failed' })) ?? 0, 0, 'the hanging sends are still open');
  await n.flush();
  t.equal(good.got.length, 20, 'the working receiver got every message');
  t.equal(await metricValue(metrics, 'rollguard_notifications_total', { notifier: 'slack', outcome: 'sent' }), 20);
  t.equal(await metricValue(metrics, 'rollguard_notifications_total', { notifier: 'webhook', outcome: 'failed' }), 20);
});

