/**
 * promtool's series notation, for `rollguard rules test`:
 *   series: 'http_requests_total{namespace="shop",code="500"}'
 *   values: '0+10x20 200x5 _ _x3 stale 1e3'
 * Expanding notation, as promtool's:
 *   a+bxn -> a, a+b, a+2b, ..., a+nb   (n+1 values)      a-bxn likewise, decreasing
 *   axn   -> a repeated n+1 times
 *   _     -> no sample at this step;  _xn -> n steps without samples
 *   stale -> no sample (rollguard backfills blocks, which cannot hold staleness markers)
 * Values are numbers, Inf, -Inf or NaN.
 */

export interface SeriesDef {
  metric: string;
  labels: Record<string, string>;
  /** one entry per interval step from time 0; undefined = no sample */
  values: Array<number | undefined>;
}

export class SeriesNotationError extends Error {
  override name = 'SeriesNotationError';
}

export function parseSeriesSelector(text: string): { metric: string; labels: Record<string, string> } {
  const m = /^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$/s.exec(text);
  if (!m) throw new SeriesNotationError(`expected a series like name{label="value"}, got ${JSON.stringify(text)}`);
  const labels: Record<string, string> = {};
  const body = m[2] ?? '';
  let i = 0;
  const skipWs = () => {
    while (i < body.length && /[\s,]/.test(body[i]!)) i++;
  };
  skipWs();
  while (i < body.length) {
    const nm = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(body.slice(i));
    if (!nm) throw new SeriesNotationError(`bad label name at "${body.slice(i)}" in ${JSON.stringify(text)}`);
    const name = nm[0];
    i += name.length;
    while (body[i] === ' ') i++;
    if (body[i] !== '=') throw new SeriesNotationError(`expected = after label "${name}" in ${JSON.stringify(text)}`);
    i++;
    while (body[i] === ' ') i++;
    if (body[i] !== '"') throw new SeriesNotationError(`expected a double-quoted value for label "${name}" in ${JSON.stringify(text)}`);
    i++;
    let v = '';
    for (;;) {
      const c = body[i];
      if (c === undefined) throw new SeriesNotationError(`unterminated value for label "${name}" in ${JSON.stringify(text)}`);
      i++;
      if (c === '\\') {
        const n = body[i++];
        v += n === 'n' ? '\n' : (n ?? '');
      } else if (c === '"') break;
      else v += c;
    }
    labels[name] = v;
    skipWs();
  }
  return { metric: m[1]!, labels };
}

function num(s: string, whole: string): number {
  const t = s.trim();
  if (/^[+]?Inf$/i.test(t)) return Infinity;
  if (/^-Inf$/i.test(t)) return -Infinity;
  if (/^NaN$/i.test(t)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) throw new SeriesNotationError(`bad number "${s}" in values "${whole}"`);
  return Number(t);
}

export function expandValues(text: string): Array<number | undefined> {
  const out: Array<number | undefined> = [];
  for (const tok of text.trim().split(/\s+/)) {
    if (tok === '') continue;
    if (tok === '_' || tok === 'stale') {
      out.push(undefined);
      continue;
    }
    const x = tok.lastIndexOf('x');
    if (x === -1) {
      out.push(num(tok, text));
      continue;
    }
    const countText = tok.slice(x + 1);
    if (!/^\d+$/.test(countText)) throw new SeriesNotationError(`bad repeat count in "${tok}" (expected a+bxn, a-bxn, axn or _xn)`);
    const n = Number(countText);
    const left = tok.slice(0, x);
    if (left === '_') {
      for (let k = 0; k < n; k++) out.push(undefined);
      continue;
    }
    // split a+b / a-b at the operator that is not a leading sign or an exponent's sign
    let op = -1;
    for (let k = 1; k < left.length; k++) {
      if ((left[k] === '+' || left[k] === '-') && !/[eE]/.test(left[k - 1]!)) op = k;
    }
    const a = num(op === -1 ? left : left.slice(0, op), text);
    const b = op === -1 ? 0 : num(left.slice(op + 1), text) * (left[op] === '-' ? -1 : 1);
    for (let k = 0; k <= n; k++) out.push(a + k * b);
  }
  return out;
}

/** Renders samples as OpenMetrics text (timestamps in seconds), grouped by metric family, ending with # EOF. */
export function toOpenMetrics(series: Array<{ metric: string; labels: Record<string, string>; samples: Array<{ t: number; v: number }> }>): string {
  const byMetric = new Map<string, Map<string, { labels: Record<string, string>; samples: Array<{ t: number; v: number }> }>>();
  for (const s of series) {
    let fam = byMetric.get(s.metric);
    if (!fam) byMetric.set(s.metric, (fam = new Map()));
    const key = JSON.stringify(Object.entries(s.labels).sort());
    const entry = fam.get(key);
    if (entry) entry.samples.push(...s.samples);
    else fam.set(key, { labels: s.labels, samples: [...s.samples] });
  }
  const lines: string[] = [];
  for (const [metric, fam] of byMetric) {
    lines.push(`# TYPE ${metric} unknown`);
    for (const { labels, samples } of fam.values()) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
        .join(',');
      const sorted = [...samples].sort((a, b) => a.t - b.t);
      let last = -Infinity;
      for (const p of sorted) {
        if (p.t === last) continue;
        last = p.t;
        const v = Number.isNaN(p.v) ? 'NaN' : p.v === Infinity ? '+Inf' : p.v === -Infinity ? '-Inf' : String(p.v);
        lines.push(`${metric}${l ? `{${l}}` : ''} ${v} ${(p.t / 1000).toFixed(3)}`);
      }
    }
  }
  lines.push('# EOF');
  return lines.join('\n') + '\n';
}
