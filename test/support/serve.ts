import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './children.js';
import { freePort, waitFor } from './ports.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ServeProcess {
  proc: ChildProcess;
  port: number;
  url: string;
  logs: () => Record<string, unknown>[];
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Runs `rollguard serve` as a real process (the TypeScript entry, through tsx). */
export async function startServe(env: Record<string, string>, args: string[] = [], opts: { port?: number } = {}): Promise<ServeProcess> {
  const port = opts.port ?? (await freePort());
  const proc = killOnExit(spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve', '--host', '127.0.0.1', '--port', String(port), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const url = `http://127.0.0.1:${port}`;
  await Promise.race([
    waitFor(`rollguard serve on ${port}`, async () => (await fetch(`${url}/healthz`)).ok, 90_000, 100),
    exited.then((code) => {
      throw new Error(`rollguard serve exited with ${code}: ${err}`);
    }),
  ]);
  return { proc, port, url, logs, stderr: () => err, exited };
}
