import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForProcess } from './ports.js';
import { killOnExit, stopChild } from './children.js';

/**
 * Debian's Alertmanager (/usr/bin/prometheus-alertmanager) on a free 127.0.0.1 port with a temp
 * config and storage, clustering disabled (--cluster.listen-address=), routing every alert to
 * rollguard's webhook with bearer auth. Fast timers for tests: group_wait/group_interval 1s,
 * a long repeat_interval, send_resolved. `receivers: 2` routes each notification to two receivers
 * pointing at the same rollguard (continue: true): duplicates rollguard must absorb. A missing
 * binary fails loudly; it is never a skip.
 */
export const ALERTMANAGER_BIN = process.env.ROLLGUARD_ALERTMANAGER_BIN ?? '/usr/bin/prometheus-alertmanager';

export interface AlertmanagerOptions {
  /** rollguard's webhook, e.g. http://127.0.0.1:9095/v1/alerts */
  webhookUrl: string;
  /** bearer token Alertmanager sends (rollguard's WEBHOOK_TOKEN) */
  token: string;
  /** receivers routed to (each a copy of the same webhook), default 1 */
  receivers?: number;
  groupWait?: string;
  groupInterval?: string;
  repeatInterval?: string;
  groupBy?: string[];
  /** the receivers' webhook max_alerts (truncation), unset: no limit */
  maxAlerts?: number;
}

export interface LocalAlertmanager {
  url: string;
  port: number;
  dir: string;
  config: string;
  log(): string;
  /** GET /api/v2/alerts (active, silenced and inhibited included) */
  alerts(): Promise<Array<{ labels: Record<string, string>; status: { state: string }; startsAt: string; endsAt: string; fingerprint: string }>>;
  stop(): Promise<void>;
}

export function alertmanagerConfig(o: AlertmanagerOptions): string {
  const n = o.receivers ?? 1;
  const names = Array.from({ length: n }, (_, i) => (n === 1 ? 'rollguard' : `rollguard-${i + 1}`));
  const q = (s: string) => JSON.stringify(s);
  const route = [
    'route:',
    `  receiver: ${names[0]}`,
    `  group_by: [${(o.groupBy ?? ['alertname', 'namespace', 'deployment']).map(q).join(', ')}]`,
    `  group_wait: ${o.groupWait ?? '1s'}`,
    `  group_interval: ${o.groupInterval ?? '1s'}`,
    `  repeat_interval: ${o.repeatInterval ?? '4h'}`,
    '  routes:',
    ...names.map((r) => `    - receiver: ${r}\n      matchers: ['rollguard="enabled"']\n      continue: true`),
  ];
  const receivers = [
    'receivers:',
    ...names.map((r) =>
      [
        `  - name: ${r}`,
        '    webhook_configs:',
        `      - url: ${q(o.webhookUrl)}`,
        '        send_resolved: true',
        ...(o.maxAlerts !== undefined ? [`        max_alerts: ${o.maxAlerts}`] : []),
        '        http_config:',
        '          authorization:',
        '            type: Bearer',
        `            credentials: ${q(o.token)}`,
      ].join('\n'),
    ),
  ];
  return `${route.join('\n')}\n${receivers.join('\n')}\n`;
}

export async function startAlertmanager(o: AlertmanagerOptions): Promise<LocalAlertmanager> {
  try {
    accessSync(ALERTMANAGER_BIN, constants.X_OK);
  } catch {
    throw new Error(`${ALERTMANAGER_BIN} not found: install Debian's prometheus-alertmanager (scripts/provision.sh) or set ROLLGUARD_ALERTMANAGER_BIN`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-am-'));
  const config = join(dir, 'alertmanager.yml');
  writeFileSync(config, alertmanagerConfig(o));
  const logFile = join(dir, 'alertmanager.log');
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const fd = openSync(logFile, 'a');
    const child: ChildProcess = spawn(
      ALERTMANAGER_BIN,
      [`--config.file=${config}`, `--storage.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--cluster.listen-address=', '--log.level=info'],
      { stdio: ['ignore', fd, fd] },
    );
    closeSync(fd);
    // If the test process dies without its teardown, the child dies with it.
    killOnExit(child);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const url = `http://127.0.0.1:${port}`;
    const log = () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    };
    try {
      // An exit ends the wait at once (a bad config must not cost the whole readiness timeout).
      await waitForProcess(`alertmanager ready on ${port}`, async () => (await fetch(`${url}/-/ready`)).ok, exited, () => `alertmanager exited:\n${log().split('\n').slice(-10).join('\n')}`, 20_000, 100);
    } catch (err) {
      lastErr = err;
      child.kill('SIGKILL');
      continue;
    }
    return {
      url,
      port,
      dir,
      config,
      log,
      alerts: async () => (await (await fetch(`${url}/api/v2/alerts`)).json()) as Awaited<ReturnType<LocalAlertmanager['alerts']>>,
      stop: async () => {
        await stopChild(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
}
