import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './children.js';
import { freePort, onFreshPorts, waitForProcess } from './ports.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ServeProcess {
  proc: ChildProcess;
  port: number;
  url: string;
  logs: () => Record<string, unknown>[];
  stderr: () => string;
  exited: Promise<number | null>;
}

/**
 * Runs `rollguard serve` as a real process (the TypeScript entry, through tsx; or `main`, the
 * main.js of a build, with plain node). Without `port`, on a port picked free: if another process
 * takes it before serve binds it (serve exits with EADDRINUSE), serve is started again on a fresh
 * one (onFreshPorts). `pickPort`: how ports are picked (tests of this helper give a taken one first).
 */
export async function startServe(env: Record<string, string>, args: string[] = [], opts: { port?: number; pickPort?: () => Promise<number>; main?: string } = {}): Promise<ServeProcess> {
  const entry = opts.main ? [opts.main] : ['--import', 'tsx', 'src/main.ts'];
  if (opts.port !== undefined) return serveOn(opts.port, env, args, entry);
  const pick = opts.pickPort ?? freePort;
  return onFreshPorts('rollguard serve', async () => serveOn(await pick(), env, args, entry), (err) => /EADDRINUSE/.test(String(err)));
}

async function serveOn(port: number, env: Record<string, string>, args: string[], entry: string[]): Promise<ServeProcess> {
  const proc = killOnExit(spawn(process.execPath, [...entry, 'serve', '--host', '127.0.0.1', '--port', String(port), ...args], {
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
  // ours, not another process answering on the port (another suite's serve answers /healthz too):
  // the listening socket must be one of this process' open files
  await waitForProcess(
    `rollguard serve on ${port}`,
    async () => listensOn(proc.pid!, port) && (await fetch(`${url}/healthz`)).ok,
    exited,
    (code) => `rollguard serve exited with ${code}: ${err}`,
    90_000,
    100,
  );
  return { proc, port, url, logs, stderr: () => err, exited };
}

/** Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux: /proc/net/tcp and the process' fds). */
function listensOn(pid: number, port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // local address "0100007F:PORT", state 0A = LISTEN, inode in column 10
    if (f[1]?.endsWith(`:${hex}`) && f[3] === '0A' && f[9]) inodes.add(f[9]);
  }
  if (inodes.size === 0) return false;
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        return m !== null && inodes.has(m[1]!);
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}
