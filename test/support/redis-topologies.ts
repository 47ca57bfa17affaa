import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { killOnExit } from './children.js';
import { freePort, waitFor } from './ports.js';
import { REDIS_SERVER } from './redis.js';

const run = promisify(execFile);
const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli';

async function ping(port: number): Promise<boolean> {
  try {
    const { stdout } = await run(REDIS_CLI, ['-p', String(port), 'PING']);
    return stdout.trim() === 'PONG';
  } catch {
    return false;
  }
}

/** Real Redis processes on loopback, for the Sentinel and Cluster URL forms. */
export class RedisTopology {
  private readonly procs: ChildProcess[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'rollguard-redis-topo-'));

  private async server(port: number, args: string[]): Promise<void> {
    const p = killOnExit(spawn(REDIS_SERVER, [...args], { stdio: 'ignore' }));
    this.procs.push(p);
    await waitFor(`redis on ${port}`, () => ping(port), 10_000, 50);
  }

  /** A master, one replica and one Sentinel watching them; returns the redis-sentinel:// URL. */
  async sentinel(): Promise<string> {
    const [master, replica, sentinel] = [await freePort(), await freePort(), await freePort()];
    const common = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--dir', this.dir];
    await this.server(master, ['--port', String(master), ...common, '--dbfilename', `m${master}.rdb`]);
    await this.server(replica, ['--port', String(replica), ...common, '--dbfilename', `r${replica}.rdb`, '--replicaof', '127.0.0.1', String(master)]);
    const conf = join(this.dir, `sentinel-${sentinel}.conf`);
    writeFileSync(conf, [`port ${sentinel}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${this.dir}`, `sentinel monitor rgmaster 127.0.0.1 ${master} 1`, 'sentinel down-after-milliseconds rgmaster 2000', ''].join('\n'));
    await this.server(sentinel, [conf, '--sentinel']);
    return `redis-sentinel://127.0.0.1:${sentinel}/rgmaster`;
  }

  /** Three masters forming a Redis Cluster; returns the redis-cluster:// URL. */
  async cluster(): Promise<string> {
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const p of ports) {
      await this.server(p, ['--port', String(p), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(this.dir, `nodes-${p}.conf`), '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--dir', this.dir]);
    }
    await run(REDIS_CLI, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    await waitFor('cluster state ok', async () => {
      const { stdout } = await run(REDIS_CLI, ['-p', String(ports[0]), 'CLUSTER', 'INFO']);
      return /cluster_state:ok/.test(stdout);
    }, 20_000, 100);
    return `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
  }

  async destroy(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
