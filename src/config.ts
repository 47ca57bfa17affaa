import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
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

/** Comma-separated secrets; several may be valid at once so that tokens can be rotated without downtime. */
const secretList = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0));

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
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  /** Unset: the in-memory store (one replica only). */
  REDIS_URL: redisUrl.optional(),
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'expected letters, digits, _ . : -').default('rollguard'),
  REDIS_COMMAND_TIMEOUT: duration.default(2000),

  /** Bearer tokens Alertmanager sends (http_config.authorization.credentials). */
  WEBHOOK_TOKEN: secretList.optional(),
  /** A file holding the token(s), one per line or comma-separated: re-read on every reload. */
  WEBHOOK_TOKEN_FILE: z.string().optional(),
  /** Basic auth Alertmanager sends (http_config.basic_auth). */
  WEBHOOK_BASIC_USER: z.string().optional(),
  WEBHOOK_BASIC_PASSWORD: secretList.optional(),
  /** Admin token for mutating endpoints (reload, pause, approve, manual rollback); distinct from the webhook's. */
  ADMIN_TOKEN: secretList.optional(),
  ADMIN_TOKEN_FILE: z.string().optional(),

  BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024).default(4 * 1024 * 1024),
  /** How long a (fingerprint, startsAt, status) is remembered; longer than Alertmanager's repeat_interval. */
  DEDUPE_TTL: duration.default(86_400_000),

  RULES_PATH: z.string().default('rules'),
  PROMETHEUS_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  PROMETHEUS_TIMEOUT: duration.default(10_000),

  /** kubeconfig file; unset: in-cluster config when running in a pod, otherwise no cluster (dry-run). */
  KUBECONFIG: z.string().optional(),
  /** Global dry-run: decide and record everything, change nothing. Default: on when no cluster is configured. */
  DRY_RUN: bool.optional(),

  /** Scope guard: namespaces rollguard may touch (empty: all) and never touches; targets as Kind/namespace/name globs. */
  SCOPE_NAMESPACES: list.default([]),
  SCOPE_DENY_NAMESPACES: list.default(['kube-system', 'kube-public', 'kube-node-lease']),
  SCOPE_DENY_TARGETS: list.default([]),
  /** Budget guard: rollbacks across the whole cluster per rolling hour (a storm stops here). */
  BUDGET_CLUSTER_PER_HOUR: int(0, 10_000).default(5),
  /** Concurrency guard: rollbacks in flight at once, over all replicas. */
  MAX_CONCURRENT_ROLLBACKS: int(1, 1000).default(2),
  /** How long a rollout may take to complete before the rollback counts as unverified. */
  VERIFY_TIMEOUT: duration.default(600_000),
  /** After the rollout, how long the trigger may take to clear in Prometheus before the rollback counts as failed. */
  RECOVERY_TIMEOUT: duration.default(300_000),
  RECOVERY_POLL: duration.default(15_000),
  /** Per-target lock TTL (renewed while the rollback runs). */
  LOCK_TTL: duration.default(30_000),
  /** How often due re-checks, maintenance windows, approvals and orphaned rollbacks are looked at. */
  SCHEDULER_INTERVAL: duration.default(5_000),
  /** Closed rollback records older than this are deleted (open ones never are). */
  RECORD_RETENTION: duration.default(30 * 86_400_000),
  /** Notifications: a Slack-compatible incoming webhook, and a generic JSON webhook. */
  NOTIFY_SLACK_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  NOTIFY_WEBHOOK_URL: z.url({ message: 'expected an http(s) URL' }).optional(),
  NOTIFY_TIMEOUT: duration.default(5_000),
  /** Where the demo/ops links in notifications point (the rollguard API's external URL). */
  EXTERNAL_URL: z.string().default(''),

  CONSUMER_NAME: z.string().min(1).default(`${hostname()}-${process.pid}`),
  /** A queued entry taken by a replica and not acked within this time is taken up by another. */
  QUEUE_CLAIM_IDLE: duration.default(60_000),
  /** Deliveries after which an event that keeps failing is recorded as dead and removed. */
  QUEUE_MAX_DELIVERIES: int(1, 100).default(5),
  SHUTDOWN_TIMEOUT: duration.default(25_000),
});

export type Config = z.output<typeof configSchema>;
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

const BOOLEAN_SETTINGS = new Set(['DRY_RUN']);

/** `--redis-url=x` / `--redis-url x` / `--dry-run` → { REDIS_URL: 'x', DRY_RUN: 'true' }. */
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
    else settings[key] = 'true';
  }
  return { settings, rest };
}

/** Validates the whole configuration; throws ConfigError naming every bad setting. */
export function loadConfig(env: Record<string, string | undefined>, flags: Record<string, string> = {}): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const v = flags[key] ?? env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? '?');
      const flag = `--${key.toLowerCase().replaceAll('_', '-')}`;
      return `  ${key} (${flag}): ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const cfg = parsed.data;
  if (cfg.WEBHOOK_BASIC_USER !== undefined && !cfg.WEBHOOK_BASIC_PASSWORD?.length) {
    throw new ConfigError('invalid configuration:\n  WEBHOOK_BASIC_PASSWORD (--webhook-basic-password): required when WEBHOOK_BASIC_USER is set');
  }
  return cfg;
}

/** Tokens from the setting and from the token file (re-read on each call so rotation needs no restart). */
export function readSecrets(list: string[] | undefined, file: string | undefined): string[] {
  const out = [...(list ?? [])];
  if (file) {
    for (const t of readFileSync(file, 'utf8').split(/[\n,]/)) {
      const s = t.trim();
      if (s) out.push(s);
    }
  }
  return out;
}
