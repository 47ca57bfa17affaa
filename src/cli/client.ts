/**
 * The HTTP client of the API commands (`rollguard rollbacks …`, `status`, `pause`, `resume`), and
 * the exit codes they share. Every failure becomes a CliError whose message names what to change:
 * the flag or variable that gave the URL or the token.
 */

import { oneLine } from '../plain-text.js';
import { redactUrl } from '../redact.js';
import { clip } from './format.js';

/** Exit codes of the API commands, for scripts (README's CLI section lists them). */
export const EXIT = {
  ok: 0,
  /** the server failed (5xx) or answered something that is not rollguard's API */
  server: 1,
  /** bad command line: unknown command or flag, missing or malformed argument; nothing was sent */
  usage: 2,
  /**
   * the server could not be reached (--url / ROLLGUARD_URL), did not answer in time (--timeout), or
   * answered with a redirect (3xx): the CLI follows none, the URL is to be set to where it points
   */
  unreachable: 3,
  /** the credential is missing, wrong or not allowed this (401, 403) */
  auth: 4,
  /** no such rollback (404) */
  notFound: 5,
  /** the rollback is not in a state that allows this, e.g. approving one not pending approval (409) */
  conflict: 6,
  /** the server refused the request as invalid (400), e.g. a name that is not a Kubernetes name */
  invalid: 7,
  /** `status`: the store or the configured Prometheus does not answer */
  degraded: 8,
  /** the server refused the request under its settings (422), e.g. a drill outside DRILL_NAMESPACES */
  refused: 9,
  /** `drill run`: the drill failed (a link broke or the deadline passed; the workload was restored) */
  drillFailed: 10,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * What a command expects of a 2xx JSON answer: the fields it prints, with their types. Another
 * server's JSON (a proxy's, or the page a redirect led to) is then an error naming the URL setting,
 * not a line printing `undefined`.
 */
export interface Shape {
  /** named in the error: "a rollback record" */
  what: string;
  /** each field's type; a Shape is an object of that shape, [Shape] a list of them */
  fields: Record<string, FieldType>;
}

type FieldType = 'string' | 'number' | 'boolean' | 'object' | 'array' | Shape | [Shape];

export function shape(what: string, fields: Shape['fields']): Shape {
  return { what, fields };
}

/**
 * Whether `json` is an object of shape `s`: each field of its type, and each item of a list field
 * of the item's shape (a list holding a null or an {} made the table print a TypeError's stack,
 * exit 1, until 2026-12-07, not the error naming the URL setting).
 */
function fits(json: unknown, s: Shape): boolean {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return false;
  return Object.entries(s.fields).every(([k, type]) => {
    const v = (json as Record<string, unknown>)[k];
    if (Array.isArray(type)) return Array.isArray(v) && v.every((item) => fits(item, type[0]));
    if (typeof type === 'object') return fits(v, type);
    return type === 'array' ? Array.isArray(v) : type === 'object' ? typeof v === 'object' && v !== null && !Array.isArray(v) : typeof v === type;
  });
}

export interface ClientOptions {
  url: string;
  /** where the URL came from, named in errors: "--url", "ROLLGUARD_URL" or "the default" */
  urlSource: string;
  token?: string;
  /** where the token came from, named in errors: "ROLLGUARD_TOKEN" or "--token-file FILE" */
  tokenSource?: string;
  timeoutMs: number;
  fetch?: typeof fetch;
}

export class ApiClient {
  private readonly base: URL;
  /** `Basic …` from a user and password in the URL (a proxy in front of rollguard asking for them) */
  private readonly basic: string | undefined;
  /** what never goes into a message: the token, the password, the Basic credential */
  private readonly secrets: string[];

  constructor(private readonly o: ClientOptions) {
    // the URL is only ever shown without its user and password
    const shown = JSON.stringify(redactUrl(o.url));
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new CliError(`${o.urlSource}: expected rollguard's URL like http://rollguard:9095, got ${shown}`, EXIT.usage);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`${o.urlSource}: expected an http:// or https:// URL, got ${shown}`, EXIT.usage);
    this.secrets = [o.token ?? '', u.password];
    if (u.username !== '' || u.password !== '') {
      // fetch refuses a URL holding credentials: they are sent as basic auth (as PROMETHEUS_URL's
      // and the notifiers' are), for a proxy in front of rollguard; rollguard itself takes a bearer token
      if (o.token) {
        throw new CliError(
          `${o.urlSource} holds a user name and password (${shown}), sent as basic auth, and ${o.tokenSource ?? 'ROLLGUARD_TOKEN'} a token, sent as a bearer token: a request carries one Authorization header; give one of them`,
          EXIT.usage,
        );
      }
      let user: string;
      let password: string;
      try {
        user = decodeURIComponent(u.username);
        password = decodeURIComponent(u.password);
      } catch {
        throw new CliError(`${o.urlSource}: the user name or password in the URL is not percent-encoded (write % as %25): ${shown}`, EXIT.usage);
      }
      this.basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      this.secrets.push(password, this.basic.slice('Basic '.length));
      u.username = '';
      u.password = '';
    }
    this.secrets = this.secrets.filter((s) => s.length >= 3);
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    u.search = '';
    u.hash = '';
    this.base = u;
  }

  /** `text` without the token or the URL's password: a transport error's message may quote the request's headers or URL. */
  private redact(text: string): string {
    return this.secrets.reduce((t, s) => t.split(s).join('***'), text);
  }

  /** The server's URL as given (for messages). */
  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  /** A JSON answer; with `expect`, one that is not that shape is an error (exit 1) naming the URL setting. */
  async get<T>(path: string, query: Record<string, string | number | undefined> = {}, expect?: Shape): Promise<T> {
    return (await this.call('json', 'GET', path, query, undefined, expect)).json as T;
  }

  /** A markdown (text/markdown) answer, as the incident report. */
  async text(path: string): Promise<string> {
    return (await this.call('markdown', 'GET', path, {})).text;
  }

  async post<T>(path: string, body: unknown = {}, expect?: Shape): Promise<T> {
    return (await this.call('json', 'POST', path, {}, body, expect)).json as T;
  }

  private async call(expect: 'json' | 'markdown', method: string, path: string, query: Record<string, string | number | undefined>, body?: unknown, shape?: Shape): Promise<{ json: unknown; text: string }> {
    const u = new URL(path.replace(/^\//, ''), this.base);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') u.searchParams.set(k, String(v));
    const headers = new Headers({ accept: 'application/json, text/markdown;q=0.9' });
    if (body !== undefined) headers.set('content-type', 'application/json');
    if (this.o.token) {
      try {
        headers.set('authorization', `Bearer ${this.o.token}`);
      } catch {
        // The refusal's message holds the header's value, the token: never shown.
        throw new CliError(`the token from ${this.o.tokenSource ?? 'ROLLGUARD_TOKEN'} cannot be sent as an HTTP header (a line break or a control character in it?): give one token`, EXIT.usage);
      }
    } else if (this.basic) headers.set('authorization', this.basic);
    const what = `${method} ${u.pathname}`;
    let res: Response;
    let text: string;
    try {
      // redirects are not followed: fetch would send a POST again as a GET (a 301 or 302 in front of
      // rollguard made `pause` print "paused: no" and exit 0), and the token to wherever it points
      res = await (this.o.fetch ?? fetch)(u, { method, headers, redirect: 'manual', ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(this.o.timeoutMs) });
      text = await res.text();
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      if (e.name === 'TimeoutError') {
        throw new CliError(`rollguard at ${this.url} did not answer ${what} within ${this.o.timeoutMs / 1000}s (raise --timeout, or check ${this.urlSourceHint()})`, EXIT.unreachable);
      }
      const why = this.redact(e.cause?.code ?? e.cause?.message ?? e.message);
      throw new CliError(`cannot reach rollguard at ${this.url} (${why}): check ${this.urlSourceHint()}`, EXIT.unreachable);
    }
    if (res.status >= 300 && res.status < 400) throw this.redirected(res, u, what);
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.ok) {
      const ok = expect === 'markdown' ? (res.headers.get('content-type') ?? '').startsWith('text/markdown') : typeof json === 'object' && json !== null;
      if (!ok) {
        throw new CliError(`${this.url} answered ${what} with something that is not rollguard's API (${clipText(text)}): check ${this.urlSourceHint()}`, EXIT.server);
      }
      if (shape && !fits(json, shape)) {
        throw new CliError(`${this.url} answered ${what} with JSON that is not ${shape.what} (${clipText(text)}): check ${this.urlSourceHint()}`, EXIT.server);
      }
      return { json, text };
    }
    // The server's text, folded to one line and clipped: it is printed on stderr after what the CLI
    // says, and a line break in it (a proxy's page, a wrong URL, plain HTTP) would print a line of
    // its own, e.g. a forged "rb-abc approved" after a 409. Until 2026-12-07 it was printed as it was.
    const apiError = typeof json === 'object' && json !== null && 'message' in json ? clip(String((json as { message: unknown }).message), SERVER_TEXT_MAX) : clipText(text);
    switch (res.status) {
      case 401:
        throw new CliError(
          this.basic
            ? `rollguard at ${this.url}, or a proxy in front of it, refused the user name and password in ${this.o.urlSource} (401: ${apiError}): check them, or give rollguard's token (ROLLGUARD_TOKEN or --token-file FILE) and a URL without them`
            : this.o.token
            ? `rollguard refused the token from ${this.o.tokenSource} (401: ${apiError}): check ${this.o.tokenSource}${method === 'POST' ? ' (this needs the admin token; a read token only reads)' : ''}`
            : `rollguard wants a token for ${what} (401: ${apiError}): set ROLLGUARD_TOKEN or pass --token-file FILE`,
          EXIT.auth,
        );
      case 403:
        throw new CliError(`rollguard does not allow ${what}${this.o.token ? ` with the token from ${this.o.tokenSource}` : ''} (403: ${apiError})`, EXIT.auth);
      case 404:
        // A 404 that is not rollguard's JSON is a URL pointing elsewhere (a wrong path prefix).
        if (typeof json !== 'object' || json === null) throw new CliError(`${this.url} has no ${what} (404): check ${this.urlSourceHint()}`, EXIT.server);
        throw new CliError(apiError, EXIT.notFound);
      case 409:
        throw new CliError(apiError, EXIT.conflict);
      case 422:
        throw new CliError(`rollguard refused: ${apiError}`, EXIT.refused);
      case 400:
      case 413:
        throw new CliError(`rollguard refused the request (${res.status}): ${apiError}`, EXIT.invalid);
      default:
        throw new CliError(`rollguard answered ${what} with ${res.status}: ${apiError}`, EXIT.server);
    }
  }

  /**
   * A 3xx: an error naming where it points, and the URL to set (the Location without the request's
   * path, when it ends with it: http://rollguard/v1/pause -> https://rollguard/v1/pause gives https://rollguard).
   */
  private redirected(res: Response, u: URL, what: string): CliError {
    const set = this.o.urlSource === 'the default' ? '--url or ROLLGUARD_URL' : this.o.urlSource;
    const location = res.headers.get('location');
    let to: URL | undefined;
    try {
      to = location ? new URL(location, u) : undefined;
    } catch {
      to = undefined;
    }
    if (!to) return new CliError(`rollguard at ${this.url} answered ${what} with a redirect (${res.status})${location ? ` to ${JSON.stringify(this.redact(oneLine(redactUrl(location))).slice(0, 200))}` : ' without a Location'}: the CLI follows no redirect; set ${set} to rollguard's own URL`, EXIT.unreachable);
    const rel = u.pathname.slice(this.base.pathname.length);
    to.search = to.search === u.search ? '' : to.search;
    to.hash = '';
    const base = to.search === '' && rel !== '' && to.pathname.endsWith(`/${rel}`) ? `${to.origin}${to.pathname.slice(0, -rel.length - 1)}` : undefined;
    const show = (s: string) => this.redact(oneLine(redactUrl(s, { base: true })));
    return new CliError(
      base !== undefined
        ? `rollguard at ${this.url} answered ${what} with a redirect (${res.status}) to ${show(to.href)}: the CLI follows no redirect${what.startsWith('POST') ? ' (a POST would be sent again as a GET)' : ''}; set ${set} to ${show(base)}`
        : `rollguard at ${this.url} answered ${what} with a redirect (${res.status}) to ${show(to.href)}: the CLI follows no redirect; set ${set} to rollguard's own URL`,
      EXIT.unreachable,
    );
  }

  private urlSourceHint(): string {
    return this.o.urlSource === 'the default' ? `that rollguard listens there, or set --url or ROLLGUARD_URL (the default is ${this.url})` : this.o.urlSource;
  }
}

/** At most this many characters of a server's message in an error. */
const SERVER_TEXT_MAX = 500;

function clipText(s: string): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > 120 ? `${one.slice(0, 119)}…` : one || 'an empty body';
}
