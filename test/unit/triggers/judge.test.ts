import t from 'tap';
import { judge, type JudgeWindow } from '../../../src/triggers/judge.js';

const T0 = 1_700_000_000_000;
const step = 15_000;
const w: JudgeWindow = { startMs: T0, endMs: T0 + 120_000, stepMs: step, op: '>', threshold: 0.05, minCoverage: 0.8 };
const series = (values: Array<number | undefined>, labels: Record<string, string> = {}) => ({
  labels,
  samples: values.flatMap((v, i) => (v === undefined ? [] : [{ t: T0 + i * step, v }])),
});

t.test('held at every sample through the window -> confirmed', async (t) => {
  const j = judge([series([0.09, 0.09, 0.1, 0.08, 0.09, 0.09, 0.07, 0.09, 0.09])], w);
  t.equal(j.outcome, 'confirmed');
  t.equal(j.expectedSamples, 9);
  t.equal(j.requiredSamples, 8);
  t.equal(j.series?.lastValue, 0.09);
  t.match(j.reason, /held at all 9 of 9 samples/);
});

t.test('one dip inside the window -> not confirmed, and says where', async (t) => {
  const j = judge([series([0.09, 0.09, 0.1, 0.01, 0.09, 0.09, 0.07, 0.09, 0.09])], w);
  t.equal(j.outcome, 'not_confirmed');
  t.equal(j.series?.firstDipAt, T0 + 3 * step);
  t.equal(j.series?.worstValue, 0.01);
  t.match(j.reason, /1 of 9 samples not > 0\.05/);
});

t.test('too few samples -> insufficient data (gaps, NaN from 0/0, no series)', async (t) => {
  t.equal(judge([series([0.09, 0.09, undefined, undefined, 0.09, 0.09, 0.09, 0.09, 0.09])], w).outcome, 'insufficient_data');
  t.equal(judge([series([0.09, NaN, NaN, 0.09, 0.09, 0.09, 0.09, 0.09, 0.09])], w).outcome, 'insufficient_data');
  t.equal(judge([series([0.09, undefined, 0.09, 0.09, 0.09, 0.09, 0.09, 0.09, 0.09])], w).outcome, 'confirmed', 'one gap is within 80% coverage');
  const none = judge([], w);
  t.equal(none.outcome, 'insufficient_data');
  t.match(none.reason, /no series/);
});

t.test('samples outside the window do not count', async (t) => {
  const s = series([0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]);
  s.samples.push({ t: T0 - 15_000, v: 0.5 }, { t: T0 + 200_000, v: 0.5 });
  t.equal(judge([s], { ...w, op: '<' }).outcome, 'confirmed');
});

t.test('several series: any one held through confirms; else a dip; else no data', async (t) => {
  const held = series([1, 1, 1, 1, 1, 1, 1, 1, 1], { pod: 'a' });
  const dipped = series([1, 1, 0, 1, 1, 1, 1, 1, 1], { pod: 'b' });
  const sparse = series([1], { pod: 'c' });
  t.same(judge([dipped, held], w).series?.labels, { pod: 'a' });
  t.equal(judge([dipped, sparse], w).outcome, 'not_confirmed');
  t.equal(judge([sparse], w).outcome, 'insufficient_data');
});

t.test('comparison operators', async (t) => {
  const flat = (v: number) => [series([v, v, v, v, v, v, v, v, v])];
  t.equal(judge(flat(0.05), w).outcome, 'not_confirmed', '> is strict');
  t.equal(judge(flat(0.05), { ...w, op: '>=' }).outcome, 'confirmed');
  t.equal(judge(flat(0.01), { ...w, op: '<' }).outcome, 'confirmed');
  t.equal(judge(flat(0.05), { ...w, op: '<=' }).outcome, 'confirmed');
});

t.test('baseline-relative: threshold is a factor of the baseline, with an absolute floor', async (t) => {
  const bw = { ...w, threshold: 2, baseline: () => 0.3 };
  t.equal(judge([series([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])], bw).outcome, 'confirmed', '3x baseline');
  t.equal(judge([series([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])], bw).outcome, 'not_confirmed', '1.7x baseline');
  const tiny = { ...w, threshold: 2, baseline: () => 0.001, minValue: 0.1 };
  t.equal(judge([series([0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])], tiny).outcome, 'not_confirmed', '50x of a tiny baseline is still under the floor');
  const missing = { ...w, threshold: 2, baseline: () => undefined };
  const j = judge([series([1, 1, 1, 1, 1, 1, 1, 1, 1])], missing);
  t.equal(j.outcome, 'insufficient_data');
  t.match(j.reason, /no baseline/);
  const zero = judge([series([1, 1, 1, 1, 1, 1, 1, 1, 1])], { ...w, threshold: 2, baseline: () => 0 });
  t.equal(zero.outcome, 'confirmed', 'anything above a zero baseline');
});

t.test('+Inf and -Inf count as missing, as NaN does (x/0: a container whose memory limit is 0)', async (t) => {
  const inf = judge([series([Infinity, Infinity, Infinity, Infinity, Infinity, Infinity, Infinity, Infinity, Infinity])], w);
  t.equal(inf.outcome, 'insufficient_data', 'all +Inf: no data, not "above every threshold"');
  t.equal(inf.series?.samples, 0);
  t.equal(judge([series([-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity])], { ...w, op: '<' }).outcome, 'insufficient_data', 'all -Inf under <');
  t.equal(judge([series([0.09, Infinity, Infinity, 0.09, 0.09, 0.09, 0.09, 0.09, 0.09])], w).outcome, 'insufficient_data', 'two +Inf of nine: under 80% coverage');
  t.equal(judge([series([0.09, Infinity, 0.09, 0.09, 0.09, 0.09, 0.09, 0.09, 0.09])], w).outcome, 'confirmed', 'one +Inf is one gap; the finite samples decide');
  t.equal(judge([series([0.01, Infinity, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01])], w).outcome, 'not_confirmed', 'a +Inf never makes a healthy series confirmed');
  const infBaseline = judge([series([5, 5, 5, 5, 5, 5, 5, 5, 5])], { ...w, op: '<', threshold: 0.5, baseline: () => Infinity });
  t.equal(infBaseline.outcome, 'insufficient_data', 'a baseline of +Inf is no baseline: not "every value is below half of it"');
  t.match(infBaseline.reason, /no baseline/);
});
