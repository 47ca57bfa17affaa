// A drill's report quotes alert text (a link's detail holds the alert's labels and name, the
// timeline its messages): written as the incident report writes it, it adds no link, HTML, table
// cell, escape sequence or reversed text.
import t from 'tap';
import { drillReport } from '../../../src/drills/report.js';
import { drillWorld } from '../../support/drills.js';
import { NS } from '../actions/fixtures/objects.js';

t.test('alert text in the chain and the timeline forges no link, cell, line, escape sequence or bidirectional override', async (t) => {
  const w = drillWorld();
  t.teardown(() => w.drills.stop(1000));
  const d = await w.drills.start({ ref: { kind: 'Deployment', namespace: NS, name: 'web' }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 60_000 });
  const hostile = 'alert HighErrorRate{pod="x\u202Eevil"} [click](https://evil.example) <img src=x> | forged \u001b[2J\r\n## heading';
  const rec = structuredClone(d);
  rec.links.webhook_received = { at: Date.now(), detail: hostile };
  rec.timeline.push({ at: Date.now(), step: 'note', message: hostile });
  const report = drillReport(rec);
  t.notMatch(report, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, 'no control or bidirectional character');
  t.notMatch(report, /(?<!\\)\]\(https:\/\/evil/, 'no markdown link: its brackets escaped');
  t.notMatch(report, /(?<!\\)<img/, 'no HTML: its angle bracket escaped');
  t.notMatch(report, /^## heading/m, 'no heading of its own');
  const rows = report.split('\n').filter((l) => l.includes('forged'));
  t.equal(rows.length, 2, 'one row each: the chain and the timeline');
  for (const row of rows) t.equal(row.split(/(?<!\\)\|/).length - 2, row.startsWith('| time') || /^\| \d{4}-/.test(row) ? 3 : 4, "its table's cells only, the pipe in the text escaped");
  await w.drills.stop(1000);
});

t.test('a failed drill still restoring its workload reads failed, not running; one still watching reads running', async (t) => {
  const w = drillWorld();
  t.teardown(() => w.drills.stop(1000));
  const d = await w.drills.start({ ref: { kind: 'Deployment', namespace: NS, name: 'web' }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 60_000 });
  const watching = structuredClone(d);
  t.match(drillReport(watching), /· \*\*running\*\* ·/, 'still watching: running');
  t.match(drillReport(watching), /The drill is running\./);
  // finish() writes the result first, then restores, the drill still running meanwhile
  const restoring = structuredClone(d);
  restoring.result = { passed: false, message: 'deadline of 60s passed: the alert never fired', at: Date.now(), link: 'alert_firing' };
  const report = drillReport(restoring);
  t.match(report, /· \*\*failed\*\* \(restoring the workload\) ·/, 'the headline says failed');
  t.match(report, /Result: \*\*failed\*\* \(restoring the workload\): deadline of 60s passed/);
  t.notMatch(report, /\*\*running\*\*/, 'never running beside a failed result');
  await w.drills.stop(1000);
});
