import { hostname } from 'node:os';
import { z } from 'zod';
import { deniedNamespace } from './guards/scope.js';
import { parseDuration as parsePromDuration } from './rules/duration.js';

/**
 * Every setting of rollguard: one zod schema, filled from the environment and overridden by
 * command-line flags (`--redis-url X` for REDIS_URL). A bad setting stops start-up with a message
 * naming it (see loadConfig).
 */
const duration = z
  .union([z.number(), z.string()])
  .transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: `expected a duration like 500ms, 30s, 5m, 1h or milliseconds, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });

/** A duration of at least `min` ms; `why` says what a shorter one would break. */
const durationAtLeast = (min: number, why: string) => duration.refine((ms) => ms >= min, { message: `expected at least ${min} ms: ${why}` });

const bool = z
  .union([z.boolean(), z.string()])
  .transform((v, ctx) => {
    if (typeof v === 'boolean') return v;
    const s = v.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
    ctx.addIssue({ code: 'custom', message: `expected true or false, got ${JSON.stringify(v)}` });
    return z.NEVER;
  });

const int = (min: number, max: number) => z.coerce.number({ message: 'expected an integer' }).int('expected an integer').min(min).max(max);

/**
 * Comma-separated secrets; several may be valid at once so that tokens can be rotated without downtime.
 * A value that holds no token (only commas and whitespace) is refused: left as it was, the setting
 * would count as unset and open the endpoint it guards, where an empty token file refuses every
 * request (src/http/auth.ts). Until 2026-12-07 `READ_TOKEN=","` left reads open.
 */
const secretList = z
  .string()
  .transform((s, ctx) => {
    const tokens = s.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
    if (tokens.length === 0) {
      ctx.addIssue({
        code: 'custom',
        message: 'holds no token, only commas or whitespace, which would leave its endpoint open: give the token(s), comma-separated, or unset the setting',
      });
      return z.NEVER;
    }
    return tokens;
  });

/**
 * GITOPS_ARGOCD_IN_CLUSTER's default: the address of the cluster Argo CD runs in (argo-cd's
 * KubernetesInternalAPIServerAddr), and the name it registers that cluster under.
 */
export const ARGOCD_IN_CLUSTER: readonly string[] = ['https://kubernetes.default.svc', 'in-cluster'];

/** The namespaces rollguard never touches, whatever SCOPE_DENY_NAMESPACES says (it adds to them). */
export const ALWAYS_DENIED_NAMESPACES: readonly string[] = ['kube-system', 'kube-public', 'kube-node-lease'];

const list = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((x) => x.trim()).filter((x) => x.length > 0));

const redisUrl = z.string().refine(
  (s) => /^(rediss?|redis-sentinel|redis-cluster):\/\//.test(s),
  'expected redis://, rediss://, redis-sentinel://[:password@]host:port[,host:port...]/MASTER_NAME or redis-cluster://[:password@]host:port[,host:port...]',
);

export const configSchema = z.object({
  HOST: z.string().default('0.0.0.0'),
  PORT: int(0, 65535).default(9095),
  /** A second listener serving GET /metrics alone (then not on PORT); unset: /metrics on PORT. */
  METRICS_PORT: int(0, 65535).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * Both listeners (PORT, METRICS_PORT): a request (headers and body, or a connection on which no
   * request arrives) not received whole within this is answered 408 and its connection closed,
   * checked every HTTP_REQUEST_TIMEOUT/4 (at most every 5 s). Until 2026-12-07 there was none: a
   * client sending a body one byte at a time held its connection for ever, a 401 one included.
   */
  HTTP_REQUEST_TIMEOUT: durationAtLeast(100, 'a request still on its way would be cut off').default(30_000),
  /** Both listeners: a kept-alive connection idle this long after its last answer is closed (Alertmanager and the CLI reopen one). */
  HTTP_IDLE_TIMEOUT: durationAtLeast(100, 'a kept-alive connection would be closed under a client about to reuse it').default(5_000),
  /** Connections each listener holds at once; more are closed as they come (a bound on the memory open connections take). */
  HTTP_MAX_CONNECTIONS: int(16, 1_000_000).default(1024),
  /**
   * Connections each listener holds at once from one remote address; more from it are closed as they
   * come (0: no such cap). Until 2026-12-07 there was none: one client holding HTTP_MAX_CONNECTIONS
   * kept-alive connections (a request every few seconds keeps each open) shut out Alertmanager and
   * the kubelet's probes. Behind an ingress or proxy every client has its address: raise it, or 0.
   */
  HTTP_MAX_CONNECTIONS_PER_ADDRESS: int(0, 1_000_000).default(64),

  /** Unset: the in-memory store (one replica only). */
  REDIS_URL: redisUrl.optional(),
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'expected letters, digits, _ . : -').default('rollguard'),
  REDIS_COMMAND_TIMEOUT: durationAtLeast(10, 'every Redis command would time out at once').default(2000),
  /**
   * Redis replicas that must confirm a write before rollguard relies on it (Redis' WAIT): a webhook
   * batch before its 200, and a rollback's claim, cooldown, budget and write-ahead before its first
   * cluster write. 0 (default): not asked. With a Sentinel-managed primary, a failover loses what its
   * replicas had not copied: an acknowledged alert, or the cooldown that stops a second rollback.
   */
  REDIS_MIN_REPLICAS_ACK: int(0, 16).default(0),
  /** How long the replicas of REDIS_MIN_REPLICAS_ACK may take; then intake answers 503 and a rollback does not write. */
  REDIS_REPLICA_ACK_TIMEOUT: durationAtLeast(1, 'WAIT with 0 would block for ever').default(500),

  /** Bearer tokens Alertmanager sends (http_config.authorization.credentials). */
  WEBHOOK_TOKEN: secretList.optional(),
  /** A file holding the token(s), one per line or comma-separated: re-read on every reload. */
  WEBHOOK_TOKEN_FILE: z.string().optional(),
  /** Basic auth Alertmanager sends (http_config.basic_auth). */
  WEBHOOK_BASIC_USER: z.string().optional(),
  /** One password, commas and all (never a list); surrounding whitespace trimmed, as Alertmanager trims password_file. */
  WEBHOOK_BASIC_PASSWORD: z
    .string()
    .transform((s) => s.trim())
    .optional(),
  /**
   * Serve an open webhook (none of the credentials above) while rollbacks are real (a cluster and
   * DRY_RUN=false): refused at start-up unless this says it is on purpose (the chart's
   * auth.webhook.allowUnauthenticated sets it).
   */
  WEBHOOK_ALLOW_UNAUTHENTICATED: bool.default(false),
  /**
   * Admin token for mutating endpoints (reload, pause, approve, manual rollback). No token may be in
   * two of WEBHOOK_TOKEN, ADMIN_TOKEN and READ_TOKEN (loadConfig refuses it); the files are compared
   * at start-up (announceAuth logs an error).
   */
  ADMIN_TOKEN: secretList.optional(),
  ADMIN_TOKEN_FILE: z.string().optional(),
  /** Read token for the records, reports and pause state (the admin token reads too); unset: reads are open. */
  READ_TOKEN: secretList.optional(),
  READ_TOKEN_FILE: z.string().optional(),

  BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024).default(4 * 1024 * 1024),
  /**
   * Webhook caps (src/alertmanager/limits.ts). A batch of more than ALERT_MAX_PER_BATCH alerts, or
   * whose groupKey, receiver or externalURL is over ALERT_MAX_LABEL_BYTES, is refused whole with 413
   * naming the setting. An alert over ALERT_MAX_LABELS, or with a label name or value, fingerprint or
   * generatorURL over ALERT_MAX_LABEL_BYTES, is refused alone (not queued; counted in
   * rollguard_alerts_refused_total, logged naming the setting) and the rest of its batch queued. A
   * kept annotation over ALERT_MAX_ANNOTATION_BYTES is cut, never refused. Of the alerts fetched
   * back from ALERTMANAGER_URL after a truncated notification, one fetch newly queues about
   * ALERT_MAX_PER_BATCH, fewer than twice it (those already queued not counted; each resend of the
   * group queues the next ones), so one fetch of a big group adds no more than that to the queue
   * (src/alertmanager/truncated.ts).
   * Until 2026-12-07 one fetch queued the whole group.
   */
  ALERT_MAX_PER_BATCH: int(1, 100_000).default(1000),
  ALERT_MAX_LABELS: int(1, 10_000).default(100),
  ALERT_MAX_LABEL_BYTES: int(16, 1024 * 1024).default(4096),
  /**
   * An alert whose label names and values, fingerprint and generatorURL add up to more bytes than
   * this is refused alone, as one over ALERT_MAX_LABEL_BYTES. Unset: four times ALERT_MAX_LABEL_BYTES
   * (16 KiB). Until 2026-12-08 only each string was bounded, so one alert of ALERT_MAX_LABELS labels
   * could hold about 800 kB, which its queue entry and its record kept.
   */
  ALERT_MAX_BYTES: int(64, 64 * 1024 * 1024).optional(),
  ALERT_MAX_ANNOTATION_BYTES: int(16, 1024 * 1024).default(4096),
  /** Annotations kept of each alert (records, notifications, reports); every other one is dropped at intake. */
  ALERT_ANNOTATIONS: list.default(['summary', 'description', 'runbook_url']),
  /**
   * How far ahead of rollguard's clock an alert's startsAt may be (the clocks of Prometheus and of
   * rollguard disagree a little). An alert that starts later than that is refused alone, as one over
   * a per-alert limit: not queued, counted in rollguard_alerts_refused_total{limit="ALERT_MAX_CLOCK_SKEW"}.
   */
  ALERT_MAX_CLOCK_SKEW: duration.default(5 * 60_000),
  /** How long a (fingerprint, startsAt, status) is remembered; longer than Alertmanager's repeat_interval. */
  DEDUPE_TTL: durationAtLeast(1000, 'an expiry of 0 is refused by Redis, so every webhook would fail').default(86_400_000),

  RULES_PATH: z.string().default('rules'),
  PROMETHEUS_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  PROMETHEUS_TIMEOUT: durationAtLeast(1, 'every query would time out at once').default(10_000),
  /** Queries one replica sends Prometheus at once; more wait their turn, P0 alerts' first, within PROMETHEUS_TIMEOUT (rollguard_dependency_calls_waiting). P0 alerts' queries have 4 places more of their own (src/turns.ts P0_EXTRA_CALLS). */
  PROMETHEUS_MAX_CONCURRENT: int(1, 256).default(16),
  /**
   * The most bytes of one answer from Prometheus read; past it the request is cut and the trigger's
   * outcome is error (held and escalated), saying to aggregate the query. An answer is parsed in
   * one go at about 20 times its size in heap: 4 MiB (~1,600 series of 121 samples) is ~70 MB,
   * within the image's 192 MB heap; an unbounded one OOM-killed the replica mid-evaluation.
   */
  PROMETHEUS_MAX_RESPONSE_BYTES: z.coerce
    .number({ message: 'expected a number of bytes' })
    .int('expected a whole number of bytes')
    .min(64 * 1024, 'expected at least 65536 (64 KiB): less would refuse the answers of ordinary trigger queries')
    .max(1024 * 1024 * 1024, 'expected at most 1073741824 (1 GiB): an answer that big would be parsed at about 20 times its size in heap; aggregate the query instead')
    .default(4 * 1024 * 1024),
  /**
   * Alertmanager's API (http(s)://host:9093; credentials in the URL are sent as basic auth). Set:
   * the alerts a receiver's max_alerts left out of a notification are fetched from it and queued.
   */
  ALERTMANAGER_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  /**
   * Fetches from ALERTMANAGER_URL one replica runs at once (each reads up to BODY_LIMIT_BYTES, with
   * retries); a truncated notification beyond them is not fetched (counted, logged naming this).
   */
  ALERTMANAGER_MAX_FETCHES: int(1, 64).default(4),

  /** kubeconfig file; unset: in-cluster config when running in a pod, otherwise no cluster (dry-run). */
  KUBECONFIG: z.string().optional(),
  /** Set by Kubernetes in every pod: with KUBECONFIG unset, rollguard uses the pod's ServiceAccount. */
  KUBERNETES_SERVICE_HOST: z.string().optional(),
  /** Reads one replica sends the API server at once; more wait their turn, P0 alerts' first, within the read's deadline (rollguard_dependency_calls_waiting). P0 alerts' reads have 4 places more of their own (src/turns.ts P0_EXTRA_CALLS). Writes are not held back. */
  KUBE_MAX_CONCURRENT_READS: int(1, 256).default(16),
  /** The helm binary, for HelmRelease targets (`helm rollback`). */
  HELM_BIN: z.string().min(1).default('helm'),
  /** Global dry-run: decide and record everything, change nothing. Default: on when no cluster is configured. */
  DRY_RUN: bool.optional(),

  /**
   * Scope guard: the namespaces rollguard may touch, by name (empty: all). No globs: the chart
   * grants rights in each one listed (a Role there), and a glob names no namespace.
   */
  SCOPE_NAMESPACES: list.default([]).refine(
    (l) => !l.some((ns) => /[*?]/.test(ns)),
    'expected namespace names: a glob (* or ?) names no namespace here (the chart makes a Role in each one listed); list each namespace by name',
  ),
  /**
   * Scope guard: namespaces rollguard never touches, names or globs (`*` matches any characters,
   * `prod-*`). Always added to kube-system, kube-public and kube-node-lease, which are denied
   * whatever this says: setting it (`payments`) adds to them and never replaces them.
   */
  SCOPE_DENY_NAMESPACES: list
    .default([])
    .refine((l) => !l.some((ns) => ns.includes('?')), 'expected namespace names or globs with * (any characters); ? is not a wildcard here')
    // a name no namespace can have (upper case, brackets) would deny nothing, silently
    .refine((l) => l.every((ns) => /^[a-z0-9*-]+$/.test(ns)), 'expected namespace names (lower-case letters, digits and -) or globs with *: an entry no namespace can match denies nothing')
    .transform((l) => [...new Set([...ALWAYS_DENIED_NAMESPACES, ...l])]),
  /** Scope guard: targets never touched, as Kind/namespace/name globs. */
  SCOPE_DENY_TARGETS: list.default([]),
  /**
   * Namespaces rollback drills may run in (POST /v1/drills, `rollguard drill`): a drill breaks a
   * workload on purpose. Empty: drills are off.
   */
  DRILL_NAMESPACES: list.default([]),
  /** Budget guard: rollbacks across the whole cluster per rolling hour (a storm stops here). */
  BUDGET_CLUSTER_PER_HOUR: int(0, 10_000).default(5),
  /** Concurrency guard: rollbacks in flight at once, over all replicas. */
  MAX_CONCURRENT_ROLLBACKS: int(1, 1000).default(2),
  /** How long a rollout may take to complete before the rollback counts as unverified. */
  VERIFY_TIMEOUT: durationAtLeast(1, 'no rollout could be verified').default(600_000),
  /** After the rollout, how long the trigger may take to clear in Prometheus before the rollback counts as failed. */
  RECOVERY_TIMEOUT: durationAtLeast(1, 'no recovery could be seen').default(300_000),
  RECOVERY_POLL: durationAtLeast(10, 'Prometheus would be queried without a pause').default(15_000),
  /** GitOps owners (src/gitops/): the namespace of Argo CD Applications named by a tracking id without one, and the instance label of label tracking. */
  GITOPS_ARGOCD_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a namespace name').default('argocd'),
  GITOPS_ARGOCD_INSTANCE_LABEL: z.string().min(1).default('app.kubernetes.io/instance'),
  /**
   * The Argo CD destinations that are the cluster rollguard runs in: servers (an entry with `://`,
   * compared with spec.destination.server, a trailing slash aside) and names (compared with
   * spec.destination.name). An Application deploying elsewhere is not taken for the owner of this
   * cluster's objects (src/gitops/verify.ts). Add the name or external API address this cluster is
   * registered under in Argo CD, if it is not only the in-cluster default.
   */
  GITOPS_ARGOCD_IN_CLUSTER: list
    .default([...ARGOCD_IN_CLUSTER])
    .refine((l) => l.length > 0, `expected at least one destination server or name of the cluster rollguard runs in (default ${ARGOCD_IN_CLUSTER.join(',')})`),
  /** The GitOps owners a rollback may suspend, as Kind/namespace/name globs (empty: any owner that lists the target and passes SCOPE_*). */
  GITOPS_OWNER_ALLOW: list.default([]).refine(
    (globs) => globs.every((g) => /^(Application|Kustomization|HelmRelease|\*)\/[^/]+\/[^/]+$/.test(g)),
    'expected Kind/namespace/name globs, Kind one of Application, Kustomization, HelmRelease or *',
  ),
  /**
   * Configuration snapshots (src/config-deps/watch.ts): rollguard watches, in its scope, the
   * ConfigMaps that Deployments, StatefulSets and DaemonSets use and keeps each content as an
   * immutable snapshot ConfigMap beside it, so that a rule's `configDrift: restore` and a
   * `kind: ConfigMap` target can write it back. Needs a cluster and the chart's configSnapshots rights.
   */
  CONFIG_SNAPSHOTS: bool.default(false),
  /**
   * Whether the planning check of a restored revision's configuration (src/config-deps/check.ts)
   * reads the metadata of the Secrets it uses. RBAC has no metadata-only right: reading them takes
   * `get secrets`, which also allows reading their data. Off: no Secret is read, and each one a
   * revision uses is listed as drift that could not be checked (the rule's configDrift policy
   * decides, as for a Secret that cannot be read); ConfigMaps are still checked. On by default, so
   * that a plain start with an administrator's kubeconfig checks both; the chart sets it from
   * actions.checkSecrets, which is off by default when rollguard acts cluster-wide (no Secret
   * right at all), unless configSnapshots.secrets grants Secret rights anyway.
   */
  CONFIG_CHECK_SECRETS: bool.default(true),
  /** Snapshots kept per ConfigMap (or Secret); beyond, the oldest are deleted. */
  CONFIG_SNAPSHOTS_MAX: int(1, 1000).default(10),
  /** Secrets too (their snapshots are Secrets; their data never goes anywhere else). Off: a Secret's drift is reported, never restored. */
  CONFIG_SNAPSHOTS_SECRETS: bool.default(false),
  /**
   * The key snapshots are signed with (HMAC-SHA256): only a snapshot rollguard signed is ever
   * restored, so one forged by whoever may create ConfigMaps does not count. Required with
   * CONFIG_SNAPSHOTS; the same on every replica and kept across restarts (the chart generates one).
   */
  CONFIG_SNAPSHOTS_KEY: z.string().min(32, 'expected at least 32 characters (the chart generates one: configSnapshots.existingSecret to bring your own)').optional(),
  /** Per-target lock TTL (renewed while the rollback runs). */
  LOCK_TTL: durationAtLeast(150, 'locks are renewed every LOCK_TTL/3 and at most every 50 ms, so a shorter lock would lapse while its rollback runs').default(30_000),
  /** How often due re-checks, maintenance windows, approvals and orphaned rollbacks are looked at. */
  SCHEDULER_INTERVAL: durationAtLeast(100, 'the scheduler would list every open record without a pause').default(5_000),
  /**
   * A rollback held this long (Prometheus down or answering an error, and the rule holds rather than
   * act unconfirmed) is closed expired and escalated: by then it is a human's to take. The default is
   * the runbooks' MTTR target (30 minutes). It also bounds what one held record costs: a re-check a
   * minute, each a Prometheus query and three timeline steps.
   */
  HOLD_MAX_AGE: duration.default(30 * 60_000),
  /** Closed rollback records older than this are deleted (open ones never are). */
  RECORD_RETENTION: duration.default(30 * 86_400_000),
  /** Closed records that changed nothing (not confirmed, blocked, refused, error, dry run) go sooner: an alert flood's records do not fill the store for RECORD_RETENTION. */
  RECORD_RETENTION_NO_ACTION: duration.default(3 * 86_400_000),
  /** Alerts queued and not yet handled, both stores: intake beyond answers 503 (Alertmanager retries). */
  QUEUE_MAX_DEPTH: int(1, 10_000_000).default(10_000),
  /** Redis store: intake answers 503 once Redis uses this share of its maxmemory, keeping the rest for the engine; 0: off. */
  REDIS_INTAKE_MAX_MEMORY: z.coerce.number({ message: 'expected a share of maxmemory between 0 and 1, e.g. 0.8' }).min(0).max(1).default(0.8),
  /** Redis store: beyond this many records, closed records that changed nothing are deleted, oldest first (log line, metric). */
  REDIS_MAX_RECORDS: int(100, 100_000_000).default(30_000),
  /** In-memory store: closed records beyond this many are dropped, oldest first (with a log line). */
  MEMORY_MAX_RECORDS: int(100, 10_000_000).default(5_000),
  /** In-memory store: dedupe keys beyond this many are forgotten, oldest first. */
  MEMORY_MAX_DEDUPE_KEYS: int(100, 100_000_000).default(100_000),
  /** In-memory store: claims, alert links and resolution marks (written per alert) beyond this many are dropped: spent ones first, then oldest first. */
  MEMORY_MAX_KEYS: int(100, 100_000_000).default(20_000),
  /** Notifications: a Slack-compatible incoming webhook, and a generic JSON webhook. */
  NOTIFY_SLACK_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  NOTIFY_WEBHOOK_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  NOTIFY_TIMEOUT: durationAtLeast(1, 'every notification would time out at once').default(5_000),
  /** How long after its first attempt a notification that failed on no answer, a 5xx or a 429 is tried again (0: never). */
  NOTIFY_RETRY_FOR: duration.default(120_000),
  /**
   * Notifications of rollbacks not done (blocked, dry run, notify only) sent per minute per
   * replica; past it, the rest of the minute's are summed up in one summary (src/notify/fold.ts).
   */
  NOTIFY_FOLD_AFTER: int(1, 1_000_000).default(20),
  /** Where the demo/ops links in notifications point (the rollguard API's external URL). */
  EXTERNAL_URL: z.string().default(''),

  /**
   * This replica's name: queue consumer, lock and claim owner. Unique per live process (the default
   * is host and pid). Never "released:…": that prefix marks a claim a replica gave up (intake.ts);
   * never with whitespace: a lock's holder is "<name> for <record id>" (guards/lock.ts).
   */
  CONSUMER_NAME: z
    .string()
    .min(1)
    .refine((v) => !v.startsWith('released:'), { message: 'must not start with "released:" (that prefix marks a claim given up by a replica)' })
    .refine((v) => !/\s/.test(v), { message: 'must not contain whitespace (a lock names its holder as "<CONSUMER_NAME> for <record id>", read back by the other replicas)' })
    .default(`${hostname()}-${process.pid}`),
  /** A queued entry taken by a replica and not acked within this time is taken up by another. */
  QUEUE_CLAIM_IDLE: durationAtLeast(100, 'replicas would take over each other\'s events while they are being handled').default(60_000),
  /**
   * An event is handled at most this many times, whatever stops it (errors, EVENT_DEADLINE, a replica
   * dying or stalling while holding it); delivered again after that, it is dead-lettered and escalated.
   */
  QUEUE_MAX_DELIVERIES: int(1, 100).default(5),
  /**
   * Queued events one replica handles at once (events for one target never at once; P0 first as
   * places free). The load this puts on Prometheus and the API server has its own bounds:
   * PROMETHEUS_MAX_CONCURRENT, KUBE_MAX_CONCURRENT_READS.
   */
  QUEUE_CONCURRENCY: int(1, 256).default(32),
  /**
   * Due records the scheduler re-checks at once (held, scheduled, left deciding), on its own
   * timer beside the QUEUE_CONCURRENCY events in hand; their queries and reads take their turn
   * with the events', by rule priority.
   */
  RECHECK_CONCURRENCY: int(1, 256).default(16),
  /** Handling one event longer than this is abandoned (log line, metric); it stays queued. Unset: QUEUE_CLAIM_IDLE. */
  EVENT_DEADLINE: durationAtLeast(1, 'every event would be abandoned at once').optional(),
  SHUTDOWN_TIMEOUT: duration.default(25_000),
});

/** Where the cluster comes from: KUBECONFIG, else the pod's ServiceAccount (in a pod), else none. */
export function clusterSource(c: { KUBECONFIG?: string | undefined; KUBERNETES_SERVICE_HOST?: string | undefined }): 'kubeconfig' | 'in-cluster' | 'none' {
  if (c.KUBECONFIG !== undefined) return 'kubeconfig';
  return c.KUBERNETES_SERVICE_HOST !== undefined ? 'in-cluster' : 'none';
}

/** The settings with what follows from them: DRY_RUN unset means on exactly when there is no cluster. */
const settledSchema = configSchema.transform((c) => ({ ...c, DRY_RUN: c.DRY_RUN ?? clusterSource(c) === 'none' }));

/** The validated configuration; frozen: nothing changes it after loadConfig. */
export type Config = Readonly<z.output<typeof settledSchema>>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A Prometheus-style duration (`5m`, `1h30m`, `250ms`; see rules/duration.ts) or plain milliseconds. */
export function parseDuration(v: number | string): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : null;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s);
  if (s === '') return null;
  try {
    return parsePromDuration(s);
  } catch {
    return null;
  }
}

const BOOLEAN_SETTINGS = new Set(['DRY_RUN', 'CONFIG_CHECK_SECRETS', 'CONFIG_SNAPSHOTS', 'CONFIG_SNAPSHOTS_SECRETS', 'WEBHOOK_ALLOW_UNAUTHENTICATED']);

/**
 * `--redis-url=x` / `--redis-url x` / `--dry-run` → { REDIS_URL: 'x', DRY_RUN: 'true' }. A setting
 * that is not a switch given no value (`--admin-token` last, or before another flag) is a
 * ConfigError: until 2026-12-07 it became the value `true`, a guessable admin token. So is a flag
 * given an empty (or blank) value, for every setting (`--read-token=`, `--read-token "$UNSET"`):
 * until 2026-12-07 it was taken as unset and won over the environment, so an empty flag opened
 * reads or the webhook whatever READ_TOKEN or WEBHOOK_TOKEN said. No setting has an empty value
 * that means anything but "unset", which not passing the flag already says.
 */
export function flagsToSettings(argv: string[]): { settings: Record<string, string>; rest: string[] } {
  const settings: Record<string, string> = {};
  const rest: string[] = [];
  const known = new Set(Object.keys(configSchema.shape));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    const key = m ? m[1]!.toUpperCase().replaceAll('-', '_') : '';
    if (!m || !known.has(key)) {
      rest.push(a);
      continue;
    }
    const next = argv[i + 1];
    if (m[2] !== undefined) settings[key] = m[2];
    else if (BOOLEAN_SETTINGS.has(key)) settings[key] = next === 'true' || next === 'false' ? argv[++i]! : 'true';
    else if (next !== undefined && !next.startsWith('--')) settings[key] = argv[++i]!;
    else throw new ConfigError(`${flagOf(key)} needs a value (${flagOf(key)}=VALUE or ${flagOf(key)} VALUE), or set ${key}`);
    if (settings[key]!.trim() === '') {
      throw new ConfigError(`${flagOf(key)} was given an empty value: to leave a setting unset, do not pass it (an empty value would unset ${key} over the environment's)`);
    }
  }
  return { settings, rest };
}

const flagOf = (key: string): string => `--${key.toLowerCase().replaceAll('_', '-')}`;

/** The token settings compared with each other: each credential has tokens of its own. */
export const TOKEN_SETTINGS = ['WEBHOOK_TOKEN', 'ADMIN_TOKEN', 'READ_TOKEN'] as const;

/**
 * The first two of `lists` (by name) that share a token, or undefined. The tokens themselves are
 * never named: the answer goes into errors and logs.
 */
export function sharedTokens(lists: Record<string, readonly string[] | undefined>): [string, string] | undefined {
  const names = Object.keys(lists);
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const a = lists[names[i]!] ?? [];
      const b = new Set(lists[names[j]!] ?? []);
      if (a.some((x) => b.has(x))) return [names[i]!, names[j]!];
    }
  }
  return undefined;
}

function sharedTokenSettings(cfg: Pick<Config, (typeof TOKEN_SETTINGS)[number]>): [string, string] | undefined {
  return sharedTokens(Object.fromEntries(TOKEN_SETTINGS.map((k) => [k, cfg[k]])));
}

/** Validates the whole configuration; throws ConfigError naming every bad setting. */
export function loadConfig(env: Record<string, string | undefined>, flags: Record<string, string> = {}): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const v = flags[key] ?? env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  const parsed = settledSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? '?');
      return `  ${key} (${flagOf(key)}): ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const cfg = parsed.data;
  const shared = sharedTokenSettings(cfg);
  if (shared) {
    throw new ConfigError(
      `invalid configuration:\n  ${shared[0]} (${flagOf(shared[0])}), ${shared[1]} (${flagOf(shared[1])}): a token is in both; each credential needs its own token (a webhook token that also reads, or a read token that also administers, gives its holder more than the endpoint it is meant for): give each setting different tokens`,
    );
  }
  if (cfg.WEBHOOK_BASIC_USER !== undefined && !cfg.WEBHOOK_BASIC_PASSWORD?.length) {
    throw new ConfigError('invalid configuration:\n  WEBHOOK_BASIC_PASSWORD (--webhook-basic-password): required when WEBHOOK_BASIC_USER is set');
  }
  // Until 2026-12-07 the basic-auth password could be the admin (or read, or a webhook) token: whoever
  // reads Alertmanager's configuration then held that credential too. The value is never named.
  const password = cfg.WEBHOOK_BASIC_PASSWORD;
  const sameAsPassword = password?.length ? TOKEN_SETTINGS.find((k) => cfg[k]?.includes(password)) : undefined;
  if (sameAsPassword) {
    throw new ConfigError(
      `invalid configuration:\n  WEBHOOK_BASIC_PASSWORD (--webhook-basic-password), ${sameAsPassword} (${flagOf(sameAsPassword)}): the password is also a token of ${sameAsPassword}; each credential needs a secret of its own: give them different values`,
    );
  }
  if (cfg.EVENT_DEADLINE !== undefined && cfg.EVENT_DEADLINE > cfg.QUEUE_CLAIM_IDLE) {
    throw new ConfigError(
      `invalid configuration:\n  EVENT_DEADLINE (--event-deadline): at most QUEUE_CLAIM_IDLE (${cfg.QUEUE_CLAIM_IDLE} ms), after which another replica takes the event over anyway`,
    );
  }
  if (cfg.REDIS_MIN_REPLICAS_ACK > 0) {
    if (!cfg.REDIS_URL) throw new ConfigError('invalid configuration:\n  REDIS_MIN_REPLICAS_ACK (--redis-min-replicas-ack): needs REDIS_URL (the in-memory store has no replicas)');
    if (/^redis-cluster:/.test(cfg.REDIS_URL)) {
      throw new ConfigError('invalid configuration:\n  REDIS_MIN_REPLICAS_ACK (--redis-min-replicas-ack): not supported with a Redis Cluster URL yet (use a single primary or Sentinel, or leave it 0)');
    }
    if (cfg.REDIS_REPLICA_ACK_TIMEOUT > cfg.REDIS_COMMAND_TIMEOUT / 2) {
      throw new ConfigError(
        `invalid configuration:\n  REDIS_REPLICA_ACK_TIMEOUT (--redis-replica-ack-timeout): at most half of REDIS_COMMAND_TIMEOUT (${cfg.REDIS_COMMAND_TIMEOUT} ms), which would otherwise cut the wait for the replicas short`,
      );
    }
  }
  if (cfg.CONFIG_SNAPSHOTS && !cfg.CONFIG_SNAPSHOTS_KEY) {
    throw new ConfigError(
      'invalid configuration:\n  CONFIG_SNAPSHOTS_KEY (--config-snapshots-key): required with CONFIG_SNAPSHOTS=true: at least 32 random characters, the same on every replica and kept across restarts (snapshots are signed with it, and only signed ones are restored); the chart generates one',
    );
  }
  if (cfg.CONFIG_SNAPSHOTS_SECRETS && !cfg.CONFIG_SNAPSHOTS) {
    throw new ConfigError('invalid configuration:\n  CONFIG_SNAPSHOTS_SECRETS (--config-snapshots-secrets): needs CONFIG_SNAPSHOTS=true (Secrets are snapshotted beside ConfigMaps, never alone)');
  }
  const denied = cfg.DRILL_NAMESPACES.filter((ns) => deniedNamespace(cfg.SCOPE_DENY_NAMESPACES, ns) !== undefined || (cfg.SCOPE_NAMESPACES.length > 0 && !cfg.SCOPE_NAMESPACES.includes(ns)));
  if (denied.length > 0) {
    throw new ConfigError(
      `invalid configuration:\n  DRILL_NAMESPACES (--drill-namespaces): ${denied.join(', ')} ${denied.length === 1 ? 'is' : 'are'} outside what rollguard may touch (SCOPE_NAMESPACES, SCOPE_DENY_NAMESPACES): it could neither roll back nor restore a drill there`,
    );
  }
  return Object.freeze(cfg);
}
