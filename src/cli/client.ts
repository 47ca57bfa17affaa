/**
 * The HTTP client of the API commands (`rollguard rollbacks …`, `status`, `pause`, `resume`), and
 * the exit codes they share. Every failure becomes a CliError whose message names what to change:
 * the flag or variable that gave the URL or the token.
 */

/** Exit codes of the API commands, for scripts (README's CLI section lists them). */
export const EXIT = {
  ok: 0,
  /** the server failed (5xx) or answered something that is not rollguard's API */
  server: 1,
  /** bad command line: unknown command or flag, missing or malformed argument; nothing was sent */
  usage: 2,
  /** the server could not be reached (--url / ROLLGUARD_URL) or did not answer in time (--timeout) */
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

  constructor(private readonly o: ClientOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new CliError(`${o.urlSource}: expected rollguard's URL like http://rollguard:9095, got ${JSON.stringify(o.url)}`, EXIT.usage);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`${o.urlSource}: expected an http:// or https:// URL, got ${JSON.stringify(o.url)}`, EXIT.usage);
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    u.search = '';
    this.base = u;
  }

  /** `text` without the token: a transport error's message may quote the request's headers. */
  private redact(text: string): string {
    return this.o.token ? text.split(this.o.token).join('***') : text;
  }

  /** The server's URL as given (for messages). */
  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  async get<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
    return (await this.call('json', 'GET', path, query)).json as T;
  }

  /** A markdown (text/markdown) answer, as the incident report. */
  async text(path: string): Promise<string> {
    return (await this.call('markdown', 'GET', path, {})).text;
  }

  async post<T>(path: string, body: unknown = {}): Promise<T> {
    return (await this.call('json', 'POST', path, {}, body)).json as T;
  }

  private async call(expect: 'json' | 'markdown', method: string, path: string, query: Record<string, string | number | undefined>, body?: unknown): Promise<{ json: unknown; text: string }> {
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
    }
    const what = `${method} ${u.pathname}`;
    let res: Response;
    let text: string;
    try {
      res = await (this.o.fetch ?? fetch)(u, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(this.o.timeoutMs) });
      text = await res.text();
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      if (e.name === 'TimeoutError') {
        throw new CliError(`rollguard at ${this.url} did not answer ${what} within ${this.o.timeoutMs / 1000}s (raise --timeout, or check ${this.urlSourceHint()})`, EXIT.unreachable);
      }
      const why = this.redact(e.cause?.code ?? e.cause?.message ?? e.message);
      throw new CliError(`cannot reach rollguard at ${this.url} (${why}): check ${this.urlSourceHint()}`, EXIT.unreachable);
    }
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
      return { json, text };
    }
    const apiError = typeof json === 'object' && json !== null && 'message' in json ? String((json as { message: unknown }).message) : clipText(text);
    switch (res.status) {
      case 401:
        throw new CliError(
          this.o.token
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

  private urlSourceHint(): string {
    return this.o.urlSource === 'the default' ? `that rollguard listens there, or set --url or ROLLGUARD_URL (the default is ${this.url})` : this.o.urlSource;
  }
}

function clipText(s: string): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > 120 ? `${one.slice(0, 119)}…` : one || 'an empty body';
}
