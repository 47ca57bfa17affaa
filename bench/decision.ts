/**
 * Decision latency: from the webhook received to the Kubernetes patch issued,
 * on the real control plane (test/cluster/harness.ts: etcd, kube-apiserver, controller-manager,
 * scheduler, kwok), over 100 rollbacks of 100 different Deployments (each at revision 2 first).
 * rollguard runs in this process as serve wires it (buildApp listening on loopback, the Redis
 * store on a local redis-server with appendfsync always, QueueWorker, Engine, the real actions
 * with the rollguard ServiceAccount's kubeconfig), with prometheus null and onPrometheusDown: act,
 * so the Prometheus confirmation is excluded as the target says; it is measured on its own
 * afterwards against a local Prometheus holding 100 Deployments' error-rate series.
 * Alerts are sent one at a time (the next once the previous one was handled: patch issued, event
 * acked; its verification goes on in the background as in serve), so each figure is one alert's
 * path and not a queue behind other rollbacks; with --gap-ms, that long after it (see GAP_MS).
 * Breakdown per rollback, from timers around the Store and the Kube client the engine is given:
 *   intake+queue  receipt (the webhook handler's clock read) -> the engine takes the event
 *   store         wall time inside this rollback's Store calls (Redis) before the patch
 *   kube reads    wall time inside its Kube get/list before the patch (the plan: Deployment, ReplicaSets)
 *                 (calls made together count once; earlier rollbacks' background verification
 *                 polls are not this rollback's: counted apart, backgroundCallsBeforePatch)
 *   other         the rest (matching, rendering, guards' logic, records, logging, event loop)
 *   = receipt -> patch issued; and the patch's own round trip to the API server.
 *   npx tsx bench/decision.ts [--rollbacks 100] [--gap-ms 0] [--fsync everysec] [--name decision-x]
 *     [--apiserver-arg <flag>]... [--etcd-arg <flag>]...
 *   The last two add a control-plane setting to measure, e.g. `--apiserver-arg
 *   --watch-cache-sizes=replicasets.apps#0` (ReplicaSet LISTs read from etcd, not the watch cache)
 *   or `--etcd-arg --watch-progress-notify-interval=100ms` (etcd's shortest). The CPU that etcd and kube-apiserver
 *   spent over the rollbacks is recorded beside the latencies, so a setting's cost is in the same run.
 * Redis's own latency monitor runs over the rollbacks (latency-monitor-threshold 5 ms): its
 * per-second worst fsync under appendfsync always (event aof-fsync-always) and its other events go
 * into the result, each slow rollback beside the worst fsync of its second (redisLatency), so a
 * Store stall in the breakdown can be told from a slow fsync of Redis's disk.
 * Writes $BENCH_OUT/decision.json. No assertions on time.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createActions } from '../src/actions/index.js';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { confirmTrigger } from '../src/engine/confirm.js';
import { Engine } from '../src/engine/pipeline.js';
import { QueueWorker } from '../src/engine/worker.js';
import type { Kube, KubeObject } from '../src/kube/kube.js';
import { createKube } from '../src/kube/config.js';
import { createMetrics } from '../src/metrics.js';
import { Notifications } from '../src/notify/notifier.js';
import { PrometheusClient } from '../src/prometheus/client.js';
import { LocalPrometheus } from '../src/prometheus/local.js';
import { parseRuleFile } from '../src/rules/loader.js';
import { RuleSet } from '../src/rules/ruleset.js';
import { toOpenMetrics } from '../src/cli/series.js';
import { RedisStore } from '../src/store/redis.js';
import type { Store } from '../src/store/store.js';
import { startCluster, type Cluster } from '../test/cluster/harness.js';
import { freePort } from '../test/support/ports.js';
import { startRedis } from '../test/support/redis.js';
import { cpuMs, log, machine, pool, round, sleep, summary, WEBHOOK_TOKEN, writeResult, runBench } from './lib.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('rollbacks', 100);
/**
 * Pause after each rollback is handled before the next alert is sent (0: straight away). The API
 * server asks etcd for a watch progress notification at most once per 100 ms per resource
 * (k8s.io/apiserver pkg/storage/cacher/progress), and every consistent ReplicaSet LIST waits for
 * one: a LIST less than 100 ms after the previous rollback's waits out the rest of that period.
 * A pause of 100 ms or more measures each alert alone, as alerts far apart meet the API server.
 */
const GAP_MS = arg('gap-ms', 0);
const sarg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
/** Redis appendfsync: 'always' as the README asks (default), or 'everysec' to see what fsync costs */
const FSYNC = sarg('fsync') ?? 'always';
const NAME = sarg('name') ?? 'decision';
/** every value given after a repeatable flag */
const sargs = (name: string): string[] =>
  process.argv.flatMap((a, i) => (a === `--${name}` && i + 1 < process.argv.length ? [process.argv[i + 1]!] : []));
const EXTRA = { apiserver: sargs('apiserver-arg'), etcd: sargs('etcd-arg') };

/** CPU seconds (user + system) a control-plane process has used so far (bench/lib.ts cpuMs); NaN without a pid */
const cpuSeconds = (pid: number | undefined): number => (pid ? cpuMs(pid) / 1000 : NaN);
const NS = 'bench';
const REVISION = 'deployment.kubernetes.io/revision';

const RULES = `rules:
  - name: bench-error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger:
      kind: error_rate
      selector: { namespace: "{{ $labels.namespace }}", pod: { regex: "{{ $labels.deployment }}-[4-9bcdf]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}" } }
      threshold: 0.05
      for: 2m
      step: 15s
    priority: P0
    onPrometheusDown: act
`;

/** Timestamps (performance.now(), ms) of one call through a wrapped Store or Kube. */
interface Call {
  op: string;
  start: number;
  end: number;
  /** the rollback it was made for (see rollbackOf) */
  of: number | undefined;
}

let calls: Call[] = [];
/**
 * Which rollback a call is made for: the handler runs each event in its own context, and a
 * rollback's background verification inherits it, so the verification polls of earlier rollbacks
 * (still going while the next alert is handled) are not counted in the next one's breakdown.
 */
const rollbackOf = new AsyncLocalStorage<number>();
let handling = 0;
const hr = () => performance.now();

/** How many of `ms` fall in each 10 ms (0-9, 10-19, ...): a second mode shows as a second hump. */
function tens(ms: number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of ms) {
    const b = `${Math.floor(v / 10) * 10}`;
    out[b] = (out[b] ?? 0) + 1;
  }
  return out;
}

function timed<T extends object>(target: T, prefix: string): T {
  return new Proxy(target, {
    get(obj, prop, recv) {
      const v = Reflect.get(obj, prop, recv);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const c: Call = { op: `${prefix}.${String(prop)}`, start: hr(), end: NaN, of: rollbackOf.getStore() };
        calls.push(c);
        const r = (v as (...a: unknown[]) => unknown).apply(obj, args);
        if (r instanceof Promise) return r.finally(() => (c.end = hr()));
        c.end = hr();
        return r;
      };
    },
  });
}

function deployment(name: string) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'demo:v1', env: [{ name: 'MODE', value: 'healthy' }] }] } },
    },
  };
}

async function allAtRevision(cluster: Cluster, names: string[], rev: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const l = await cluster.request<{ items: KubeObject[] }>('GET', `/apis/apps/v1/namespaces/${NS}/deployments`);
    const ok = l.items.filter(
      (d) => d.metadata.annotations?.[REVISION] === rev && (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 1) && d.status?.updatedReplicas === d.spec.replicas && d.status?.availableReplicas === d.spec.replicas,
    ).length;
    if (ok >= names.length) return;
    if (Date.now() > until) throw new Error(`only ${ok}/${names.length} Deployments at revision ${rev} after ${timeoutMs} ms`);
    await sleep(500);
  }
}

async function prometheusConfirmation(names: string[]) {
  // 40 minutes of counters, one sample per 15 s, 10% errors, for every Deployment's pod.
  const T0 = Date.UTC(2026, 9, 1, 12, 0);
  const S = 15_000;
  const series = names.flatMap((name) =>
    (['200', '500'] as const).map((code) => {
      let acc = 0;
      return {
        metric: 'http_requests_total',
        labels: { namespace: NS, pod: `${name}-7c9d8f6b5-x2x4z`, code },
        samples: Array.from({ length: 160 }, (_, i) => ({ t: T0 + i * S, v: (acc += i === 0 ? 0 : code === '200' ? 90 : 10) })),
      };
    }),
  );
  const prom = await LocalPrometheus.start({ openMetrics: toOpenMetrics(series) });
  try {
    const { rules } = parseRuleFile('bench.yaml', RULES);
    const rule = rules[0]!;
    const client = new PrometheusClient({ url: prom.url, timeoutMs: 10_000 });
    const ms: number[] = [];
    const outcomes: Record<string, number> = {};
    for (const name of [...names.slice(0, 5), ...names]) {
      const t0 = hr();
      const c = await confirmTrigger({ rule, alert: { labels: { alertname: 'HighErrorRate', namespace: NS, deployment: name } }, now: T0 + 25 * 60_000 }, { prometheus: client });
      ms.push(hr() - t0);
      outcomes[c.outcome] = (outcomes[c.outcome] ?? 0) + 1;
    }
    ms.splice(0, 5); // the first five warm the client and Prometheus
    for (const k of Object.keys(outcomes)) outcomes[k] = Math.max(0, outcomes[k]! - (k === 'confirmed' ? 5 : 0));
    return { ms: summary(ms), outcomes, what: 'confirmTrigger: one query_range over the 2 m window (9 steps of 15 s) on a local prometheus, 200 series' };
  } finally {
    await prom.stop();
  }
}

async function main() {
  const m0 = machine();
  log(`decision: ${N} rollbacks on the real control plane; ${m0.nproc} cores, load ${m0.loadavg.join(' ')}`);
  const t0 = Date.now();
  const cluster = await startCluster({ extraArgs: EXTRA });
  log(`control plane up in ${Date.now() - t0} ms`);
  const redis = await startRedis();
  const stops: (() => Promise<unknown>)[] = [() => redis.destroy(), () => cluster.stop()];
  try {
    const names = Array.from({ length: N }, (_, i) => `svc-${String(i).padStart(3, '0')}`);
    await cluster.kubectl(['create', 'namespace', NS], { check: true });
    await pool(names, 8, async (n) => void (await cluster.request('POST', `/apis/apps/v1/namespaces/${NS}/deployments`, deployment(n))));
    await allAtRevision(cluster, names, '1', 300_000);
    await pool(names, 8, async (n) =>
      void (await cluster.request('PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/${n}`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'demo:v2-bad', env: [{ name: 'MODE', value: 'failing' }] }] } } } })),
    );
    await allAtRevision(cluster, names, '2', 300_000);
    // the bad deploy is what the alert is about: it starts firing once revision 2 is out (the
    // recent-deploy guard blocks a revision created more than a minute after its alert started)
    const firingSince = Date.now();
    log(`${N} Deployments at revision 2 (${Date.now() - t0} ms since start)`);

    const config = loadConfig({
      WEBHOOK_TOKEN,
      DRY_RUN: 'false',
      BUDGET_CLUSTER_PER_HOUR: '1000',
      MAX_CONCURRENT_ROLLBACKS: '1000',
      VERIFY_TIMEOUT: '60s',
      LOCK_TTL: '30s',
    });
    const admin = new Redis(redis.url);
    stops.unshift(async () => admin.disconnect());
    if (FSYNC !== 'always') await admin.config('SET', 'appendfsync', FSYNC);
    await admin.config('SET', 'latency-monitor-threshold', String(LATENCY_THRESHOLD_MS));
    const rawStore = new RedisStore({ url: redis.url });
    await rawStore.waitReady(10_000);
    const store = timed<Store>(rawStore, 'store');
    const kube = timed<Kube>((await createKube({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!, 'kube');
    const metrics = createMetrics({ defaults: false });
    const logger = pino({ level: 'info' }, pino.destination('/dev/null'));
    const { rules, errors } = parseRuleFile('bench.yaml', RULES);
    if (errors.length) throw new Error(JSON.stringify(errors));
    const engine = new Engine({ config, store, metrics, logger, rules: { rules: new RuleSet(rules) }, prometheus: null, kube, actions: createActions(), notifications: new Notifications([], logger, metrics), owner: 'bench' });
    let receivedHr = NaN;
    let takenHr = NaN;
    let done: (() => void) | null = null;
    const worker = new QueueWorker({
      store: rawStore,
      metrics,
      logger,
      consumer: 'bench',
      claimIdleMs: 60_000,
      maxDeliveries: 5,
      blockMs: 1000,
      handler: async (ev) => {
        takenHr = hr();
        calls = [];
        const mine = ++handling;
        try {
          await rollbackOf.run(mine, () => engine.handle(ev));
        } finally {
          done?.();
        }
      },
    });
    // The webhook handler reads the clock once for receivedAt: note that moment in high resolution.
    const app = buildApp({ config, store: rawStore, metrics, logger, now: () => ((receivedHr = hr()), Date.now()) });
    const port = await freePort();
    await app.listen({ host: '127.0.0.1', port });
    worker.start();
    stops.unshift(async () => {
      await app.close();
      await worker.stop();
      await rawStore.close();
    });

    const rows: Record<string, number>[] = [];
    /** every Store/Kube operation before the patch, over all rollbacks: count and total ms */
    const ops: Record<string, { count: number; totalMs: number; each: number[] }> = {};
    const states: Record<string, number> = {};
    const startsAt = new Date(firingSince).toISOString();
    const controlPlane = ['etcd', 'kube-apiserver'] as const;
    const cpu0 = controlPlane.map((c) => cpuSeconds(cluster.pid(c)));
    const wall0 = Date.now();
    for (let i = 0; i < N; i++) {
      const name = names[i]!;
      if (i > 0 && GAP_MS > 0) await sleep(GAP_MS);
      const body = JSON.stringify({
        receiver: 'rollguard',
        status: 'firing',
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'HighErrorRate', namespace: NS, deployment: name, service: name, severity: 'critical' },
            annotations: { summary: 'Error rate above 5% for 2 minutes' },
            startsAt,
            endsAt: '0001-01-01T00:00:00Z',
            generatorURL: 'http://prometheus.example:9090/graph',
            fingerprint: `d${i.toString(16).padStart(15, '0')}`,
          },
        ],
        groupLabels: { alertname: 'HighErrorRate' },
        commonLabels: { alertname: 'HighErrorRate' },
        commonAnnotations: {},
        externalURL: 'http://alertmanager.example:9093',
        version: '4',
        groupKey: `{}:{deployment="${name}"}`,
        truncatedAlerts: 0,
      });
      const handled = new Promise<void>((r) => (done = r));
      const sent = hr();
      const res = await fetch(`http://127.0.0.1:${port}/v1/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` }, body });
      const replied = hr();
      if (res.status !== 200) throw new Error(`webhook answered ${res.status}: ${await res.text()}`);
      await Promise.race([handled, sleep(120_000).then(() => Promise.reject(new Error(`rollback of ${name} not finished in 120 s`)))]);
      const recs = await engine.records.list({ target: `Deployment/${NS}/${name}` });
      const rec = recs[0];
      states[rec?.state ?? 'none'] = (states[rec?.state ?? 'none'] ?? 0) + 1;
      const own = calls.filter((c) => c.of === handling);
      const patch = own.find((c) => c.op === 'kube.patch');
      if (!patch) {
        log(`${name}: no patch (${rec?.state}: ${rec?.outcome?.message})`);
        continue;
      }
      const before = own.filter((c) => c.end <= patch.start);
      // earlier rollbacks' verification, polling the API server meanwhile (load, not this rollback's path)
      const background = calls.filter((c) => c.of !== handling && c.start <= patch.start).length;
      // wall time inside calls: calls made together (Promise.all) count once, as the time they overlap
      const sum = (p: string) => {
        const spans = before.filter((c) => c.op.startsWith(p)).map((c) => [c.start, c.end] as const).sort((a, b) => a[0] - b[0]);
        let total = 0;
        let until = -Infinity;
        for (const [a, b] of spans) {
          if (b <= until) continue;
          total += b - Math.max(a, until);
          until = b;
        }
        return total;
      };
      for (const c of before) {
        const o = (ops[c.op] ??= { count: 0, totalMs: 0, each: [] });
        o.count++;
        o.totalMs += c.end - c.start;
        o.each.push(c.end - c.start);
      }
      const store = sum('store.');
      const kubeReads = sum('kube.');
      const total = patch.start - receivedHr;
      const queue = takenHr - receivedHr;
      const tl = (step: string) => rec?.timeline.find((e) => e.step === step)?.at;
      rows.push({
        receivedS: Math.floor((performance.timeOrigin + receivedHr) / 1000),
        patchS: Math.floor((performance.timeOrigin + patch.start) / 1000),
        total,
        queue,
        store,
        storeCalls: before.filter((c) => c.op.startsWith('store.')).length,
        kubeReads,
        kubeCalls: before.filter((c) => c.op.startsWith('kube.')).length,
        other: total - queue - store - kubeReads,
        backgroundCalls: background,
        patchRoundTrip: patch.end - patch.start,
        httpReply: replied - sent,
        receivedToPlannedTimeline: (tl('planned') ?? NaN) - (tl('received') ?? NaN),
        receivedToExecutedTimeline: (tl('executed') ?? NaN) - (rec?.times.receivedAt ?? NaN),
        verifyMs: (rec?.timeline.find((e) => e.step === 'rollout')?.at ?? NaN) - (tl('executed') ?? NaN),
      });
      if ((i + 1) % 20 === 0) log(`${i + 1}/${N} rollbacks; last: receipt -> patch ${round(total)} ms`);
    }
    const wallS = (Date.now() - wall0) / 1000;
    const controlPlaneCpu = Object.fromEntries(
      controlPlane.map((c, i) => {
        const used = cpuSeconds(cluster.pid(c)) - cpu0[i]!;
        return [c, { cpuSeconds: round(used, 2), cores: round(used / wallS, 3) }];
      }),
    );
    log(`control plane CPU over ${round(wallS, 1)} s of rollbacks: ${JSON.stringify(controlPlaneCpu)}`);
    const col = (k: string) => rows.map((r) => r[k]!).filter((v) => Number.isFinite(v));
    const redisLatency = await latencyEvents(admin, Math.floor(wall0 / 1000), rows);
    log(`Redis latency events over the rollbacks: ${JSON.stringify(redisLatency.events)}`);
    const prom = await prometheusConfirmation(names);
    log(`Prometheus confirmation p50 ${prom.ms.p50} ms, p99 ${prom.ms.p99} ms`);
    writeResult(NAME, {
      benchmark: 'decision',
      machine: m0,
      machineAtEnd: machine(),
      settings: {
        rollbacks: N,
        gapMs: GAP_MS,
        cluster: 'test/cluster/harness.ts startCluster(): etcd, kube-apiserver, controller-manager, scheduler, kwok (3 fake nodes); 100 Deployments, 1 replica, revisions 1 and 2',
        fsync: FSYNC,
        controlPlaneFlags: EXTRA,
        rollguard: 'in-process: buildApp on loopback, RedisStore (appendfsync ' + FSYNC + '), QueueWorker, Engine, createActions(), rollguard ServiceAccount kubeconfig; prometheus null, onPrometheusDown: act; DRY_RUN=false, BUDGET_CLUSTER_PER_HOUR=1000, MAX_CONCURRENT_ROLLBACKS=1000; LOG_LEVEL info to /dev/null',
        sequential: `one alert at a time: the next ${GAP_MS > 0 ? `${GAP_MS} ms after` : 'as soon as'} the previous one was handled (its patch issued, its event acked); its rollout verification goes on in the background, as in serve, and its polls of the API server are counted apart (backgroundCallsBeforePatch), not in the breakdown`,
      },
      states,
      receiptToPatchIssuedMs: summary(col('total')),
      /** etcd's and kube-apiserver's CPU over the sequential rollbacks (their verification included) */
      controlPlaneCpu: { seconds: round(wallS, 1), ...controlPlaneCpu },
      breakdownMs: {
        intakeAndQueue: summary(col('queue')),
        store: summary(col('store')),
        kubeReads: summary(col('kubeReads')),
        other: summary(col('other')),
        storeCallsPerRollback: summary(col('storeCalls'), 0),
        kubeCallsPerRollback: summary(col('kubeCalls'), 0),
      },
      /** the five slowest rollbacks' breakdowns: what the p99 is made of */
      slowest: [...rows]
        .sort((a, b) => b.total! - a.total!)
        .slice(0, 5)
        .map((r) => Object.fromEntries(['total', 'queue', 'store', 'kubeReads', 'other', 'backgroundCalls'].map((k) => [k, round(r[k]!, 2)]))),
      backgroundCallsBeforePatch: summary(col('backgroundCalls'), 0),
      patchRoundTripMs: summary(col('patchRoundTrip')),
      httpReplyMs: summary(col('httpReply')),
      timelineReceivedToExecutedMs: summary(col('receivedToExecutedTimeline'), 0),
      rolloutVerifyMs: summary(col('verifyMs'), 0),
      redisLatency,
      prometheusConfirmation: prom,
      opsBeforePatch: Object.fromEntries(
        Object.entries(ops)
          .sort((a, b) => b[1].totalMs - a[1].totalMs)
          .map(([op, o]) => [op, { perRollback: round(o.count / rows.length, 2), meanMs: round(o.totalMs / o.count, 3), ms: summary(o.each), by10ms: tens(o.each) }]),
      ),
    });
  } finally {
    for (const s of stops) await s().catch((err) => log(`cleanup: ${String(err)}`));
  }
}

/** Redis's latency monitor records an event when one takes at least this long (its worst per second). */
const LATENCY_THRESHOLD_MS = 5;

/**
 * What Redis's latency monitor saw from `sinceS` (epoch s) on: per event, the seconds with one at
 * or above the threshold and the worst; and the five slowest rollbacks with the worst fsync
 * (aof-fsync-always) of the seconds from their receipt to their patch, or 0 when those had none at
 * the threshold.
 */
async function latencyEvents(admin: Redis, sinceS: number, rows: Record<string, number>[]) {
  const latest = (await admin.call('LATENCY', 'LATEST')) as [string, number, number, number][];
  const events: Record<string, { seconds: number; worstMs: number; overMs20: number }> = {};
  const fsyncBySecond = new Map<number, number>();
  for (const [event] of latest) {
    const history = ((await admin.call('LATENCY', 'HISTORY', event)) as [number, number][]).filter(([at]) => at >= sinceS);
    if (!history.length) continue;
    events[event] = { seconds: history.length, worstMs: Math.max(...history.map(([, ms]) => ms)), overMs20: history.filter(([, ms]) => ms >= 20).length };
    if (event === 'aof-fsync-always') for (const [at, ms] of history) fsyncBySecond.set(at, ms);
  }
  const worstFsync = (from: number, to: number) => {
    let worst = 0;
    for (let sec = from; sec <= to; sec++) worst = Math.max(worst, fsyncBySecond.get(sec) ?? 0);
    return worst;
  };
  const slowest = [...rows]
    .sort((a, b) => b.total! - a.total!)
    .slice(0, 5)
    .map((r) => ({ total: round(r.total!, 2), store: round(r.store!, 2), fsyncWorstMs: worstFsync(r.receivedS!, r.patchS!) }));
  return { thresholdMs: LATENCY_THRESHOLD_MS, events, slowest };
}

runBench('decision', main);
