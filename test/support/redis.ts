import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { killOnExit } from './children.js';
import { freePort, onFreshPorts, waitFor } from './ports.js';

export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';

/**
 * A real redis-server (Debian's) on 127.0.0.1 and a free port, with AOF (appendfsync always) in a
 * temp dir: what rollguard's docs ask of a production Redis, and what lets a test stop and restart
 * it without losing what was acknowledged.
 */
export class RedisServer {
  private proc: ChildProcess | null = null;
  readonly dir: string;
  constructor(
    readonly port: number,
    /** more redis-server arguments, e.g. ['--maxmemory', '16mb', '--maxmemory-policy', 'noeviction'] */
    private readonly extraArgs: string[] = [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'rollguard-redis-'));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (!existsSync(REDIS_SERVER)) {
      throw new Error(`${REDIS_SERVER} not found: run the README's test command (scripts/provision.sh installs redis-server)`);
    }
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no', '--daemonize', 'no', '--loglevel', 'warning', ...this.extraArgs];
    // Redis logs to stdout (its warnings too: "Address already in use"); only the start-up's is kept
    const proc = killOnExit(spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.proc = proc;
    let stderr = '';
    const keep = (d: Buffer) => {
      if (stderr.length < 8_192) stderr += d;
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    const deadline = Date.now() + 10_000;
    for (;;) {
      // exited (its port taken meanwhile: "Address already in use"): said at once, with its stderr
      if (proc.exitCode !== null || proc.signalCode !== null) throw new RedisStartError(`redis-server on ${this.port} exited during start-up: ${stderr.trim()}`, /Address already in use/i.test(stderr));
      if (await this.answers(proc.pid)) return;
      if (Date.now() > deadline) throw new Error(`timed out after 10000 ms waiting for redis-server on ${this.port}: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the server (SIGTERM; Redis fsyncs and exits) and waits for the port to close. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
    this.proc = null;
  }

  /** SIGKILL: a crash, no shutdown save (AOF with appendfsync always keeps what was acknowledged). */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    this.proc = null;
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The server on the port answers, and it is ours (its process id: another suite's Redis may hold a port picked free a moment ago). */
  private answers(pid: number | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port: this.port });
      let got = '';
      s.once('connect', () => s.write('INFO server\r\n'));
      s.on('data', (d) => {
        got += d.toString();
        const m = /process_id:(\d+)\r\n/.exec(got);
        if (!m) return;
        s.destroy();
        resolve(Number(m[1]) === pid);
      });
      s.once('error', () => resolve(false));
      s.once('close', () => resolve(false));
    });
  }
}

/** redis-server did not start; `portTaken`: its port was taken between the pick and its bind. */
class RedisStartError extends Error {
  override name = 'RedisStartError';
  constructor(message: string, readonly portTaken: boolean) {
    super(message);
  }
}

/** A redis-server of its own on a free port; started again on another port when the one picked was taken meanwhile (at most 3 times). */
export function startRedis(opts: { args?: string[] } = {}): Promise<RedisServer> {
  return onFreshPorts(
    'redis',
    async () => {
      const r = new RedisServer(await freePort(), opts.args);
      try {
        await r.start();
        return r;
      } catch (err) {
        await r.destroy();
        throw err;
      }
    },
    (err) => err instanceof RedisStartError && err.portTaken,
  );
}

/** Resolves once the replica `client` is connected to reports its link to its primary up (INFO replication); 10 s at most. */
export async function replicaLinked(client: Redis): Promise<void> {
  await waitFor('the replica to link to its primary', async () => /master_link_status:up/.test(await client.info('replication')), 10_000, 50);
}

/** Every key of the store and everything it holds, as text. */
export async function redisDump(url: string): Promise<string> {
  const c = new Redis(url);
  try {
    let out = '';
    for (const key of await c.keys('*')) {
      const type = await c.type(key);
      const v =
        type === 'string' ? await c.get(key)
        : type === 'hash' ? await c.hgetall(key)
        : type === 'zset' ? await c.zrange(key, 0, -1, 'WITHSCORES')
        : type === 'set' ? await c.smembers(key)
        : type === 'list' ? await c.lrange(key, 0, -1)
        : type === 'stream' ? await c.xrange(key, '-', '+')
        : `(${type})`;
      out += `${key} ${JSON.stringify(v)}\n`;
    }
    return out;
  } finally {
    c.disconnect();
  }
}
