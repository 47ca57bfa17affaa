import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Credentials as Alertmanager's http_config sends them: `Authorization: Bearer <token>` and/or
 * `Authorization: Basic <base64(user:password)>`. Secrets are compared in constant time (both
 * sides hashed to a fixed length first, so the length of a guess leaks nothing either).
 */
export interface Credentials {
  bearer: string[];
  basic: { user: string; passwords: string[] } | null;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Constant-time check of `given` against every accepted secret (no early exit). */
export function secretMatches(given: string, accepted: readonly string[]): boolean {
  const g = digest(given);
  let ok = false;
  for (const a of accepted) ok = timingSafeEqual(g, digest(a)) || ok;
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
    const passOk = secretMatches(pass, creds.basic.passwords);
    return userOk && passOk ? { ok: true } : { ok: false, reason: 'invalid basic auth credentials' };
  }
  return { ok: false, reason: `unsupported Authorization scheme "${m[1]}"` };
}

export function isOpen(creds: Credentials): boolean {
  return creds.bearer.length === 0 && creds.basic === null;
}

/** An onRequest hook answering 401 (with WWW-Authenticate) before the body is even read. */
export function requireAuth(getCreds: () => Credentials, realm: string) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const creds = getCreds();
    if (isOpen(creds)) return;
    const res = checkAuthorization(req.headers.authorization, creds);
    if (!res.ok) {
      req.log.warn({ reason: res.reason, route: req.routeOptions.url }, 'unauthorized request');
      const schemes = [creds.bearer.length ? `Bearer realm="${realm}"` : null, creds.basic ? `Basic realm="${realm}"` : null].filter(Boolean);
      return reply.code(401).header('www-authenticate', schemes.join(', ')).send({ error: 'unauthorized', message: res.reason });
    }
  };
}
