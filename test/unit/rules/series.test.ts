import t from 'tap';
import { formatDuration, parseDuration } from '../../../src/rules/duration.js';
import { expandValues, parseSeriesSelector, toOpenMetrics } from '../../../src/cli/series.js';

t.test('promtool expanding notation', async (t) => {
  t.same(expandValues('-2+4x3'), [-2, 2, 6, 10]);
  t.same(expandValues(' 1-2x4'), [1, -1, -3, -5, -7]);
  t.same(expandValues('5x2'), [5, 5, 5]);
  t.same(expandValues('1 _ 3 stale'), [1, undefined, 3, undefined]);
  t.same(expandValues('_x3 7'), [undefined, undefined, undefined, 7]);
  t.same(expandValues('1e3+1e2x1'), [1000, 1100]);
  t.same(expandValues('1.5 Inf -Inf'), [1.5, Infinity, -Infinity]);
  t.ok(Number.isNaN(expandValues('NaN')[0]));
  t.throws(() => expandValues('1+x3'), /bad number/);
  t.throws(() => expandValues('1+2xz'), /repeat count/);
});

t.test('series selectors', async (t) => {
  t.same(parseSeriesSelector('up'), { metric: 'up', labels: {} });
  t.same(parseSeriesSelector('http_requests_total{code="500", pod="a\\"b"}'), { metric: 'http_requests_total', labels: { code: '500', pod: 'a"b' } });
  t.throws(() => parseSeriesSelector('up{code=500}'), /double-quoted/);
  t.throws(() => parseSeriesSelector('{code="1"}'), /expected a series/);
});

t.test('OpenMetrics output groups families, sorts samples, escapes labels, ends with # EOF', async (t) => {
  const om = toOpenMetrics([
    { metric: 'a', labels: { x: '1' }, samples: [{ t: 2000, v: 2 }, { t: 1000, v: 1 }] },
    { metric: 'b', labels: { q: 'say "hi"\\' }, samples: [{ t: 1000, v: NaN }] },
    { metric: 'a', labels: { x: '2' }, samples: [{ t: 1000, v: Infinity }] },
  ]);
  t.equal(
    om,
    '# TYPE a unknown\na{x="1"} 1 1.000\na{x="1"} 2 2.000\na{x="2"} +Inf 1.000\n# TYPE b unknown\nb{q="say \\"hi\\"\\\\"} NaN 1.000\n# EOF\n',
  );
});

t.test('durations', async (t) => {
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('90s'), 90_000);
  t.equal(parseDuration('100ms'), 100);
  t.equal(parseDuration('1w'), 7 * 24 * 3600_000);
  t.equal(parseDuration('0'), 0);
  t.throws(() => parseDuration('2 minutes'));
  t.throws(() => parseDuration('30m1h'), /largest to smallest/);
  t.throws(() => parseDuration('5'));
  t.equal(formatDuration(5_400_000), '1h30m');
  t.equal(formatDuration(0), '0s');
});
