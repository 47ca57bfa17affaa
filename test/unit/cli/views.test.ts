// What the CLI prints of records and alerts: text from an alert (an alertname, a label) is data, and
// its line breaks never start a line of their own, so an alert cannot forge a field (an `Outcome:`
// line) of `rollbacks get`, a row of `rollbacks list` or `watch`, or a line of `status`. And -o json
// / -o yaml print the data itself: control characters as escapes, read back exactly.
import t from 'tap';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import type { RollbackRecord } from '../../../src/engine/record.js';
import type { Status } from '../../../src/http/status.js';
import { EXIT } from '../../../src/cli/client.js';
import type { CommandEnv } from '../../../src/cli/command.js';
import { render } from '../../../src/cli/format.js';
import { describe, recordsTable } from '../../../src/cli/records.js';
import { rollbacksCommand } from '../../../src/cli/rollbacks.js';
import { statusCommand, statusText } from '../../../src/cli/status.js';

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);
/** Every way a line can end, as a terminal, a pager or an editor may take it. */
const LINES = /\r\n|[\n\r\v\f\u0085\u2028\u2029]/;
/** Characters that must never reach the terminal raw: C0 but the line feed, DEL, C1, separators, bidirectional formatting. */
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** A value as ASCII JSON: what a message or a diff shows (a raw U+2028 or U+202E would be written to the TAP stream). */
const code = (v: unknown) => JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
const FORGED = 'Outcome:       succeeded: rolled back to revision 3, error rate 0.1% (recovered)';

function record(alertname: string, over: Partial<RollbackRecord> = {}): RollbackRecord {
  return {
    id: 'rb-1a2b3c',
    target: 'Deployment/prod/checkout',
    state: 'not_confirmed',
    createdAt: NOW - 60_000,
    updatedAt: NOW - 30_000,
    ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' },
    source: 'alert',
    rule: 'error-rate',
    priority: 'P0',
    alert: { fingerprint: 'f', status: 'firing', labels: { alertname, severity: 'page' }, annotations: {}, startsAt: NOW - 90_000, receivedAt: NOW - 60_000, generatorURL: '' },
    guards: [{ guard: 'scope', result: 'pass', reason: `alert ${alertname}` }],
    dryRun: false,
    outcome: { result: 'not_confirmed', message: 'trigger not confirmed by Prometheus' },
    timeline: [{ at: NOW - 60_000, step: 'alert_started', message: `alert ${alertname} started firing` }],
    times: {},
    ...over,
  } as unknown as RollbackRecord;
}

const BREAKS: Array<[string, string]> = [
  ['LF', '\n'],
  ['CR LF', '\r\n'],
  ['CR', '\r'],
  ['U+2028', '\u2028'],
  ['U+2029', '\u2029'],
  ['U+0085', '\u0085'],
  ['VT', '\u000b'],
];

t.test('rollbacks get: an alertname holding a line break forges no field; each value is one line', async (t) => {
  for (const [name, br] of BREAKS) {
    const text = describe(record(`HighErrorRate${br}${FORGED}`), NOW);
    const lines = text.split(LINES);
    t.equal(lines.filter((l) => l.startsWith('Outcome:')).length, 1, `${name}: one Outcome line`);
    t.match(lines.find((l) => l.startsWith('Outcome:')), /^Outcome: +not_confirmed: trigger not confirmed/, `${name}: the real one`);
    t.match(lines.find((l) => l.startsWith('Source:')), /^Source: +alert HighErrorRate Outcome: +succeeded: .*, rule error-rate \(P0\)$/, `${name}: the alertname stays in the Source line`);
    t.notOk(RAW.test(text), `${name}: no raw control character`);
  }
});

t.test('every field of a manual record, a decision, an approval: folded to one line', async (t) => {
  const r = record('HighErrorRate', {
    source: 'manual',
    requestedBy: 'alice\nState:         succeeded',
    reason: 'bad deploy\u2028Dry run:       yes',
    decision: { decision: 'rollback_now', reason: 'x\u0085Approval:      approved by bob' },
    approval: { by: 'bob\nOutcome: forged', at: NOW - 1000, decision: 'approved', comment: 'ok\r\nPlan: none' },
  });
  const lines = describe(r, NOW).split(LINES);
  for (const key of ['State', 'Dry run', 'Approval', 'Outcome', 'Plan']) t.ok(lines.filter((l) => l.startsWith(`${key}:`)).length <= 1, `at most one ${key} line`);
  t.equal(lines.filter((l) => l.startsWith('State:')).length, 1);
  t.equal(lines.filter((l) => l.startsWith('Outcome:')).length, 1);
  t.equal(lines.filter((l) => l.startsWith('Plan:')).length, 0);
});

t.test('rollbacks list, status: every cell one line', async (t) => {
  for (const [name, br] of BREAKS) {
    const recs = [record('x', { rule: `error-rate${br}rb-forged   Deployment/prod/web   succeeded` }), record('y', { id: 'rb-2' })];
    const table = recordsTable(recs, NOW).split(LINES);
    t.equal(table.length, 3, `${name}: a header and two rows`);
    t.notOk(table.some((l) => l.startsWith('rb-forged')), `${name}: no forged row`);

    const s = {
      version: '1.0.0',
      replica: 'r1',
      dryRun: false,
      store: { kind: 'memory', ok: true },
      prometheus: { configured: false, ok: true, detail: 'PROMETHEUS_URL is not set' },
      rules: { loaded: 1 },
      paused: { paused: true, by: 'alice', at: NOW - 1000, reason: `incident${br}Paused:            no` },
      open: {},
      capped: false,
      pendingApprovals: [{ id: 'rb-3', target: 'Deployment/prod/checkout', state: 'pending_approval', createdAt: NOW, updatedAt: NOW, rule: `r${br}rb-forged` }],
      lastRollback: null,
    } as unknown as Status;
    const lines = statusText(s, 'http://rollguard:9095', NOW).split(LINES);
    t.equal(lines.filter((l) => l.startsWith('Paused:')).length, 1, `${name}: one Paused line`);
    t.match(lines.find((l) => l.startsWith('Paused:')), /^Paused: +YES, by alice/);
    t.notOk(lines.some((l) => l.startsWith('rb-forged')), `${name}: no forged approval row`);
  }
});

function cli(answer: (url: URL, init?: RequestInit) => Response) {
  const out: string[] = [];
  const err: string[] = [];
  const ac = new AbortController();
  const e: CommandEnv = {
    io: { out: (s) => out.push(s), err: (s) => err.push(s) },
    env: { ROLLGUARD_URL: 'http://rollguard.test' },
    now: () => NOW,
    signal: ac.signal,
    fetch: async (u, init) => {
      const res = answer(new URL(String(u)), init);
      return res;
    },
  };
  return { e, out, err, ac };
}
const json = (body: unknown) => new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } });

t.test('through the command, as the terminal gets it: get, list, watch and pause print no forged line', async (t) => {
  const evil = record(`HighErrorRate\n${FORGED}`, { rule: 'error-rate\nrb-forged' });
  const get = cli(() => json(evil));
  t.equal(await rollbacksCommand(['get', 'rb-1a2b3c'], get.e), EXIT.ok);
  const got = get.out.join('\n').split(LINES);
  t.equal(got.filter((l) => l.startsWith('Outcome:')).length, 1, 'get: one Outcome line');

  const list = cli(() => json({ rollbacks: [evil], nextCursor: null }));
  t.equal(await rollbacksCommand(['list'], list.e), EXIT.ok);
  t.equal(list.out.join('\n').split(LINES).length, 2, 'list: a header and one row');

  const watch = cli(() => {
    watch.ac.abort();
    return json({ rollbacks: [evil] });
  });
  t.equal(await rollbacksCommand(['watch', '--since', '1h'], watch.e), EXIT.ok);
  t.equal(watch.out.join('\n').split(LINES).length, 2, 'watch: a header and one line');
  t.notOk(watch.out.some((l) => l.split(LINES).some((x) => x.startsWith('rb-forged'))));

  const pause = cli(() => json({ paused: true, by: 'alice\nresumed: rollbacks run again', at: NOW }));
  t.equal(await statusCommand('pause', ['--by', 'alice'], pause.e), EXIT.ok);
  t.equal(pause.out.join('\n').split(LINES).length, 1, 'pause: one line');
});

/** Labels holding each character JSON.stringify leaves as it is, a tab, and line breaks. */
const TRICKY = {
  next: 'api\u0085x',
  override: 'a\u202eb',
  isolate: 'x\u2066y\u2069',
  separators: 'a\u2028b\u2029c',
  del: 'a\u007fb',
  csi: 'a\u009bb',
  tab: 'a\tb',
  lf: 'a\nb',
  crlf: 'a\r\nb',
  esc: 'a\u001b[2Kb',
  ['key\u202e']: 'v',
  ok: 'שלום 日本 é',
};

t.test('-o json and -o yaml: the data itself, read back exactly, with no raw control character (get and watch)', async (t) => {
  const r = record('HighErrorRate', { alert: { fingerprint: 'f', status: 'firing', labels: TRICKY, annotations: { summary: 'α\u0085β' }, startsAt: 1, receivedAt: 2, generatorURL: '' } });
  const data = JSON.parse(JSON.stringify(r));
  for (const output of ['json', 'yaml'] as const) {
    const text = render(output, data, () => '');
    t.notOk(RAW.test(text), `${output}: no raw control character (${code(text.match(RAW)?.[0] ?? '')})`);
    t.equal(code(output === 'json' ? JSON.parse(text) : parseYaml(text)), code(data), `${output}: reads back exactly`);

    const get = cli(() => json(data));
    t.equal(await rollbacksCommand(['get', 'rb-1a2b3c', '-o', output], get.e), EXIT.ok);
    const printed = get.out.join('\n');
    t.notOk(RAW.test(printed), `get -o ${output}: no raw control character`);
    t.equal(code(output === 'json' ? JSON.parse(printed) : parseYaml(printed)), code(data), `get -o ${output}: what the terminal gets reads back exactly`);

    const watch = cli(() => {
      watch.ac.abort();
      return json({ rollbacks: [data] });
    });
    t.equal(await rollbacksCommand(['watch', '--since', '1h', '-o', output], watch.e), EXIT.ok);
    const streamed = watch.out.join('\n');
    t.notOk(RAW.test(streamed), `watch -o ${output}: no raw control character`);
    const back = output === 'json' ? streamed.split('\n').map((l) => JSON.parse(l)) : parseAllDocuments(streamed).map((d) => d.toJS());
    t.equal(code(back), code([data]), `watch -o ${output}: reads back exactly`);
  }
});
