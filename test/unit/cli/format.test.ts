import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { clip, fields, humanDuration, relative, render, table } from '../../../src/cli/format.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

t.test("humanDuration prints ages as kubectl does (apimachinery's HumanDuration)", async (t) => {
  const cases: Array<[number, string]> = [
    [-1500, '0s'],
    [-2 * S, '<invalid>'],
    [0, '0s'],
    [45 * S, '45s'],
    [119 * S, '119s'],
    [2 * M, '2m'],
    [5 * M + 30 * S, '5m30s'],
    [10 * M, '10m'],
    [95 * M, '95m'],
    [3 * H, '3h'],
    [3 * H + 20 * M, '3h20m'],
    [20 * H, '20h'],
    [2 * D + 4 * H, '2d4h'],
    [3 * D, '3d'],
    [17 * D, '17d'],
    [400 * D, '400d'],
    [365 * 2 * D + 30 * D, '2y30d'],
    [365 * 3 * D, '3y'],
    [365 * 9 * D, '9y'],
  ];
  for (const [ms, want] of cases) t.equal(humanDuration(ms), want, `${ms} ms`);
});

t.test('relative: past, future, none', async (t) => {
  const now = 1_000_000_000_000;
  t.equal(relative(now - 5 * M, now), '5m ago');
  t.equal(relative(now + 25 * M, now), 'in 25m');
  t.equal(relative(undefined, now), '-');
});

t.test('table: every column starts at the same offset on every line; the last is not padded', async (t) => {
  const out = table(
    ['ID', 'TARGET', 'STATE'],
    [
      ['rb-1', 'Deployment/shop/checkout', 'succeeded'],
      ['rb-m-22', 'Rollout/a/b', 'pending_approval'],
    ],
  );
  const lines = out.split('\n');
  t.equal(lines.length, 3);
  for (const col of ['TARGET', 'STATE']) {
    const at = lines[0]!.indexOf(col);
    t.ok(at > 0);
    t.equal(lines[1]!.indexOf(col === 'TARGET' ? 'Deployment' : 'succeeded'), at, `${col} aligned (row 1)`);
    t.equal(lines[2]!.indexOf(col === 'TARGET' ? 'Rollout' : 'pending_approval'), at, `${col} aligned (row 2)`);
  }
  t.equal(lines[0]!.indexOf('TARGET') - 'rb-m-22'.length, 3, 'three spaces after the widest cell');
  t.notOk(lines.some((l) => l.endsWith(' ')), 'no trailing blanks');
  const wide = table(['A', 'B'], [['é→', 'x']]).split('\n');
  t.equal(wide[1]!.indexOf('x'), wide[0]!.indexOf('B'), 'widths count characters, not UTF-16 units or bytes');
});

t.test('fields: values aligned after the longest key', async (t) => {
  t.equal(fields([['ID', 'rb-1'], ['Last rollback', 'none']]), 'ID:            rb-1\nLast rollback: none');
});

t.test('clip: one line, cut with an ellipsis', async (t) => {
  t.equal(clip('a\n  b', 10), 'a b');
  t.equal(clip('abcdefghij', 5), 'abcd…');
});

t.test('render: json and yaml are the data itself, table is the human form', async (t) => {
  const data = { rollbacks: [{ id: 'rb-1', labels: { 'a.b/c': 'x: y' } }] };
  t.same(JSON.parse(render('json', data, () => 'human')), data);
  t.same(parseYaml(render('yaml', data, () => 'human')), data);
  t.equal(render('table', data, () => 'human'), 'human');
});
