// A storm's notifications of rollbacks not done, folded into one summary a window (src/notify/fold.ts),
// row by row of its table, then through the engine: a storm over many workloads with the cluster
// budget spent is a handful of messages, and every rollback that acts or needs a human still goes out.
import { pino } from 'pino';
import t from 'tap';
import { createMetrics } from '../../../src/metrics.js';
import { Folder } from '../../../src/notify/fold.js';
import { Notifications, type Notification, type NotificationKind } from '../../../src/notify/notifier.js';
import { metricValue } from '../../support/app.js';
import { CapturingNotifier, firing, PerTargetDeploymentAction, testEngine } from '../../support/engine.js';

const note = (kind: NotificationKind, target = 'Deployment/prod/a', severity: Notification['severity'] = 'warning'): Notification => ({ kind, severity, title: `${kind} ${target}`, lines: [], target, at: 0 });

t.test('blocked, dry run and notify-only past the limit are folded; every other kind is always sent', async (t) => {
  const f = new Folder(2, 60_000);
  t.same(f.admit(note('rollback_blocked'), 0), { send: true });
  t.same(f.admit(note('dry_run'), 1), { send: true });
  t.same(f.admit(note('notify_only', 'Deployment/prod/b'), 2), { send: false, summaryAt: 60_000 }, 'the first fold says when its summary is due');
  t.same(f.admit(note('rollback_blocked', 'Deployment/prod/c'), 3), { send: false }, 'later folds do not');
  for (const kind of ['rollback_started', 'rollback_succeeded', 'rollback_failed', 'rollback_unverified', 'rollback_interrupted', 'rollback_refused', 'trigger_error', 'trigger_busy', 'held_too_long', 'approval_requested', 'event_dead'] as const) {
    t.same(f.admit(note(kind), 4), { send: true }, `${kind} is never folded`);
  }
  t.equal(f.pending, 2);
});

t.test('the summary: counts by kind, the first five targets named, where the records are; then a new window', async (t) => {
  const f = new Folder(1, 60_000, 'https://rollguard.example/');
  f.admit(note('rollback_blocked', 'Deployment/prod/t0'), 0);
  for (let i = 1; i <= 8; i++) f.admit(note('rollback_blocked', `Deployment/prod/t${i}`), i);
  f.admit(note('rollback_blocked', 'Deployment/prod/t1'), 9); // a target twice is named once
  f.admit(note('dry_run', 'Deployment/prod/d'), 10);
  const s = f.summary(60_000)!;
  t.equal(s.kind, 'notifications_folded');
  t.equal(s.severity, 'warning');
  t.match(s.title, /^10 more notifications of rollbacks not done/);
  t.equal(s.lines[0], 'rollback_blocked: 9 (Deployment/prod/t1, Deployment/prod/t2, Deployment/prod/t3, Deployment/prod/t4, Deployment/prod/t5; 3 more for other targets)');
  t.equal(s.lines[1], 'dry_run: 1 (Deployment/prod/d)');
  t.equal(s.lines[2], 'Their records: https://rollguard.example/v1/rollbacks?state=blocked https://rollguard.example/v1/rollbacks?state=dry_run');
  t.match(s.lines[3], /NOTIFY_FOLD_AFTER/);
  t.equal(f.summary(60_001), null, 'nothing folded since: no summary');
  t.same(f.admit(note('rollback_blocked'), 60_002), { send: true }, 'a new window sends again up to the limit');
  t.same(f.admit(note('rollback_blocked'), 60_003), { send: false, summaryAt: 120_002 });
});

t.test('a window with nothing folded ends by itself; the limit counts foldable notifications only', async (t) => {
  const f = new Folder(2, 1_000);
  t.same(f.admit(note('rollback_blocked'), 0), { send: true });
  for (let i = 0; i < 50; i++) f.admit(note('rollback_started'), 1);
  t.same(f.admit(note('rollback_blocked'), 2), { send: true }, 'started ones did not use up the limit');
  t.same(f.admit(note('rollback_blocked'), 999), { send: false, summaryAt: 1_000 });
  f.summary(1_000);
  t.same(f.admit(note('rollback_blocked'), 5_000), { send: true });
  t.same(f.admit(note('rollback_blocked'), 5_001), { send: true });
  t.same(f.admit(note('rollback_blocked'), 6_001), { send: true }, 'past the window with nothing folded: a new one');
});

t.test('Notifications: the summary goes out at the end of the window, by itself; folds are counted by kind', async (t) => {
  const c = new CapturingNotifier();
  const metrics = createMetrics({ defaults: false });
  const n = new Notifications([c], pino({ level: 'silent' }), metrics, 5000, { foldAfter: 2, foldWindowMs: 150 });
  for (let i = 0; i < 7; i++) n.emit(note('rollback_blocked', `Deployment/prod/t${i}`));
  n.emit(note('rollback_failed', 'Deployment/prod/x', 'critical'));
  // (the capturing notifier records a send as it starts: what emit sent is there at once)
  t.same(c.sent.map((s) => s.kind), ['rollback_blocked', 'rollback_blocked', 'rollback_failed'], 'two blocked, then the escalation at once');
  while (c.sent.length < 4) await new Promise((r) => setTimeout(r, 10));
  t.equal(c.sent[3]!.kind, 'notifications_folded', 'the summary came with no further notification');
  t.match(c.sent[3]!.lines[0], /^rollback_blocked: 5 \(/);
  t.equal(await metricValue(metrics, 'rollguard_notifications_folded_total', { kind: 'rollback_blocked' }), 5);
  await n.flush();
  t.equal(c.sent.length, 4, 'nothing more to say at the flush');
});

t.test('Notifications: a shutdown (flush) sends what was folded at once', async (t) => {
  const c = new CapturingNotifier();
  const n = new Notifications([c], pino({ level: 'silent' }), createMetrics({ defaults: false }), 5000, { foldAfter: 1, foldWindowMs: 3_600_000 });
  n.emit(note('dry_run'));
  n.emit(note('dry_run', 'Deployment/prod/b'));
  await n.flush();
  t.same(c.sent.map((s) => s.kind), ['dry_run', 'notifications_folded']);
});

t.test('Notifications: a notification folded while a flush runs (a handler still running at shutdown) is summed up at once, not left to a timer the exit would lose', async (t) => {
  const c = new CapturingNotifier();
  // the first send hangs until released; later ones answer at once
  let release!: () => void;
  let sends = 0;
  const slow = { name: 'slow', send: () => (sends++ === 0 ? new Promise<void>((r) => (release = r)) : Promise.resolve()) };
  const n = new Notifications([c, slow], pino({ level: 'silent' }), createMetrics({ defaults: false }), 5000, { foldAfter: 1, foldWindowMs: 3_600_000 });
  n.emit(note('dry_run'));
  const flushing = n.flush();
  n.emit(note('dry_run', 'Deployment/prod/late'));
  release();
  await flushing;
  t.same(c.sent.map((s) => s.kind), ['dry_run', 'notifications_folded']);
  t.match(c.sent[1]!.lines[0], /Deployment\/prod\/late/);
});

t.test('without folding (tests, the default of Notifications alone) every notification is sent', async (t) => {
  const c = new CapturingNotifier();
  const n = new Notifications([c], pino({ level: 'silent' }), createMetrics({ defaults: false }));
  for (let i = 0; i < 50; i++) n.emit(note('rollback_blocked', `Deployment/prod/t${i}`));
  await n.flush();
  t.equal(c.sent.length, 50);
});

t.test('through the engine: 30 workloads alerting with the cluster budget at 2: two rollbacks said in full, the blocked ones folded past the limit', async (t) => {
  const e = testEngine({ env: { BUDGET_CLUSTER_PER_HOUR: '2' }, action: new PerTargetDeploymentAction(), notify: { foldAfter: 5, foldWindowMs: 3_600_000 } });
  e.prometheus!.value = 0.2;
  for (let i = 0; i < 30; i++) await e.deliver(firing('HighErrorRate', `app-${i}`));
  await e.notifications.flush();
  const kinds = e.notifier.sent.map((s) => s.kind);
  t.equal(kinds.filter((k) => k === 'rollback_started').length, 2, 'each rollback done is said');
  t.equal(kinds.filter((k) => k === 'rollback_failed').length, 2, 'and each escalation (the error rate never falls here)');
  t.equal(kinds.filter((k) => k === 'rollback_blocked').length, 5, 'the first five blocked are said one by one');
  const summaries = e.notifier.sent.filter((s) => s.kind === 'notifications_folded');
  t.equal(summaries.length, 1, 'one summary');
  t.match(summaries[0]!.lines[0], /^rollback_blocked: 23 \(Deployment\/prod\/app-7, /, 'the other 23, the first targets named');
  const records = await e.engine.records.list({ state: 'blocked', limit: 100 });
  t.equal(records.length, 28, 'every blocked alert still has its record');
  t.equal(await metricValue(e.metrics, 'rollguard_notifications_folded_total', { kind: 'rollback_blocked' }), 23);
});

t.test("serve's notifications (createNotifications): the config's retries and folding, with their defaults and bounds", async (t) => {
  const { loadConfig } = await import('../../../src/config.js');
  const { createNotifications } = await import('../../../src/notify/index.js');
  const defaults = loadConfig({});
  t.equal(defaults.NOTIFY_RETRY_FOR, 120_000, 'NOTIFY_RETRY_FOR: 2m by default');
  t.equal(defaults.NOTIFY_FOLD_AFTER, 20, 'NOTIFY_FOLD_AFTER: 20 by default');
  t.equal(loadConfig({ NOTIFY_RETRY_FOR: '0' }).NOTIFY_RETRY_FOR, 0, 'NOTIFY_RETRY_FOR 0: one attempt');
  t.throws(() => loadConfig({ NOTIFY_RETRY_FOR: 'soon' }), { name: 'ConfigError', message: /NOTIFY_RETRY_FOR/ });
  t.throws(() => loadConfig({ NOTIFY_FOLD_AFTER: '0' }), { name: 'ConfigError', message: /NOTIFY_FOLD_AFTER/ });
  t.throws(() => loadConfig({ NOTIFY_FOLD_AFTER: 'many' }), { name: 'ConfigError', message: /NOTIFY_FOLD_AFTER/ });

  // folding as configured: 2 sent, the third folded
  const c = new CapturingNotifier();
  const metrics = createMetrics({ defaults: false });
  const n = createNotifications(loadConfig({ NOTIFY_FOLD_AFTER: '2', EXTERNAL_URL: 'https://rg.example' }), pino({ level: 'silent' }), metrics, [c]);
  for (let i = 0; i < 3; i++) n.emit(note('rollback_blocked', `Deployment/prod/t${i}`));
  await n.flush();
  t.same(c.sent.map((s) => s.kind), ['rollback_blocked', 'rollback_blocked', 'notifications_folded']);
  t.match(c.sent[2]!.lines.join('\n'), /https:\/\/rg\.example\/v1\/rollbacks\?state=blocked/, 'links on EXTERNAL_URL');

  // retries as configured: a failing notifier is tried again (settled() waits for the retry)
  let calls = 0;
  const { NotifyError } = await import('../../../src/notify/retry.js');
  const flaky = { name: 'flaky', send: async () => { if (++calls === 1) throw new NotifyError('answered 503', true); } };
  const r = createNotifications(loadConfig({ NOTIFY_RETRY_FOR: '10s' }), pino({ level: 'silent' }), createMetrics({ defaults: false }), [flaky]);
  r.emit(note('rollback_failed', 'Deployment/prod/x', 'critical'));
  await r.settled();
  t.equal(calls, 2, 'tried again after the first 503');
});
