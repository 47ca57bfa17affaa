import t from 'tap';
import { forLog, keptAnnotations, refusedBySetting, splitByLimits } from '../../src/alertmanager/limits.js';
import { normaliseAlert } from '../../src/alertmanager/alert.js';

t.test('kept annotations are cut to the byte limit without splitting a character', async (t) => {
  const l = { annotations: ['summary', 'description'], maxAnnotationBytes: 5 };
  t.same(keptAnnotations({ summary: 'abcdefgh', other: 'x' }, l), { summary: 'abcde' }, 'cut, and the others dropped');
  t.same(keptAnnotations({ summary: 'ab€cd' }, l), { summary: 'ab€' }, '€ is 3 bytes: 5 bytes exactly');
  t.same(keptAnnotations({ summary: 'abc€' }, l), { summary: 'abc' }, 'a character that does not fit is left out whole');
  t.same(keptAnnotations({ description: 'short' }, l), { description: 'short' });
});

t.test('splitByLimits: each alert over a per-alert limit is refused alone, by index, the others kept in order up to maxAlerts', async (t) => {
  const l = { maxAlerts: 2, maxLabels: 3, maxLabelBytes: 300 };
  const alert = (labels: Record<string, string>, fingerprint = 'fp') => ({ labels, fingerprint, generatorURL: '' });
  const longName = 'n'.repeat(250);
  const alerts = [
    alert({ alertname: 'A' }),
    alert({ alertname: 'B', [longName]: 'v'.repeat(301) }),
    alert({ alertname: 'C', a: '1', b: '2', c: '3' }),
    alert({ alertname: 'D' }, 'f'.repeat(301)),
    alert({ alertname: 'E' }),
    alert({ alertname: 'F' }),
  ];
  const { kept, refused } = splitByLimits(alerts, l, (i) => `body.alerts[${i}]`);
  t.same(kept.map((a) => a.labels.alertname), ['A', 'E'], 'the alerts within the limits, in order');
  t.same(refused.map((r) => [r.index, r.alertname, r.setting]), [[1, 'B', 'ALERT_MAX_LABEL_BYTES'], [2, 'C', 'ALERT_MAX_LABELS'], [3, 'D', 'ALERT_MAX_LABEL_BYTES'], [5, 'F', 'ALERT_MAX_PER_BATCH']]);
  t.equal(refused[0]!.message, `body.alerts[1].labels.${'n'.repeat(200)}…: 301 bytes, over the 300 a label value may have (ALERT_MAX_LABEL_BYTES)`, 'a long label name is cut in the message, the value is not in it');
  t.same([...refusedBySetting(refused)], [['ALERT_MAX_LABEL_BYTES', 2], ['ALERT_MAX_LABELS', 1], ['ALERT_MAX_PER_BATCH', 1]]);
  t.equal(forLog('x'.repeat(201)).length, 201, 'forLog: 200 characters and the mark');
});

t.test('splitByLimits with the clock: keptStartsAt holds each kept alert\'s startsAt parsed once, beside it; normaliseAlert takes it', async (t) => {
  const now = Date.parse('2026-12-06T12:00:00Z');
  const l = { maxAlerts: 10, maxLabels: 5, maxLabelBytes: 300, maxClockSkewMs: 60_000 };
  const alert = (name: string, startsAt: string) => ({ labels: { alertname: name }, fingerprint: name, generatorURL: '', startsAt });
  const alerts = [alert('A', '2026-12-06T11:59:00Z'), alert('B', '2026-12-06T12:05:00Z'), alert('C', '2026-12-06T13:00:30+01:00')];
  const { kept, keptStartsAt, refused } = splitByLimits(alerts, l, (i) => `body.alerts[${i}]`, now);
  t.same(kept.map((a) => a.labels.alertname), ['A', 'C']);
  t.same(keptStartsAt, [now - 60_000, now + 30_000], 'beside kept, the refused one left out; an offset is read as Date.parse reads it');
  t.same(refused.map((r) => [r.index, r.setting]), [[1, 'ALERT_MAX_CLOCK_SKEW']]);
  t.match(refused[0]!.message, /body\.alerts\[1\]\.startsAt: 2026-12-06T12:05:00\.000Z is 300 s ahead of rollguard's clock/);
  t.same(splitByLimits(alerts, l, (i) => `${i}`).keptStartsAt, [undefined, undefined, undefined], 'without the clock nothing is parsed');
  const payload = { version: '4', groupKey: 'g', status: 'firing', receiver: 'r', groupLabels: {}, commonLabels: {}, commonAnnotations: {}, externalURL: '', truncatedAlerts: 0, alerts: [] } as unknown as Parameters<typeof normaliseAlert>[0];
  const wa = { ...alerts[2]!, status: 'firing' as const, annotations: {}, endsAt: '0001-01-01T00:00:00Z' };
  t.equal(normaliseAlert(payload, wa, now, undefined, keptStartsAt[1]).startsAt, now + 30_000);
  t.equal(normaliseAlert(payload, wa, now, undefined, 1).startsAt, 1, 'the parsed time is the one used (not parsed again)');
  t.equal(normaliseAlert(payload, wa, now).startsAt, now + 30_000, 'without it, parsed there');
});

t.test('splitByLimits: an alert whose label names and values, fingerprint and generatorURL add up to more than maxAlertBytes is refused (ALERT_MAX_BYTES)', async (t) => {
  const l = { maxAlerts: 10, maxLabels: 10, maxLabelBytes: 100, maxAlertBytes: 300 };
  const alert = (name: string, labels: Record<string, string>, generatorURL = '') => ({ labels: { alertname: name, ...labels }, fingerprint: `fp-${name}`, generatorURL });
  const alerts = [
    alert('A', { a: 'x'.repeat(100), b: 'x'.repeat(100) }),
    alert('B', { a: 'x'.repeat(100), b: 'x'.repeat(100), c: 'x'.repeat(100) }),
    alert('C', { a: 'é'.repeat(45), b: 'é'.repeat(45) }, 'http://p/'),
    alert('D', { a: 'é'.repeat(50), b: 'é'.repeat(50), c: 'é'.repeat(50) }),
    alert('E', { a: 'x'.repeat(90) }, `http://p/${'g'.repeat(90)}`),
  ];
  const { kept, refused } = splitByLimits(alerts, l, (i) => `body.alerts[${i}]`);
  t.same(kept.map((a) => a.labels.alertname), ['A', 'C', 'E'], 'within 300 bytes in all, bytes counted (é is 2)');
  t.same(refused.map((r) => [r.index, r.setting]), [[1, 'ALERT_MAX_BYTES'], [3, 'ALERT_MAX_BYTES']]);
  t.equal(refused[0]!.message, 'body.alerts[1]: 317 bytes of label names and values, fingerprint and generatorURL together, over the 300 an alert may have (ALERT_MAX_BYTES)', 'the message counts the bytes and names the setting, never a value');
  t.match(refused[1]!.message, /^body\.alerts\[3\]: 317 bytes/, 'é counted as its 2 bytes');
  t.equal(splitByLimits(alerts, { maxAlerts: 10, maxLabels: 10, maxLabelBytes: 100 }, (i) => `${i}`).refused.length, 0, 'without the limit, none refused');
});
