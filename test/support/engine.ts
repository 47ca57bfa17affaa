import { pino, type Logger } from 'pino';
import type { Action, ActionContext, ExecuteResult, RollbackPlan, TargetKind, TargetRef, VerifyResult } from '../../src/actions/action.js';
import type { Alert } from '../../src/alertmanager/alert.js';
import { createActions } from '../../src/actions/index.js';
import { loadConfig } from '../../src/config.js';
import { EngineContext } from '../../src/engine/context.js';
import { Engine } from '../../src/engine/pipeline.js';
import type { Kube } from '../../src/kube/kube.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { createKube } from '../../src/kube/config.js';
import type { HelmActionOptions } from '../../src/actions/helm.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications, type Notification, type Notifier } from '../../src/notify/notifier.js';
import { PrometheusUnavailableError, type PrometheusApi, type RangeSeries } from '../../src/prometheus/client.js';
import { parseRuleFile } from '../../src/rules/loader.js';
import { RuleSet } from '../../src/rules/ruleset.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store } from '../../src/store/store.js';
import { capturingLogger } from './secret-template.js';

/**
 * An in-memory Deployment behind the Action interface: for the engine's unit tests (the real
 * actions are proven against the real control plane in test/e2e).
 */
export class FakeDeploymentAction implements Action {
  readonly kind = 'Deployment' as const;
  executed: { ref: TargetRef; changeCause: string }[] = [];
  createdAt = Date.now() - 10 * 60_000;
  annotations: Record<string, string> = {};
  verifyOutcome: VerifyResult['outcome'] = 'succeeded';
  /** delay inside execute, to make concurrent runs overlap */
  executeDelayMs = 0;
  /** delay inside verify, by target name (a slow rollout); verify returns early when the engine stops */
  verifyDelayMs: Record<string, number> = {};
  /** one flag for the whole double: once any target is rolled back, every plan finds its template matching */
  applied = false;

  /** Whether `name` shows as rolled back already. */
  protected appliedTo(_name: string): boolean {
    return this.applied;
  }

  /** Notes that `name` was rolled back. */
  protected rolledBack(_name: string): void {
    this.applied = true;
  }

  async plan(ref: TargetRef): Promise<RollbackPlan> {
    const plan: RollbackPlan = {
      target: ref,
      kind: 'Deployment',
      fromRevision: 2,
      toRevision: 1,
      current: { revision: 2, createdAt: this.createdAt, annotations: this.annotations },
      summary: `Deployment ${ref.namespace}/${ref.name}: revision 2 -> 1`,
      plannedAt: Date.now(),
    };
    if (this.appliedTo(ref.name)) plan.refusal = { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' };
    return plan;
  }

  async execute(_plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
    if (this.executeDelayMs) await new Promise((r) => setTimeout(r, this.executeDelayMs));
    await ctx.checkFence();
    this.executed.push({ ref: _plan.target, changeCause: ctx.changeCause });
    this.rolledBack(_plan.target.name);
    return { applied: true, message: 'patched', at: Date.now(), attempts: 1, newGeneration: 3 };
  }

  async verify(plan: RollbackPlan, ctx: ActionContext): Promise<VerifyResult> {
    const ms = this.verifyDelayMs[plan.target.name] ?? 0;
    if (ms > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        ctx.signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
      if (ctx.signal?.aborted) return { outcome: 'unverified', message: 'cancelled: shutting down' };
    }
    return { outcome: this.verifyOutcome, message: `rollout ${this.verifyOutcome}` };
  }
}

/** The Deployment double with each target rolled back on its own (setting `applied` false forgets them all: new bad deploys). */
export class PerTargetDeploymentAction extends FakeDeploymentAction {
  private readonly done = new Set<string>();
  protected override appliedTo(name: string): boolean {
    if (!this.applied) this.done.clear();
    return this.done.has(name);
  }
  protected override rolledBack(name: string): void {
    this.done.add(name);
    this.applied = true;
  }
}

/** A Prometheus answering a flat series: `value` while bad, `healthyValue` once healthy; or down. */
export class FakePrometheus implements PrometheusApi {
  value = 0.2;
  down = false;
  queries: string[] = [];
  /** evaluation times of instant queries */
  instantTimes: number[] = [];
  async query(expr: string, timeMs: number) {
    this.queries.push(expr);
    this.instantTimes.push(timeMs);
    if (this.down) throw new PrometheusUnavailableError('connect ECONNREFUSED 127.0.0.1:9');
    return [{ labels: {}, t: timeMs, v: this.value }];
  }
  async queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]> {
    this.queries.push(expr);
    if (this.down) throw new PrometheusUnavailableError('connect ECONNREFUSED 127.0.0.1:9');
    const samples = [];
    for (let t = startMs; t <= endMs; t += stepMs) samples.push({ t, v: this.value });
    return [{ labels: {}, samples }];
  }
}

export class CapturingNotifier implements Notifier {
  readonly name = 'capture';
  sent: Notification[] = [];
  async send(n: Notification): Promise<void> {
    this.sent.push(n);
  }
}

export const RULES = `
rules:
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
  - name: latency-p1
    match: ['alertname="HighLatency"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    guards: { approval: { required: true, expiresAfter: 10m } }
  - name: minor
    match: ['alertname="MinorBug"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P2
  - name: held-when-down
    match: ['alertname="SlowBurn"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
`;

/** A rule rolling back the Helm release an alert names (label release), alert ReleaseErrors. */
export const HELM_RULES = `rules:
  - name: release-errors
    match: ['alertname="ReleaseErrors"']
    target: { kind: HelmRelease, namespace: "{{ $labels.namespace }}", name: "{{ $labels.release }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
`;

/** A rule with an ordered list of three targets (api, auth, web in prod), alert ReleaseErrors. */
export const CHAIN_RULES = `
rules:
  - name: release-train
    match: ['alertname="ReleaseErrors"']
    target:
      - { kind: Deployment, namespace: prod, name: api }
      - { kind: Deployment, namespace: prod, name: auth }
      - { kind: Deployment, namespace: prod, name: web }
    trigger: { kind: error_rate, selector: { namespace: prod }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
`;

/** A P0 latency rule whose baseline is the p95 before the current rollout began (relativeTo: rollout_start). */
export const ROLLOUT_START_RULE = (action = 'rollback') => `
rules:
  - name: latency-p95-2x-baseline
    match: ['alertname="LatencyAboveBaseline"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger:
      kind: latency
      quantile: 0.95
      selector: { namespace: "{{ $labels.namespace }}" }
      threshold: 2
      baseline: { relativeTo: rollout_start, window: 10m }
      for: 2m
      step: 15s
    priority: P0
    action: ${action}
`;

export function rules(text = RULES): RuleSet {
  const { rules: r, errors } = parseRuleFile('test-rules.yaml', text);
  if (errors.length) throw new Error(JSON.stringify(errors));
  return new RuleSet(r);
}

let seq = 0;
/**
 * A firing alert that started 3 minutes ago: after the fakes' revisions were deployed (10 minutes
 * ago), as an alert a deploy causes does. On a real control plane use `firingNow`.
 */
export function firing(alertname: string, deployment = 'checkout', over: Partial<Alert> = {}): Alert {
  const now = Date.now();
  return {
    fingerprint: `fp-${alertname}-${deployment}-${++seq}`,
    status: 'firing',
    labels: { alertname, namespace: 'prod', deployment },
    annotations: { summary: `${alertname} on ${deployment}` },
    startsAt: now - 3 * 60_000,
    generatorURL: '',
    receiver: 'rollguard',
    groupKey: 'g',
    externalURL: '',
    receivedAt: now,
    ...over,
  };
}

/**
 * A firing alert that started just now, for a real control plane where the test deployed the
 * revision moments ago: an alert starts after the deploy that causes it, and the recent-deploy
 * guard never rolls back a revision deployed after its alert started.
 */
export function firingNow(alertname: string, deployment = 'checkout', over: Partial<Alert> = {}): Alert {
  return firing(alertname, deployment, { startsAt: Date.now(), ...over });
}

export interface TestEngineOptions {
  env?: Record<string, string>;
  store?: Store;
  owner?: string;
  action?: FakeDeploymentAction;
  prometheus?: FakePrometheus | null;
  ruleText?: string;
  /** the cluster (default none: the actions are doubles) */
  kube?: Kube;
  /** the actions by kind (default: `action` for Deployment) */
  actions?: Partial<Record<TargetKind, Action>>;
  /** default: silent */
  logger?: Logger;
  /** the engine's wall clock (default Date.now) */
  now?: () => number;
  /** the notifications' options (retries, folding; default: neither) */
  notify?: ConstructorParameters<typeof Notifications>[4];
}

export function testEngine(opts: TestEngineOptions = {}) {
  // DRY_RUN=false: the engine's actions are the in-memory doubles here, as if a cluster were configured.
  const config = loadConfig({ DRY_RUN: 'false', RECOVERY_TIMEOUT: '300ms', RECOVERY_POLL: '20ms', LOCK_TTL: '2s', ...(opts.env ?? {}) });
  const store = opts.store ?? new MemoryStore();
  const metrics = createMetrics({ defaults: false });
  const logger = opts.logger ?? pino({ level: 'silent' });
  const action = opts.action ?? new FakeDeploymentAction();
  const prometheus = opts.prometheus === undefined ? new FakePrometheus() : opts.prometheus;
  const notifier = new CapturingNotifier();
  const notifications = new Notifications([notifier], logger, metrics, 5000, opts.notify ?? {});
  const holder = { rules: rules(opts.ruleText) };
  const engine = new Engine({
    config,
    store,
    metrics,
    logger,
    rules: holder,
    prometheus,
    kube: opts.kube ?? null,
    actions: opts.actions ?? { Deployment: action },
    notifications,
    owner: opts.owner ?? 'replica-a',
    ...(opts.now ? { now: opts.now } : {}),
  });
  let n = 0;
  // The engine acks an event once the cluster is changed and verifies in the background: wait for it.
  const deliver = async (alert: Alert) => {
    try {
      await engine.handle({ id: `ev-${++n}`, alert, deliveries: 1 });
    } finally {
      await engine.idle();
    }
  };
  /** a rule reload: the engine reads the rules in force from `holder` (as from src/rules/holder.ts) */
  const reload = (text: string) => {
    holder.rules = rules(text);
  };
  return { engine, store, metrics, action, prometheus, notifier, notifications, config, deliver, reload };
}

/** The engine's Prometheus double reads healthy once a rollback has written, so its verification succeeds. */
export function recoversOnWrite(e: Pick<ReturnType<typeof testEngine>, 'action' | 'prometheus'>): void {
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await execute(p, c);
    e.prometheus!.value = 0.001;
    return r;
  };
}

/**
 * The engine acting on a real control plane as rollguard's ServiceAccount (`kubeconfig`), with no
 * Prometheus unless given (rules act per their onPrometheusDown), every action kind, a capturing notifier and a
 * capturing logger: what the e2e tests of one engine feature share.
 */
export async function clusterEngine(o: { kubeconfig: string; env: Record<string, string>; rulesText: string; store: Store; owner: string; prometheus?: PrometheusApi; helm?: HelmActionOptions }) {
  const logs = capturingLogger();
  const notifier = new CapturingNotifier();
  const config = loadConfig(o.env);
  const metrics = createMetrics({ defaults: false });
  const { rules, errors } = parseRuleFile(`${o.owner}.yaml`, o.rulesText);
  if (errors.length) throw new Error(JSON.stringify(errors));
  const notifications = new Notifications([notifier], logs.logger, metrics);
  const kube = (await createKube({ mode: 'kubeconfig', path: o.kubeconfig }))!;
  const engine = new Engine({ config, store: o.store, metrics, logger: logs.logger, rules: { rules: new RuleSet(rules) }, prometheus: o.prometheus ?? null, kube, actions: createActions(o.helm ? { helm: o.helm } : {}), notifications, owner: o.owner });
  return { engine, config, kube, metrics, notifier, notifications, logs };
}

/** The record a replica that died after the write left: in_progress, executedAt set, its lock expired. */
export function orphanRecord(id: string, alert?: Alert): RollbackRecord {
  const now = Date.now();
  const a = alert ?? firing('HighErrorRate');
  return {
    id,
    target: 'Deployment/prod/checkout',
    state: 'in_progress',
    createdAt: now,
    updatedAt: now,
    ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' },
    source: 'alert',
    rule: 'error-rate',
    guards: [],
    dryRun: false,
    timeline: [],
    owner: 'dead-replica',
    lockToken: 1,
    alert: { fingerprint: a.fingerprint, status: 'firing', labels: a.labels, annotations: {}, startsAt: a.startsAt, receivedAt: now, generatorURL: '' },
    times: { startedAt: now - 1000, executedAt: now - 500 },
  };
}

/** An EngineContext with nothing behind it (no cluster, no Prometheus, no action, no notifier), on the in-memory store. */
export function bareEngineContext(env: Record<string, string> = {}): EngineContext {
  const logger = pino({ level: 'silent' });
  const metrics = createMetrics({ defaults: false });
  return new EngineContext({
    config: loadConfig(env),
    store: new MemoryStore(),
    metrics,
    logger,
    rules: { rules: rules() },
    prometheus: null,
    kube: null,
    actions: {},
    notifications: new Notifications([], logger, metrics),
    owner: 'replica-a',
  });
}
