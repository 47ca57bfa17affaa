#!/usr/bin/env node
// A small demo service for rollguard's whole-loop test and for trying rollguard by hand.
//
//   node --import tsx examples/demo-app/server.ts --port 8080 --image demo:v1 --load 20
//
// It exports http_requests_total{code} and the http_request_duration_seconds histogram on /metrics
// and behaves as the revision it is told it runs, read from the image tag:
//
//   demo:v1       healthy: 200, a few milliseconds
//   demo:v2-bad   failing: every 5th request answers 500 (20% 5xx)
//   demo:v3-slow  slow: 200 after 2.2 s (p99 above the runbook's 2 s trigger)
//
// and an error switch in its environment, whatever the image:
//
//   DEMO_ERRORS=on  failing, as demo:v2-bad (the switch a rollback drill flips:
//                   rollguard drill run Deployment/staging/web env DEMO_ERRORS=on)
//
// Tell it which revision runs with --image (and DEMO_ERRORS in its environment) at start, or later with
//   POST /-/revision  {"image": "demo:v2-bad", "env": {"DEMO_ERRORS": "on"}}
// (the whole-loop test does that whenever the Deployment's pod template changes, because the
// test cluster's pods are fake). --load N makes it send itself N requests a second on GET /work,
// so that its metrics have traffic without an outside load generator.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

export type Mode = 'healthy' | 'failing' | 'slow';

/** The behaviour of a revision, from its image tag (`demo:v2-bad` -> failing). */
export function modeOfImage(image: string): Mode {
  const tag = image.includes(':') ? image.slice(image.lastIndexOf(':') + 1) : image;
  if (/bad|fail|error/i.test(tag)) return 'failing';
  if (/slow/i.test(tag)) return 'slow';
  return 'healthy';
}

/** The error switch: DEMO_ERRORS on (true, 1, yes) makes any revision fail. */
export const ERROR_SWITCH = 'DEMO_ERRORS';

/** The behaviour of a revision: its image tag, unless the error switch in its environment is on. */
export function modeOf(image: string, env: Record<string, string> = {}): Mode {
  if (/^(on|true|1|yes)$/i.test(env[ERROR_SWITCH] ?? '')) return 'failing';
  return modeOfImage(image);
}

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SLOW_SECONDS = 2.2;

export interface DemoApp {
  port: number;
  image(): string;
  mode(): Mode;
  setImage(image: string, env?: Record<string, string>): void;
  close(): Promise<void>;
}

export async function startDemoApp(opts: { port?: number; host?: string; image?: string; env?: Record<string, string>; loadPerSecond?: number } = {}): Promise<DemoApp> {
  let image = opts.image ?? 'demo:v1';
  let mode = modeOf(image, opts.env);
  let served = 0;
  const requests = new Map<string, number>(); // code -> count
  const bucketCounts = BUCKETS.map(() => 0);
  let count = 0;
  let sum = 0;

  const observe = (code: number, seconds: number) => {
    requests.set(String(code), (requests.get(String(code)) ?? 0) + 1);
    count++;
    sum += seconds;
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) bucketCounts[i]!++;
    });
  };

  const exposition = (): string => {
    const lines = [
      '# HELP http_requests_total Requests served, by HTTP status code.',
      '# TYPE http_requests_total counter',
    ];
    // Both codes always present, so a ratio never lacks its numerator series.
    for (const code of new Set(['200', '500', ...requests.keys()])) lines.push(`http_requests_total{code="${code}"} ${requests.get(code) ?? 0}`);
    lines.push('# HELP http_request_duration_seconds Time to serve a request.', '# TYPE http_request_duration_seconds histogram');
    BUCKETS.forEach((le, i) => lines.push(`http_request_duration_seconds_bucket{le="${le}"} ${bucketCounts[i]}`));
    lines.push(`http_request_duration_seconds_bucket{le="+Inf"} ${count}`, `http_request_duration_seconds_sum ${sum}`, `http_request_duration_seconds_count ${count}`);
    lines.push('# HELP demo_revision_info The revision (image) this demo app behaves as.', '# TYPE demo_revision_info gauge');
    lines.push(`demo_revision_info{image="${image.replace(/["\\\n]/g, '_')}",mode="${mode}"} 1`);
    return `${lines.join('\n')}\n`;
  };

  const work = async (res: ServerResponse) => {
    const t0 = process.hrtime.bigint();
    const n = ++served;
    let code = 200;
    if (mode === 'failing' && n % 5 === 0) code = 500;
    if (mode === 'slow') await new Promise((r) => setTimeout(r, SLOW_SECONDS * 1000));
    else await new Promise((r) => setTimeout(r, 2));
    observe(code, Number(process.hrtime.bigint() - t0) / 1e9);
    res.writeHead(code, { 'content-type': 'text/plain' }).end(code === 200 ? 'ok\n' : 'internal error\n');
  };

  const body = (req: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      let s = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (s += d));
      req.on('end', () => resolve(s));
      req.on('error', reject);
    });

  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(exposition());
    } else if (req.method === 'GET' && url === '/work') {
      void work(res);
    } else if (req.method === 'GET' && url === '/-/revision') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ image, mode }));
    } else if (req.method === 'POST' && url === '/-/revision') {
      body(req).then(
        (b) => {
          const parsed = JSON.parse(b) as { image?: unknown; env?: unknown };
          if (typeof parsed.image !== 'string' || parsed.image === '') throw new Error('expected {"image": "name:tag"}');
          const env = parsed.env === undefined ? {} : parsed.env;
          if (typeof env !== 'object' || env === null || Object.values(env).some((v) => typeof v !== 'string')) throw new Error('expected "env": {"NAME": "value"}');
          image = parsed.image;
          mode = modeOf(image, env as Record<string, string>);
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ image, mode }));
        },
        () => res.writeHead(400).end(),
      ).catch((err: unknown) => res.writeHead(400, { 'content-type': 'text/plain' }).end(`${String(err)}\n`));
    } else if (req.method === 'GET' && url === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;

  // Self-load: N requests a second to GET /work, spread over the second.
  let timer: NodeJS.Timeout | undefined;
  if (opts.loadPerSecond && opts.loadPerSecond > 0) {
    const every = 1000 / opts.loadPerSecond;
    timer = setInterval(() => {
      fetch(`http://127.0.0.1:${port}/work`).then((r) => r.arrayBuffer(), () => undefined);
    }, every);
  }

  return {
    port,
    image: () => image,
    mode: () => mode,
    setImage: (i, env) => {
      image = i;
      mode = modeOf(i, env);
    },
    close: async () => {
      if (timer) clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = argv[i]!;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1];
}

if (process.argv[1] && /demo-app[\\/]server\.(ts|js)$/.test(process.argv[1])) {
  const argv = process.argv.slice(2);
  const app = await startDemoApp({
    port: Number(flag(argv, 'port') ?? process.env.PORT ?? 8080),
    host: flag(argv, 'host') ?? '127.0.0.1',
    image: flag(argv, 'image') ?? process.env.IMAGE ?? 'demo:v1',
    loadPerSecond: Number(flag(argv, 'load') ?? 0),
    env: process.env[ERROR_SWITCH] !== undefined ? { [ERROR_SWITCH]: process.env[ERROR_SWITCH] } : {},
  });
  process.stdout.write(`${JSON.stringify({ msg: 'demo app listening', port: app.port, image: app.image(), mode: app.mode() })}\n`);
  const stop = () => void app.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
