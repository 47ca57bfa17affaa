import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalPrometheus } from '../../src/prometheus/local.js';

/**
 * Weeks of synthetic history for a fleet of services, written as OpenMetrics (timestamps in
 * seconds, `# EOF` at the end) for `promtool tsdb create-blocks-from openmetrics`, then served by
 * Debian's prometheus (src/prometheus/local.ts). Deterministic: the same scenario gives the same
 * file.
 *
 * Per service, scraped every minute:
 * - application series per pod (pods are named as a Deployment's: NAME-<pod-template-hash>-<5>,
 *   one per ReplicaSet, replaced at each deploy): `http_requests_total{namespace,pod,code}` with
 *   code 200 and 500, and with `latency`, `http_request_duration_seconds_bucket{namespace,pod,le}`;
 *   traffic follows the day (±30 %) with noise; the error ratio is 0.5 % ±0.1 and the p95/p99
 *   latencies their normal values ±3 % unless an incident function says otherwise;
 * - with `ksm`, kube-state-metrics' rollout series, every two minutes: `kube_replicaset_created`
 *   and `kube_replicaset_owner` for each ReplicaSet from its creation on (not with 'generation'),
 *   and `kube_deployment_status_observed_generation` / `kube_deployment_metadata_generation` (one
 *   more at each deploy).
 * - `ALERTS{alertname,alertstate,namespace,deployment,severity}` and `ALERTS_FOR_STATE` as the
 *   alerting rules would have produced them: each rule's condition evaluated every minute, at the
 *   scrape times, over the last two minutes of the service's counters (what `rate(...[2m])` sees at
 *   a one-minute scrape interval: the increments of the minute before and of this one), pending
 *   until it has held for `for`, then firing (Prometheus' `for` semantics).
 * Alerts that come from elsewhere (a node's disk) are given as fixed intervals.
 */

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** Histogram buckets (upper bounds, seconds); +Inf is added. */
export const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface ServiceSpec {
  namespace: string;
  name: string;
  /** times (ms, whole minutes) a new ReplicaSet was rolled out; the first may be before the range */
  deploys: number[];
  /** kube-state-metrics scraped for it: its ReplicaSet and generation series, or ('generation') the Deployment's generation only */
  ksm: boolean | 'generation';
  /** exports a latency histogram */
  latency: boolean;
  /** average requests per minute */
  requestsPerMinute: number;
  /** normal p95 and p99 latency, seconds */
  p95: number;
  p99: number;
  /** incidents: the error ratio of minute t (ms), or undefined for the normal one */
  errorRatio?: (t: number) => number | undefined;
  /** incidents: p95 / p99 of minute t, or undefined for the normal one */
  latencyAt?: (t: number) => { p95?: number; p99?: number } | undefined;
}

/** What an alerting rule's expression sees of a service at one evaluation: its last two minutes. */
export interface WindowStats {
  errorRatio: number;
  /** histogram_quantile over the window's bucket increments (NaN without a histogram) */
  p95: number;
  p99: number;
}

export interface AlertingRule {
  alertname: string;
  forMs: number;
  labels: Record<string, string>;
  /** only for services with a histogram */
  needsLatency?: boolean;
  expr: (w: WindowStats, svc: ServiceSpec) => boolean;
}

export interface FixedAlert {
  labels: Record<string, string>;
  /** firing from, to (ms, whole minutes; to excluded) */
  fromMs: number;
  toMs: number;
}

export interface Scenario {
  fromMs: number;
  toMs: number;
  services: ServiceSpec[];
  alertingRules: AlertingRule[];
  fixedAlerts?: FixedAlert[];
}

/** The alerting rules of the scenarios, as a Prometheus rule file would have them (the `for`s and thresholds). */
export const ALERTING_RULES: AlertingRule[] = [
  // sum(rate(http_requests_total{code=~"5.."}[2m])) / sum(rate(http_requests_total[2m])) > 0.05, for 2m
  { alertname: 'HighErrorRate', forMs: 2 * MINUTE, labels: { severity: 'critical' }, expr: (w) => w.errorRatio > 0.05 },
  // the same ratio > 0.02, for 10m
  { alertname: 'ElevatedErrorRate', forMs: 10 * MINUTE, labels: { severity: 'warning' }, expr: (w) => w.errorRatio > 0.02 },
  // histogram_quantile(0.99, ...) > 2, for 5m
  { alertname: 'HighLatencyP99', forMs: 5 * MINUTE, labels: { severity: 'warning' }, needsLatency: true, expr: (w) => w.p99 > 2 },
  // histogram_quantile(0.95, ...) > 2 * (the service's usual p95), for 5m
  { alertname: 'LatencyAboveBaseline', forMs: 5 * MINUTE, labels: { severity: 'warning' }, needsLatency: true, expr: (w, s) => w.p95 > 2 * s.p95 },
];

const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function prng(key: string): () => number {
  let a = 0;
  for (const c of key) a = (Math.imul(a, 31) + c.charCodeAt(0)) | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const word = (rnd: () => number, n: number) => Array.from({ length: n }, () => ALPHABET[Math.floor(rnd() * ALPHABET.length)]).join('');

/** The ReplicaSets (name, creation) and their pods, as a Deployment names them. */
export function replicaSets(s: ServiceSpec): Array<{ name: string; pod: string; createdAt: number }> {
  const rnd = prng(`${s.namespace}/${s.name}`);
  return s.deploys.map((createdAt) => {
    const name = `${s.name}-${word(rnd, 9)}`;
    return { name, pod: `${name}-${word(rnd, 5)}`, createdAt };
  });
}

/** Cumulative fractions at BUCKETS for a latency distribution with these p95 and p99 (linear between them). */
function cumulative(p95: number, p99: number): number[] {
  const top = 2 * p99;
  return BUCKETS.map((le) => {
    if (le <= p95) return (0.95 * le) / p95;
    if (le <= p99) return 0.95 + (0.04 * (le - p95)) / (p99 - p95);
    if (le <= top) return 0.99 + (0.01 * (le - p99)) / (top - p99);
    return 1;
  });
}

/** Prometheus' histogram_quantile over cumulative bucket counts at BUCKETS (+Inf = total). */
export function histogramQuantile(q: number, counts: ArrayLike<number>, total: number): number {
  if (total <= 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (let k = 0; k < BUCKETS.length; k++) {
    const c = counts[k]!;
    if (c >= rank) return prevLe + ((BUCKETS[k]! - prevLe) * (rank - prevCount)) / (c - prevCount || 1);
    prevLe = BUCKETS[k]!;
    prevCount = c;
  }
  return BUCKETS[BUCKETS.length - 1]!;
}

/** Per-minute increments of one service over the range: requests, errors and cumulative bucket counts. */
interface Minutes {
  requests: Float64Array;
  errors: Float64Array;
  /** [minute * BUCKETS.length + k] */
  buckets: Float64Array;
}

function minutes(s: ServiceSpec, fromMs: number, n: number): Minutes {
  const rnd = prng(`minutes:${s.namespace}/${s.name}`);
  const m: Minutes = { requests: new Float64Array(n), errors: new Float64Array(n), buckets: new Float64Array(s.latency ? n * BUCKETS.length : 0) };
  for (let i = 0; i < n; i++) {
    const t = fromMs + i * MINUTE;
    const hour = (t % DAY) / HOUR;
    const req = Math.round(s.requestsPerMinute * (1 + 0.3 * Math.sin((2 * Math.PI * (hour - 9)) / 24)) * (0.98 + 0.04 * rnd()));
    const ratio = s.errorRatio?.(t) ?? 0.004 + 0.002 * rnd();
    m.requests[i] = req;
    m.errors[i] = Math.round(req * ratio);
    if (s.latency) {
      const inc = s.latencyAt?.(t);
      const wobble = 0.97 + 0.06 * rnd();
      const f = cumulative(inc?.p95 ?? s.p95 * wobble, inc?.p99 ?? s.p99 * wobble);
      for (let k = 0; k < BUCKETS.length; k++) m.buckets[i * BUCKETS.length + k] = Math.round(req * f[k]!);
    }
  }
  return m;
}

/** Lines in, written out in large pieces with backpressure. */
class Out {
  private buf: string[] = [];
  lines = 0;
  constructor(private readonly stream: NodeJS.WritableStream) {}
  async line(s: string): Promise<void> {
    this.buf.push(s);
    this.lines++;
    if (this.buf.length >= 20_000) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.buf.length === 0) return;
    const chunk = this.buf.join('\n') + '\n';
    this.buf = [];
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }
}

const labelText = (l: Record<string, string>) =>
  Object.entries(l)
    .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`)
    .join(',');

/** Writes the scenario as OpenMetrics to `file`; returns the sample count and the alert intervals written. */
export async function writeOpenMetrics(sc: Scenario, file: string): Promise<{ samples: number; alerts: Array<{ labels: Record<string, string>; startsAt: number; lastAt: number }> }> {
  const stream = createWriteStream(file);
  const out = new Out(stream);
  const n = Math.floor((sc.toMs - sc.fromMs) / MINUTE) + 1;
  const sec = (i: number) => (sc.fromMs + i * MINUTE) / 1000;
  const idx = (t: number) => Math.round((t - sc.fromMs) / MINUTE);
  const alerts: Array<{ labels: Record<string, string>; startsAt: number; lastAt: number }> = [];

  for (const s of sc.services) {
    const m = minutes(s, sc.fromMs, n);
    const rss = replicaSets(s);
    // application series, one pod per ReplicaSet, from its rollout to the next (both present at that minute)
    for (const [r, rs] of rss.entries()) {
      const first = Math.max(0, idx(rs.createdAt));
      const last = r + 1 < rss.length ? idx(rss[r + 1]!.createdAt) : n - 1;
      if (last < 0 || first >= n) continue;
      const base = { namespace: s.namespace, pod: rs.pod };
      const counter = async (name: string, labels: Record<string, string>, inc: (i: number) => number) => {
        const l = labelText({ ...base, ...labels });
        let v = 0;
        for (let i = first; i <= Math.min(last, n - 1); i++) {
          if (i > first) v += inc(i);
          await out.line(`${name}{${l}} ${v} ${sec(i)}`);
        }
      };
      await counter('http_requests_total', { code: '200' }, (i) => m.requests[i]! - m.errors[i]!);
      await counter('http_requests_total', { code: '500' }, (i) => m.errors[i]!);
      if (s.latency) {
        for (let k = 0; k <= BUCKETS.length; k++) {
          const le = k < BUCKETS.length ? String(BUCKETS[k]) : '+Inf';
          await counter('http_request_duration_seconds_bucket', { le }, (i) => (k < BUCKETS.length ? m.buckets[i * BUCKETS.length + k]! : m.requests[i]!));
        }
      }
    }
    if (s.ksm) {
      const every = 2;
      for (const rs of s.ksm === 'generation' ? [] : rss) {
        const first = Math.max(0, Math.ceil(idx(rs.createdAt) / every) * every);
        for (const [name, value, extra] of [
          ['kube_replicaset_created', rs.createdAt / 1000, {}],
          ['kube_replicaset_owner', 1, { owner_kind: 'Deployment', owner_name: s.name, owner_is_controller: 'true' }],
        ] as const) {
          const l = labelText({ namespace: s.namespace, replicaset: rs.name, ...extra });
          for (let i = first; i < n; i += every) await out.line(`${name}{${l}} ${value} ${sec(i)}`);
        }
      }
      for (const name of ['kube_deployment_status_observed_generation', 'kube_deployment_metadata_generation']) {
        const l = labelText({ namespace: s.namespace, deployment: s.name });
        for (let i = 0; i < n; i += every) {
          const generation = s.deploys.filter((d) => d <= sc.fromMs + i * MINUTE).length;
          if (generation > 0) await out.line(`${name}{${l}} ${generation} ${sec(i)}`);
        }
      }
    }
    // the alerting rules, evaluated every minute over the last two minutes
    for (const rule of sc.alertingRules) {
      if (rule.needsLatency && !s.latency) continue;
      const labels = { alertname: rule.alertname, namespace: s.namespace, deployment: s.name, ...rule.labels };
      const states: Array<'pending' | 'firing' | undefined> = new Array(n);
      const active: number[] = new Array(n);
      let activeAt: number | undefined;
      const cum = new Float64Array(BUCKETS.length);
      for (let i = 1; i < n; i++) {
        const req = m.requests[i - 1]! + m.requests[i]!;
        if (s.latency) for (let k = 0; k < BUCKETS.length; k++) cum[k] = m.buckets[(i - 1) * BUCKETS.length + k]! + m.buckets[i * BUCKETS.length + k]!;
        const w: WindowStats = {
          errorRatio: req > 0 ? (m.errors[i - 1]! + m.errors[i]!) / req : 0,
          p95: s.latency ? histogramQuantile(0.95, cum, req) : NaN,
          p99: s.latency ? histogramQuantile(0.99, cum, req) : NaN,
        };
        const t = sc.fromMs + i * MINUTE;
        if (!rule.expr(w, s)) {
          activeAt = undefined;
          continue;
        }
        activeAt ??= t;
        active[i] = activeAt;
        states[i] = t - activeAt >= rule.forMs ? 'firing' : 'pending';
      }
      for (const state of ['pending', 'firing'] as const) {
        const l = labelText({ ...labels, alertstate: state });
        for (let i = 0; i < n; i++) if (states[i] === state) await out.line(`ALERTS{${l}} 1 ${sec(i)}`);
      }
      const lf = labelText(labels);
      for (let i = 0; i < n; i++) if (states[i]) await out.line(`ALERTS_FOR_STATE{${lf}} ${active[i]! / 1000} ${sec(i)}`);
      for (let i = 0; i < n; i++) {
        if (states[i] !== 'firing' || states[i - 1] === 'firing') continue;
        let j = i;
        while (states[j + 1] === 'firing') j++;
        alerts.push({ labels, startsAt: sc.fromMs + i * MINUTE, lastAt: sc.fromMs + j * MINUTE });
      }
    }
  }
  for (const a of sc.fixedAlerts ?? []) {
    const l = labelText({ ...a.labels, alertstate: 'firing' });
    for (let t = a.fromMs; t < a.toMs; t += MINUTE) await out.line(`ALERTS{${l}} 1 ${t / 1000}`);
    alerts.push({ labels: a.labels, startsAt: a.fromMs, lastAt: a.toMs - MINUTE });
  }
  await out.line('# EOF');
  await out.flush();
  stream.end();
  await once(stream, 'finish');
  return { samples: out.lines - 1, alerts };
}

export interface Backfilled {
  prometheus: LocalPrometheus;
  samples: number;
  /** the alert intervals the generator wrote (for a benchmark's counts; tests assert from their own table) */
  alerts: Array<{ labels: Record<string, string>; startsAt: number; lastAt: number }>;
  stop(): Promise<void>;
}

/** Generates the scenario, backfills it into a fresh TSDB and starts prometheus on it. */
export async function startBackfilled(sc: Scenario): Promise<Backfilled> {
  const dir = await mkdtemp(join(tmpdir(), 'rollguard-backfill-'));
  const file = join(dir, 'history.om');
  try {
    const { samples, alerts } = await writeOpenMetrics(sc, file);
    const prometheus = await LocalPrometheus.start({ openMetricsFile: file, maxBlockDuration: '744h', startTimeoutMs: 60_000 });
    await rm(dir, { recursive: true, force: true });
    return { prometheus, samples, alerts, stop: () => prometheus.stop() };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
