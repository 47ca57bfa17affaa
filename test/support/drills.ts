// In-memory doubles for the drill unit tests (test/unit/drills/): a Deployment controller over the
// FakeKube (numbers revisions and reuses ReplicaSets as kube-controller-manager does, and completes
// rollouts at once), a Prometheus answering ALERTS and trigger queries, and an Alertmanager API v2.
// The real loop is proven in test/e2e/drill.test.ts.
import { pino } from 'pino';
import { deploymentAction } from '../../src/actions/deployment.js';
import { AlertmanagerApi } from '../../src/alertmanager/api.js';
import { loadConfig } from '../../src/config.js';
import { applyFault } from '../../src/drills/fault.js';
import { Drills } from '../../src/drills/run.js';
import type { DrillRecord } from '../../src/drills/store.js';
import { readWorkload, templateHash } from '../../src/drills/workload.js';
import { Engine } from '../../src/engine/pipeline.js';
import { RESOURCES, type KubeObject } from '../../src/kube/kube.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications } from '../../src/notify/notifier.js';
import { MemoryStore } from '../../src/store/memory.js';
import { deployment, NS, replicaSet } from '../unit/actions/fixtures/objects.js';
import { equalIgnoringLabel } from '../../src/kube/revision.js';
import type { InstantSample, RangeSeries } from '../../src/prometheus/client.js';
import { CapturingNotifier, FakePrometheus, rules } from './engine.js';
import { FakeKube } from './fake-kube.js';

const REV = 'deployment.kubernetes.io/revision';
const HASH = 'pod-template-hash';

/**
 * After every persisted Deployment patch: the ReplicaSet whose template equals the Deployment's gets
 * the next revision (a new one is made for a new template), and the rollout completes.
 * `onRollout(dep)` is called with the Deployment after each change of revision.
 */
export function simulateDeploymentController(kube: FakeKube, onRollout?: (dep: KubeObject) => void): void {
  let made = 0;
  kube.onPatch = (rt, obj, fake) => {
    if (rt.plural !== 'deployments') return;
    const owned = [...fake.objects.values()]
      .filter((e) => e.rt.plural === 'replicasets' && e.obj.metadata.ownerReferences?.some((o) => o.uid === obj.metadata.uid))
      .map((e) => e.obj);
    const max = Math.max(0, ...owned.map((rs) => Number(rs.metadata.annotations?.[REV] ?? 0)));
    let rs = owned.find((r) => equalIgnoringLabel(r.spec?.template, obj.spec?.template, HASH));
    let revision = Number(rs?.metadata.annotations?.[REV] ?? 0);
    if (!rs || revision !== max) {
      revision = max + 1;
      const hash = `h${++made}x${revision}`;
      rs = rs
        ? { ...rs, metadata: { ...rs.metadata, annotations: { ...rs.metadata.annotations, [REV]: String(revision) } } }
        : {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            metadata: {
              name: `${obj.metadata.name}-${hash}`,
              namespace: obj.metadata.namespace,
              labels: { ...(obj.spec?.template?.metadata?.labels ?? {}), [HASH]: hash },
              annotations: { ...(obj.metadata.annotations ?? {}), [REV]: String(revision) },
              ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: obj.metadata.name, uid: obj.metadata.uid!, controller: true }],
              creationTimestamp: new Date().toISOString(),
            },
            spec: { replicas: 0, selector: { matchLabels: { [HASH]: hash } }, template: structuredClone(obj.spec?.template) },
          };
      if (rs.spec?.template?.metadata?.labels) rs.spec.template.metadata.labels[HASH] = rs.metadata.labels![HASH]!;
      fake.put(RESOURCES.replicasets, rs);
    }
    const replicas = obj.spec?.replicas ?? 1;
    const dep: KubeObject = {
      ...obj,
      metadata: { ...obj.metadata, annotations: { ...(obj.metadata.annotations ?? {}), [REV]: String(revision) } },
      status: { observedGeneration: obj.metadata.generation, replicas, updatedReplicas: replicas, availableReplicas: replicas, readyReplicas: replicas },
    };
    fake.put(RESOURCES.deployments, dep);
    if (revision !== Number(obj.metadata.annotations?.[REV] ?? 0)) onRollout?.(dep);
  };
}

/** FakePrometheus that also answers ALERTS as Prometheus does (the alerts in `alerts`, each with its alertstate, and __name__) at every time asked. */
export class AlertingPrometheus extends FakePrometheus {
  alerts: Array<Record<string, string>> = [];
  override async query(expr: string, timeMs: number): Promise<InstantSample[]> {
    if (!expr.startsWith('ALERTS')) return super.query(expr, timeMs);
    this.queries.push(expr);
    return this.alerts.filter((l) => matches(expr, l)).map((labels) => ({ labels: { __name__: 'ALERTS', ...labels }, t: timeMs, v: 1 }));
  }
  override async queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]> {
    if (!expr.startsWith('ALERTS')) return super.queryRange(expr, startMs, endMs, stepMs);
    this.queries.push(expr);
    return this.alerts.filter((l) => matches(expr, l)).map((labels) => ({ labels: { __name__: 'ALERTS', ...labels }, samples: [{ t: endMs, v: 1 }] }));
  }
}

/** The equality matchers of `ALERTS{a="b",…}` against labels. */
function matches(expr: string, labels: Record<string, string>): boolean {
  return [...expr.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].every(([, k, v]) => labels[k!] === v);
}

/** A fetch answering Alertmanager's GET /api/v2/alerts with `alerts()` (filtered by the request's equality filters). */
export function alertmanagerFetch(alerts: () => Array<{ labels: Record<string, string>; receivers: string[] }>): typeof fetch {
  return (async (input: string | URL | Request) => {
    const u = new URL(String(input));
    const filters = u.searchParams.getAll('filter').map((f) => /^([^=]+)="(.*)"$/.exec(f)!);
    const out = alerts()
      .filter((a) => filters.every(([, k, v]) => a.labels[k!] === v))
      .map((a, i) => ({
        fingerprint: `fp${i}`,
        labels: a.labels,
        annotations: {},
        startsAt: new Date().toISOString(),
        generatorURL: '',
        status: { state: 'active' },
        receivers: a.receivers.map((name) => ({ name })),
      }));
    return new Response(JSON.stringify(out), { status: 200, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
}

/**
 * A drill's world in memory: Deployment shop/web at revision 1 (demo-like: failing while any fault
 * is on its template, healthy and its alert gone once the template is back), the real engine and
 * Deployment action over a FakeKube with the controller above, the memory store, a Prometheus
 * answering ALERTS and triggers, and the Drills service (polling every 20 ms). `alertmanager`: the
 * alerts Alertmanager holds while an alert fires (unset: ALERTMANAGER_URL not set).
 */
export function drillWorld(opts: { env?: Record<string, string>; alertmanager?: Array<{ labels: Record<string, string>; receivers: string[] }> } = {}) {
  const config = loadConfig({ DRY_RUN: 'false', DRILL_NAMESPACES: NS, RECOVERY_TIMEOUT: '2s', RECOVERY_POLL: '20ms', LOCK_TTL: '2s', ...(opts.env ?? {}) });
  const store = new MemoryStore();
  const metrics = createMetrics({ defaults: false });
  const logger = pino({ level: 'silent' });
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, deployment('web:v1', 1, { replicas: 2 }));
  kube.add(RESOURCES.replicasets, replicaSet('web-aa01', 'web:v1', 1));
  const prometheus = new AlertingPrometheus();
  prometheus.value = 0.001;
  const preDrill = kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template;
  const healthy = JSON.stringify(preDrill);
  simulateDeploymentController(kube, (dep) => {
    const on = JSON.stringify(dep.spec.template) !== healthy;
    prometheus.value = on ? 0.2 : 0.001;
    if (!on) prometheus.alerts = [];
  });
  const holder = { rules: rules() };
  const actions = { Deployment: deploymentAction };
  const notifications = new Notifications([new CapturingNotifier()], logger, metrics);
  const engine = new Engine({ config, store, metrics, logger, rules: holder, prometheus, kube, actions, notifications, owner: 'replica-a' });
  const am = opts.alertmanager;
  const alertmanager = am ? new AlertmanagerApi({ url: 'http://127.0.0.1:9/', fetch: alertmanagerFetch(() => (prometheus.alerts.length ? am : [])) }) : null;
  const drills = new Drills({ config, store, metrics, logger, kube, prometheus, alertmanager, records: engine.records, rules: holder, actions, owner: 'replica-a', pollMs: 20 });
  return { config, store, metrics, logger, kube, prometheus, engine, drills, actions, preDrill, rules: holder };
}

/** The crash fault's record fields, with the fingerprint of the template the fault wrote (as a drill records it). */
export const crashFault = (hash: string): Partial<DrillRecord> => ({ fault: { kind: 'crash', summary: 'container web made to exit at start', templateHash: hash } });

/**
 * A drill whose replica (`replica-dead`) died after the crash fault on Deployment NS/web: its record
 * says running, its lock is gone. `record(faulted, revision)` gives the record's fields from the
 * fingerprint of the faulted template and the revision it made (an older record's, say).
 */
export async function orphanDrill(
  s: Pick<ReturnType<typeof drillWorld>, 'kube' | 'drills'>,
  id: string,
  record: (faulted: string, revision: number) => Partial<DrillRecord> = crashFault,
): Promise<DrillRecord> {
  const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };
  const w = (await readWorkload(s.kube, ref))!;
  const faulted = await applyFault(s.kube, ref, w.obj, { kind: 'crash' }, `rollguard drill ${id}: crash`);
  const rev = (await readWorkload(s.kube, ref))!.revision;
  const d: DrillRecord = {
    id,
    source: 'drill',
    target: `Deployment/${NS}/web`,
    ref,
    state: 'running',
    fault: { kind: 'crash', summary: 'container web made to exit at start' },
    requestedBy: 'test',
    owner: 'replica-dead',
    createdAt: Date.now(),
    updatedAt: Date.now(),
    deadlineMs: 60_000,
    watchesAlertmanager: false,
    before: { revision: w.revision, templateHash: w.templateHash, images: w.images },
    faultAt: Date.now(),
    links: {},
    seen: {},
    timeline: [],
    ...record(templateHash('Deployment', faulted.spec?.template), rev),
  };
  await s.drills.store.put(d, Date.now());
  await s.drills.store.index(d.id);
  return d;
}
