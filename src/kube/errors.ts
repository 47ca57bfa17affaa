// One error type for every failed API server call, so the engine can record a clear outcome
// ("403 Forbidden: ...", "timeout after 10000 ms") instead of a stack trace.

export type KubeErrorStatus = number | 'timeout' | 'network';

export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  /** HTTP status, or 'timeout' (our request deadline) or 'network' (connection refused/reset, DNS, TLS). */
  readonly status: KubeErrorStatus;
  /** The API server's Status.reason (Forbidden, NotFound, Conflict, ...) or a short word of ours. */
  readonly reason: string;
  /** Worth trying again later (409, 429, 5xx, timeout, network). Only 409 is retried here, once per fresh read. */
  readonly retriable: boolean;
  /** What we were doing: "GET apps/v1 deployments shop/web". */
  readonly operation: string;

  constructor(opts: { status: KubeErrorStatus; reason: string; message: string; operation: string; cause?: unknown }) {
    super(`${opts.operation}: ${describeStatus(opts.status)} ${opts.reason}: ${opts.message}`, { cause: opts.cause });
    this.status = opts.status;
    this.reason = opts.reason;
    this.operation = opts.operation;
    this.retriable = isRetriable(opts.status);
  }

  get isConflict(): boolean {
    return this.status === 409;
  }
  get isNotFound(): boolean {
    return this.status === 404;
  }
}

function describeStatus(s: KubeErrorStatus): string {
  return typeof s === 'number' ? `HTTP ${s}` : s;
}

export function isRetriable(s: KubeErrorStatus): boolean {
  if (s === 'timeout' || s === 'network') return true;
  return s === 409 || s === 429 || s >= 500;
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** Status body of the API server (metav1.Status), parsed from whatever the client handed us. */
function parseStatusBody(body: unknown): { reason?: string; message?: string } {
  let b: unknown = body;
  if (typeof body === 'string') {
    try {
      b = JSON.parse(body);
    } catch {
      return { message: body.slice(0, 500) };
    }
  }
  if (b && typeof b === 'object') {
    const o = b as { reason?: unknown; message?: unknown };
    return {
      ...(typeof o.reason === 'string' && o.reason ? { reason: o.reason } : {}),
      ...(typeof o.message === 'string' && o.message ? { message: o.message } : {}),
    };
  }
  return {};
}

/**
 * What a KubeApiError may keep as its cause: never client-node's ApiException (a numeric `code`),
 * whose message and stack carry the API server's whole reply, echoed values included; a logged
 * error prints its cause. Transport errors and aborts are kept (they name no value).
 */
export function causeOf(err: unknown): unknown {
  return typeof (err as { code?: unknown } | null)?.code === 'number' ? undefined : err;
}

/**
 * Turns whatever a client-node call threw into a KubeApiError: ApiException (has a numeric
 * `code` and a `body`), an abort of our deadline (AbortError), or a transport error (FetchError,
 * ECONNREFUSED, ...). A KubeApiError passes through unchanged.
 */
export function toKubeApiError(err: unknown, operation: string, opts: { timedOut?: boolean; timeoutMs?: number } = {}): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const e = err as { code?: unknown; body?: unknown; name?: unknown; message?: unknown; type?: unknown; errno?: unknown };
  if (opts.timedOut || e?.name === 'AbortError' || e?.type === 'aborted') {
    return new KubeApiError({
      status: 'timeout',
      reason: 'Timeout',
      message: opts.timeoutMs ? `no answer within ${opts.timeoutMs} ms` : 'request aborted',
      operation,
      cause: causeOf(err),
    });
  }
  if (typeof e?.code === 'number' && e.code >= 100 && e.code < 600) {
    const parsed = parseStatusBody(e.body);
    // No cause: client-node's ApiException carries the API server's whole reply in its message and
    // stack ("Body: ..."), values echoed by a 422 included, and a logged error prints its cause.
    return new KubeApiError({
      status: e.code,
      reason: parsed.reason ?? REASONS[e.code] ?? 'Unknown',
      message: withoutEchoedValues(parsed.message ?? `HTTP ${e.code}`),
      operation,
    });
  }
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return new KubeApiError({
    status: 'network',
    reason: typeof e?.code === 'string' ? e.code : 'NetworkError',
    message: msg,
    operation,
    cause: err,
  });
}

/*
 * A validation error of the API server (422 Invalid, apimachinery's field.Error) echoes the value
 * it refused: `spec.template.spec.containers[0].env[1].value: Invalid value: "postgres://u:pw@db":
 * must be no more than 63 characters`. The message goes into records, logs and notifications, so
 * the value is cut and the field path, the error type and the reason are kept. A value is a Go
 * quoted string, a number or a bool; anything else (a struct printed with %#v, whose end cannot be
 * told) cuts the rest of the message.
 */
const ECHOED = /\b(Invalid value|Unsupported value|Duplicate value|Not found): ("(?:[^"\\]|\\.)*"|-?[0-9][0-9.e+-]*|true|false|null)?/g;

export function withoutEchoedValues(message: string): string {
  let out = '';
  let last = 0;
  for (const m of message.matchAll(ECHOED)) {
    out += message.slice(last, m.index) + `${m[1]}: (value not recorded)`;
    last = m.index + m[0].length;
    if (m[2] === undefined) return out;
  }
  return out + message.slice(last);
}

