import { redactUrl } from '../redact.js';
import { BodyTooLarge, readAtMost } from '../read-body.js';
import { z } from 'zod';
import { rfc3339 } from './schema.js';

/**
 * A small client for Alertmanager's API v2: the current alerts of one aggregation group,
 * `GET /api/v2/alerts/groups?receiver=R&filter=label="v"&silenced=false&inhibited=false`. The
 * groups endpoint lists every alert of a group (it never truncates, unlike a webhook notification
 * under max_alerts). `fetch` is enough here; Alertmanager's generated Go client has no maintained
 * JavaScript counterpart.
 */

const labelSet = z.record(z.string(), z.string());

const gettableAlert = z.looseObject({
  fingerprint: z.string().min(1),
  labels: labelSet,
  annotations: labelSet.default({}),
  // as strict as the webhook (schema.ts): Alertmanager's API writes Go times; anything else is not Alertmanager
  startsAt: rfc3339,
  endsAt: z.string().optional(),
  generatorURL: z.string().default(''),
  status: z.looseObject({ state: z.string() }),
});

const alertGroups = z.array(
  z.looseObject({
    labels: labelSet,
    receiver: z.looseObject({ name: z.string() }),
    alerts: z.array(gettableAlert),
  }),
);

export type GroupAlert = z.infer<typeof gettableAlert>;

const managedAlert = gettableAlert.extend({
  status: z.looseObject({ state: z.string() }),
  receivers: z.array(z.looseObject({ name: z.string() })).default([]),
  updatedAt: z.string().optional(),
});
export type AlertmanagerAlert = z.infer<typeof managedAlert>;

export class AlertmanagerApiError extends Error {
  override name = 'AlertmanagerApiError';
}

export interface AlertmanagerApiOptions {
  /** base URL, e.g. http://alertmanager:9093 (a path prefix is kept; user:password becomes basic auth) */
  url: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
  /** the most bytes an answer may have, and the setting that says so (unset: no bound) */
  maxBody?: { bytes: number; setting: string };
}

/** A label value as Alertmanager's matcher parser reads it inside double quotes. */
export function quoteMatcherValue(v: string): string {
  return `"${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`;
}

/** Alertmanager anchors the receiver parameter as a Go regexp: the name itself, metacharacters escaped. */
export function receiverRegexp(name: string): string {
  return name.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

export class AlertmanagerApi {
  private readonly base: URL;
  private readonly headers: Record<string, string> = { accept: 'application/json' };
  /** the URL without credentials, for messages */
  readonly safeUrl: string;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly maxBody: AlertmanagerApiOptions['maxBody'];

  constructor(opts: AlertmanagerApiOptions) {
    const u = new URL(opts.url);
    if (u.username || u.password) {
      this.headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
      u.username = '';
      u.password = '';
    }
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    this.base = u;
    this.safeUrl = `${redactUrl(opts.url, { base: true })}/`;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.fetch = opts.fetch ?? fetch;
    this.maxBody = opts.maxBody;
  }

  /**
   * The alerts Alertmanager holds now in the group of `receiver` whose group labels are exactly
   * `groupLabels`, silenced and inhibited ones left out (Alertmanager notifies neither). Resolved
   * alerts are not listed by the API. Several routes may feed one receiver with equal group labels:
   * their alerts are all returned.
   */
  async groupAlerts(receiver: string, groupLabels: Record<string, string>, signal?: AbortSignal): Promise<GroupAlert[]> {
    const params: Array<[string, string]> = [
      ['receiver', receiverRegexp(receiver)],
      ['silenced', 'false'],
      ['inhibited', 'false'],
      ...Object.entries(groupLabels).map(([k, v]): [string, string] => ['filter', `${k}=${quoteMatcherValue(v)}`]),
    ];
    const groups = alertGroups.safeParse(await this.getJson('api/v2/alerts/groups', params, signal));
    if (!groups.success) throw new AlertmanagerApiError(`GET ${this.safeUrl}api/v2/alerts/groups (ALERTMANAGER_URL) answered something that is not a list of alert groups: ${groups.error.issues[0]?.message ?? ''}`);
    const wanted = Object.entries(groupLabels);
    const same = (labels: Record<string, string>) => Object.keys(labels).length === wanted.length && wanted.every(([k, v]) => labels[k] === v);
    const seen = new Map<string, GroupAlert>();
    for (const g of groups.data) {
      if (g.receiver.name !== receiver || !same(g.labels)) continue;
      for (const a of g.alerts) seen.set(a.fingerprint, a);
    }
    return [...seen.values()];
  }

  /**
   * The alerts Alertmanager holds now whose labels equal `labels` (each an equality filter),
   * silenced and inhibited ones included, each with the receivers its route sent it to
   * (`GET /api/v2/alerts?filter=...`). A drill watches with it whether its alert reached Alertmanager.
   */
  async alerts(labels: Record<string, string>, signal?: AbortSignal): Promise<AlertmanagerAlert[]> {
    const params = Object.entries(labels).map(([k, v]): [string, string] => ['filter', `${k}=${quoteMatcherValue(v)}`]);
    const alerts = z.array(managedAlert).safeParse(await this.getJson('api/v2/alerts', params, signal));
    if (!alerts.success) throw new AlertmanagerApiError(`GET ${this.safeUrl}api/v2/alerts (ALERTMANAGER_URL) answered something that is not a list of alerts: ${alerts.error.issues[0]?.message ?? ''}`);
    return alerts.data;
  }

  private async getJson(path: string, params: Array<[string, string]>, signal?: AbortSignal): Promise<unknown> {
    const u = new URL(path, this.base);
    for (const [k, v] of params) u.searchParams.append(k, v);
    const where = `GET ${this.safeUrl}${path}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    try {
      res = await this.fetch(u, { headers: this.headers, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (err) {
      const why = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new AlertmanagerApiError(`${where} (ALERTMANAGER_URL) failed: ${why}`);
    }
    const text = await this.readBody(res, where);
    if (!res.ok) throw new AlertmanagerApiError(`${where} (ALERTMANAGER_URL) answered ${res.status}: ${text.slice(0, 200)}`);
    try {
      return JSON.parse(text);
    } catch {
      throw new AlertmanagerApiError(`${where} (ALERTMANAGER_URL) answered something that is not JSON: ${text.slice(0, 200)}`);
    }
  }

  /** The answer's text, read no further than maxBody: a longer one is refused, not buffered. */
  private async readBody(res: Response, where: string): Promise<string> {
    const max = this.maxBody;
    if (!max || !res.body) return res.text().catch(() => '');
    const refuse = (n: string) => new AlertmanagerApiError(`${where} (ALERTMANAGER_URL) answered ${n} bytes, over the ${max.bytes} rollguard reads (${max.setting}): not read`);
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > max.bytes) {
      await res.body.cancel().catch(() => undefined);
      throw refuse(String(declared));
    }
    try {
      return await readAtMost(res, max.bytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) throw refuse(`more than ${max.bytes}`);
      return ''; // as res.text() failing: the status and the JSON check then say what went wrong
    }
  }
}
