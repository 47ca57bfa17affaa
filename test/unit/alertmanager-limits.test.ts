import t from 'tap';
import { forLog, keptAnnotations, refusedBySetting, splitByLimits } from '../../src/alertmanager/limits.js';

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
