import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { clusterSource, sharedTokens, type Config } from '../config.js';
import type { Security } from './openapi.js';

/**
 * Credentials as Alertmanager's http_config sends them: `Authorization: Bearer <token>` and/or
 * `Authorization: Basic <base64(user:password)>`. Secrets are compared in constant time (both
 * sides hashed to a fixed length first, so the length of a guess leaks nothing either).
 */
export interface Credentials {
  bearer: string[];
  basic: { user: string; password: string } | null;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * The digests of a list of accepted secrets, kept per list: a configured setting's list is the same
 * array for every request, so its secrets are hashed once, not on each webhook. Lists are never
 * changed in place (a token file is read into a new one on every request: readTokens), and a list
 * no longer used goes with its entry (WeakMap).
 */
const acceptedDigests = new WeakMap<readonly string[], Buffer[]>();
function digestsOf(accepted: readonly string[]): Buffer[] {
  let d = acceptedDigests.get(accepted);
  if (!d) acceptedDigests.set(accepted, (d = accepted.map(digest)));
  return d;
}

/** Constant-time check of `given` against every accepted secret (no early exit). */
export function secretMatches(given: string, accepted: readonly string[]): boolean {
  const g = digest(given);
  let ok = false;
  for (const a of digestsOf(accepted)) ok = timingSafeEqual(g, a) || ok;
  return ok;
}

export type AuthResult = { ok: true } | { ok: false; reason: string };

export function checkAuthorization(header: string | undefined, creds: Credentials): AuthResult {
  if (header === undefined || header === '') return { ok: false, reason: 'missing Authorization header' };
  const m = /^(\S+)\s+(.*)$/.exec(header.trim());
  if (!m) return { ok: false, reason: 'malformed Authorization header' };
  const scheme = m[1]!.toLowerCase();
  const value = m[2]!.trim();
  if (scheme === 'bearer' && creds.bearer.length > 0) {
    return secretMatches(value, creds.bearer) ? { ok: true } : { ok: false, reason: 'invalid bearer token' };
  }
  if (scheme === 'basic' && creds.basic) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    const user = i < 0 ? decoded : decoded.slice(0, i);
    const pass = i < 0 ? '' : decoded.slice(i + 1);
    const userOk = secretMatches(user, [creds.basic.user]);
    const passOk = secretMatches(pass, [creds.basic.password]);
    return userOk && passOk ? { ok: true } : { ok: false, reason: 'invalid basic auth credentials' };
  }
  return { ok: false, reason: `unsupported Authorization scheme "${m[1]}"` };
}

/**
 * One bearer credential as configured: tokens in a setting (comma-separated) and/or a file (one per
 * line or comma-separated), the file re-read on every request so that rotation needs no restart.
 */
export interface TokenSetting {
  name: string;
  tokens: string[] | undefined;
  fileName: string;
  file: string | undefined;
}

/** unset: neither the setting nor the file is configured. broken: the file is configured but gives no token. */
export type Tokens = { state: 'unset' } | { state: 'ok'; tokens: string[] } | { state: 'broken'; problem: string };

/**
 * A configured token file that cannot be read, or is empty or whitespace only, is `broken`: the
 * credential then accepts nothing (fail closed), whatever the setting beside it holds, because an
 * empty mounted Secret is a mistake to fix, never a reason to open the endpoint.
 */
export function readTokens(s: TokenSetting): Tokens {
  const fromSetting = s.tokens ?? [];
  if (s.file === undefined) return fromSetting.length ? { state: 'ok', tokens: fromSetting } : { state: 'unset' };
  let text: string;
  try {
    text = readFileSync(s.file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return { state: 'broken', problem: `${s.fileName} ${s.file} cannot be read (${why})` };
  }
  const fromFile = text.split(/[\n,]/).map((t) => t.trim()).filter((t) => t.length > 0);
  if (fromFile.length === 0) return { state: 'broken', problem: `${s.fileName} ${s.file} is empty` };
  return { state: 'ok', tokens: [...fromSetting, ...fromFile] };
}

/** What one request meets: no check (open), a check against credentials, or a refusal. */
export type Gate =
  | { kind: 'open' }
  | { kind: 'check'; creds: Credentials; problem?: string }
  | { kind: 'refuse'; status: 401 | 403; message: string; problem?: string };

/** Where each credential comes from in the configuration. */
export function tokenSettings(config: Config): Record<'webhook' | 'admin' | 'read', TokenSetting> {
  return {
    webhook: { name: 'WEBHOOK_TOKEN', tokens: config.WEBHOOK_TOKEN, fileName: 'WEBHOOK_TOKEN_FILE', file: config.WEBHOOK_TOKEN_FILE },
    admin: { name: 'ADMIN_TOKEN', tokens: config.ADMIN_TOKEN, fileName: 'ADMIN_TOKEN_FILE', file: config.ADMIN_TOKEN_FILE },
    read: { name: 'READ_TOKEN', tokens: config.READ_TOKEN, fileName: 'READ_TOKEN_FILE', file: config.READ_TOKEN_FILE },
  };
}

const BROKEN = 'no credential is accepted: the configured token file holds no token; see the rollguard log';

/**
 * The gate of each kind of route, read afresh on every request:
 * - webhook (POST /v1/alerts): WEBHOOK_TOKEN(_FILE) and/or basic auth; none configured: open (the
 *   embedded default for a laptop; announceAuth warns at start-up);
 * - admin (mutating endpoints): ADMIN_TOKEN(_FILE); none configured: the admin API is off (403);
 * - read (records, reports, pause state): READ_TOKEN(_FILE) or the admin token; no read token
 *   configured: open.
 * A broken token file (see readTokens) refuses everything its credential would have accepted.
 */
export function gates(config: Config): Record<Security, () => Gate> {
  const s = tokenSettings(config);
  const basic = config.WEBHOOK_BASIC_USER !== undefined ? { user: config.WEBHOOK_BASIC_USER, password: config.WEBHOOK_BASIC_PASSWORD ?? '' } : null;
  return {
    webhook: () => {
      const t = readTokens(s.webhook);
      if (t.state === 'broken') return { kind: 'refuse', status: 401, message: BROKEN, problem: t.problem };
      if (t.state === 'unset' && basic === null) return { kind: 'open' };
      return { kind: 'check', creds: { bearer: t.state === 'ok' ? t.tokens : [], basic } };
    },
    admin: () => {
      const t = readTokens(s.admin);
      if (t.state === 'broken') return { kind: 'refuse', status: 401, message: BROKEN, problem: t.problem };
      if (t.state === 'unset') return { kind: 'refuse', status: 403, message: 'the admin API is disabled: set ADMIN_TOKEN (or ADMIN_TOKEN_FILE)' };
      return { kind: 'check', creds: { bearer: t.tokens, basic: null } };
    },
    read: () => {
      const r = readTokens(s.read);
      if (r.state === 'unset') return { kind: 'open' };
      const a = readTokens(s.admin);
      const bearer = [...(r.state === 'ok' ? r.tokens : []), ...(a.state === 'ok' ? a.tokens : [])];
      const problem = [r, a].map((x) => (x.state === 'broken' ? x.problem : undefined)).filter(Boolean).join('; ') || undefined;
      if (bearer.length === 0) return { kind: 'refuse', status: 401, message: BROKEN, ...(problem ? { problem } : {}) };
      return { kind: 'check', creds: { bearer, basic: null }, ...(problem ? { problem } : {}) };
    },
  };
}

export type AuthHook = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/**
 * An onRequest hook answering 401 (with WWW-Authenticate) or 403 before the body is even read, with
 * `Connection: close`: a refused client does not keep its connection (nor send the rest of its
 * body on it; until 2026-12-07 it could hold it for ever). A broken token file is logged as an error naming the file when first seen (and again when the
 * problem changes), not on every request.
 */
export function requireAuth(gate: () => Gate, realm: string): AuthHook {
  let lastProblem: string | undefined;
  return async (req, reply) => {
    const g = gate();
    const problem = g.kind === 'open' ? undefined : g.problem;
    if (problem !== lastProblem) {
      if (problem) req.log.error({ realm, problem }, `${problem}: requests with this credential are refused until it holds a token`);
      else req.log.info({ realm }, 'the token file holds tokens again');
      lastProblem = problem;
    }
    if (g.kind === 'open') return;
    if (g.kind === 'refuse') {
      req.log.warn({ reason: g.message, route: req.routeOptions.url }, 'unauthorized request');
      if (g.status === 401) reply.header('www-authenticate', `Bearer realm="${realm}"`);
      return reply.code(g.status).header('connection', 'close').send({ error: g.status === 401 ? 'unauthorized' : 'forbidden', message: g.message });
    }
    const res = checkAuthorization(req.headers.authorization, g.creds);
    if (!res.ok) {
      req.log.warn({ reason: res.reason, route: req.routeOptions.url }, 'unauthorized request');
      const schemes = [g.creds.bearer.length ? `Bearer realm="${realm}"` : null, g.creds.basic ? `Basic realm="${realm}"` : null].filter(Boolean);
      return reply.code(401).header('www-authenticate', schemes.join(', ')).header('connection', 'close').send({ error: 'unauthorized', message: res.reason });
    }
  };
}

/** The onRequest hook of each kind of credential a route may require, from the configuration. */
export function authHooks(config: Config): Record<Security, AuthHook> {
  const g = gates(config);
  return { webhook: requireAuth(g.webhook, 'rollguard-webhook'), admin: requireAuth(g.admin, 'rollguard-admin'), read: requireAuth(g.read, 'rollguard-read') };
}

export interface AuthLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Why serve must not start, or undefined: an open webhook (no credential) in front of real
 * rollbacks (a cluster is configured and DRY_RUN is false) lets anything that reaches the port roll
 * workloads back with rollguard's credentials, unless WEBHOOK_ALLOW_UNAUTHENTICATED says it is on
 * purpose. The embedded default (no cluster: dry-run) starts open, with the warning below.
 */
export function openLiveWebhook(config: Config): string | undefined {
  if (config.DRY_RUN || clusterSource(config) === 'none' || config.WEBHOOK_ALLOW_UNAUTHENTICATED) return undefined;
  if (gates(config).webhook().kind !== 'open') return undefined;
  const cluster = clusterSource(config) === 'kubeconfig' ? `KUBECONFIG (${config.KUBECONFIG})` : 'the pod\'s ServiceAccount (KUBERNETES_SERVICE_HOST)';
  return (
    `the webhook has no credential (WEBHOOK_TOKEN, WEBHOOK_TOKEN_FILE or WEBHOOK_BASIC_USER) and rollbacks are real (a cluster through ${cluster}, DRY_RUN=false): ` +
    'anything that reaches POST /v1/alerts could roll workloads back. Set WEBHOOK_TOKEN (or WEBHOOK_TOKEN_FILE) to the token Alertmanager sends, or DRY_RUN=true, ' +
    'or WEBHOOK_ALLOW_UNAUTHENTICATED=true to run an open webhook on purpose'
  );
}

/** Says at start-up who may call what: an open webhook or open reads are warned about, broken token files are errors. */
export function announceAuth(config: Config, log: AuthLogger): void {
  const g = gates(config);
  const webhook = g.webhook();
  if (webhook.kind === 'open') {
    log.warn(
      { setting: 'WEBHOOK_TOKEN' },
      'the webhook is open: no WEBHOOK_TOKEN, WEBHOOK_TOKEN_FILE or WEBHOOK_BASIC_USER is set, so anything that can reach POST /v1/alerts can cause rollbacks; ' +
        'this is the embedded default for a laptop: set WEBHOOK_TOKEN (or WEBHOOK_TOKEN_FILE) anywhere else',
    );
  }
  const read = g.read();
  if (read.kind === 'open') log.warn({ setting: 'READ_TOKEN' }, 'reads are open: no READ_TOKEN or READ_TOKEN_FILE is set, so anyone who can reach the API can read the rollback records and reports; set READ_TOKEN anywhere but a laptop');
  const admin = g.admin();
  if (admin.kind === 'refuse' && admin.status === 403) log.info({ setting: 'ADMIN_TOKEN' }, 'the admin API is disabled (no ADMIN_TOKEN or ADMIN_TOKEN_FILE)');
  for (const [realm, gate] of [['webhook', webhook], ['read', read], ['admin', admin]] as const) {
    if (gate.kind !== 'open' && gate.problem) log.error({ realm, problem: gate.problem }, `${gate.problem}: requests with this credential are refused until it holds a token`);
  }
  const shared = sharedFileTokens(config);
  if (shared) {
    log.error(
      { settings: shared },
      `${shared[0]} and ${shared[1]} share a token: its holder gets both credentials' rights; give each credential its own token (the files are read again on every request, so a fix needs no restart)`,
    );
  }
}

/**
 * The first two credentials sharing a token once their files are read, named as `X_TOKEN(_FILE)`,
 * or undefined. loadConfig refuses a token shared between the settings themselves; the files are
 * only compared here, at start-up: they are re-read on every request and a request is never
 * refused over what another credential's file holds.
 */
export function sharedFileTokens(config: Config): [string, string] | undefined {
  const s = tokenSettings(config);
  if (s.webhook.file === undefined && s.admin.file === undefined && s.read.file === undefined) return undefined;
  const lists: Record<string, string[]> = {};
  for (const setting of Object.values(s)) {
    const t = readTokens(setting);
    lists[`${setting.name}${setting.file !== undefined ? '(_FILE)' : ''}`] = t.state === 'ok' ? t.tokens : [];
  }
  // the webhook's basic-auth password too (loadConfig compares it with the settings' own tokens)
  if (config.WEBHOOK_BASIC_PASSWORD) lists.WEBHOOK_BASIC_PASSWORD = [config.WEBHOOK_BASIC_PASSWORD];
  return sharedTokens(lists);
}
