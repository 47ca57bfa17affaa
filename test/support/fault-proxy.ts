// A small fault-injecting HTTP proxy in front of the real API server (issue 9). It forwards every
// request (the caller's bearer token passes through) unless a fault rule matches: then it answers
// with a metav1.Status of the given code, never answers ('hang'), or holds the request for a while
// before forwarding it ('delay'). Every request is logged, so a test can count the writes the
// API server actually received.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Fault {
  method: string;
  path: RegExp;
  /** HTTP status with a metav1.Status body; 'hang' never answers; 'delay' forwards after delayMs */
  answer: number | 'hang' | 'delay';
  reason?: string;
  /** for 'delay' */
  delayMs?: number;
  /** how many matching requests it applies to */
  times: number;
}

export interface ProxyLogEntry {
  method: string;
  path: string;
  faulted: boolean;
  /** the status the client got (undefined while hanging or held) */
  status?: number;
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  faults: Fault[];
  log: ProxyLogEntry[];
  /** requests matching method and path (faulted or not) */
  count(method: string, path: RegExp, opts?: { forwardedOnly?: boolean }): number;
  /** A kubeconfig file (plain HTTP to the proxy, the given bearer token), in a temp dir removed on close. */
  kubeconfig(token: string): string;
  /** Faults answered so far (status, hang or delay), for the figures. */
  injected(): number;
  close(): Promise<void>;
}

export async function startFaultProxy(opts: { server: string; caFile: string }): Promise<FaultProxy> {
  const faults: Fault[] = [];
  const log: ProxyLogEntry[] = [];
  const ca = fs.readFileSync(opts.caFile);
  const upstream = new URL(opts.server);
  const hanging: http.ServerResponse[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let injected = 0;

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, entry: ProxyLogEntry, body: Buffer) => {
    const up = https.request(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host }, ca },
      (ur) => {
        entry.status = ur.statusCode;
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', (e) => {
      entry.status = 502;
      if (!res.headersSent) res.statusCode = 502;
      res.end(String(e));
    });
    up.end(body);
  };

  const server = http.createServer((req, res) => {
    const f = faults.find((x) => x.times > 0 && x.method === req.method && x.path.test(req.url ?? ''));
    const entry: ProxyLogEntry = { method: req.method!, path: req.url!, faulted: !!f && f.answer !== 'delay' };
    log.push(entry);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (!f) return forward(req, res, entry, body);
      f.times--;
      injected++;
      if (f.answer === 'hang') {
        hanging.push(res);
        return;
      }
      if (f.answer === 'delay') {
        const timer = setTimeout(() => {
          timers.delete(timer);
          // the client may have gone away meanwhile (killed): the write still reaches the API server
          forward(req, res, entry, body);
        }, f.delayMs ?? 1000);
        timers.add(timer);
        return;
      }
      entry.status = f.answer;
      res.statusCode = f.answer;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: f.answer, reason: f.reason ?? 'InternalError', message: `injected ${f.answer}` }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-fault-proxy-'));

  return {
    url,
    faults,
    log,
    count: (method, re, o = {}) => log.filter((l) => l.method === method && re.test(l.path) && (!o.forwardedOnly || !l.faulted)).length,
    kubeconfig(token: string) {
      const file = path.join(dir, `kubeconfig-${log.length}-${Math.random().toString(36).slice(2)}.json`);
      const cfg = {
        apiVersion: 'v1',
        kind: 'Config',
        // plain HTTP to the local proxy: client-node wants insecure-skip-tls-verify to send a token over it
        clusters: [{ name: 'proxy', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'rollguard', user: { token } }],
        contexts: [{ name: 'rollguard', context: { cluster: 'proxy', user: 'rollguard', namespace: 'default' } }],
        'current-context': 'rollguard',
      };
      fs.writeFileSync(file, JSON.stringify(cfg, null, 2), { mode: 0o600 });
      return file;
    },
    injected: () => injected,
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const h of hanging) h.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
