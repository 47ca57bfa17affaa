import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { clip, fields, humanDuration, relative, render, table, yamlText } from '../../../src/cli/format.js';
import { withoutControls } from '../../../src/plain-text.js';

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

/** What `-o yaml` prints (io.out adds the line feed; the terminal filter passes it), read back. */
function readBack(data: unknown): unknown {
  const text = yamlText(data);
  const printed = withoutControls(`${text}\n`);
  // the text alone (a caller that does not add the line feed) reads back the same
  return { printed: parseYaml(printed), alone: parseYaml(text) };
}

t.test('yamlText reads back to exactly the data: line feeds, no-break spaces and byte order marks at the ends are kept', async (t) => {
  const cases: unknown[] = [
    { a: 'x\n\n' },
    { a: 'x\n\n\n' },
    { a: '\n' },
    { a: '\n\n' },
    { a: 'x\n \n' },
    { a: 'x\n' },
    { a: 'api\u00a0' },
    { a: '\u00a0api' },
    { a: 'api\u3000' },
    { a: '\u2003' },
    { a: '\ufeff' },
    { a: 'x\ufeff' },
    { '\ufeffk': 'v' },
    { '\ufeff': 1 },
    { '\ufeff`': 1 },
    { a: ['x\n\n', 'y\u00a0'] },
    'x\n\n',
    '\ufeff',
  ];
  for (const data of cases) {
    const { printed, alone } = readBack(data) as { printed: unknown; alone: unknown };
    t.same(printed, data, `printed: ${JSON.stringify(data)}`);
    t.same(alone, data, `alone: ${JSON.stringify(data)}`);
  }
});

t.test('yamlText reads back to exactly the data: random strings of the characters YAML treats specially', async (t) => {
  // a fixed sequence (xorshift32 from a fixed start): the same strings on every run
  let state = 0x2f6b1d3;
  const next = (n: number) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const chars = ['\t', '\r', '\n', '\u0085', '\u2028', '\u202e', '\u001b', '\u007f', '\u009b', ' ', ':', '#', '-', '"', "'", '\\', 'a', '\ufeff', '\u00a0', '\u3000', '%', '!', '&', '*', '|', '>', '{', '[', '?', '@', '`'];
  const str = () => Array.from({ length: next(9) }, () => chars[next(chars.length)]).join('');
  const value = (depth: number): unknown => {
    const k = next(depth > 2 ? 3 : 5);
    if (k === 0) return str();
    if (k === 1) return next(1000) - 500;
    if (k === 2) return next(2) === 0 ? null : true;
    if (k === 3) return Array.from({ length: next(4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: next(4) }, () => [str(), value(depth + 1)]));
  };
  let differ = 0;
  for (let i = 0; i < 3000; i++) {
    const data = Object.fromEntries(Array.from({ length: 1 + next(4) }, () => [str(), value(0)]));
    let back: { printed: unknown; alone: unknown };
    try {
      back = readBack(data) as typeof back;
    } catch (err) {
      t.fail(`${JSON.stringify(data)}: ${(err as Error).message}`);
      differ++;
      continue;
    }
    if (JSON.stringify(back.printed) !== JSON.stringify(data) || JSON.stringify(back.alone) !== JSON.stringify(data)) {
      if (differ++ < 5) t.same(back, { printed: data, alone: data }, JSON.stringify(data));
    }
  }
  t.equal(differ, 0, 'every one read back exactly');
});
