import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A throwaway local Prometheus holding known series, for `rollguard rules test` and the
 * integration tests: the series are written as OpenMetrics, turned into TSDB blocks with
 * `promtool tsdb create-blocks-from openmetrics`, and served by `prometheus` on a free
 * 127.0.0.1 port with an empty scrape config. Queries must be made at the backfilled times.
 *
 * Binaries: $ROLLGUARD_PROMETHEUS_BIN / $ROLLGUARD_PROMTOOL_BIN, else `prometheus` / `promtool`
 * on PATH (Debian: apt-get install prometheus). A missing binary is an error, never a skip.
 */

const run = promisify(execFile);

export class PrometheusBinaryMissingError extends Error {
  override name = 'PrometheusBinaryMissingError';
}

export async function findBinary(name: 'prometheus' | 'promtool', explicit?: string): Promise<string> {
  const env = name === 'prometheus' ? process.env.ROLLGUARD_PROMETHEUS_BIN : process.env.ROLLGUARD_PROMTOOL_BIN;
  const candidates = explicit ? [explicit] : env ? [env] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      await access(c, 1);
      return c;
    } catch {
      // next
    }
  }
  throw new PrometheusBinaryMissingError(
    `${name} not found${explicit ? ` at ${explicit}` : ' on PATH'}: install it (Debian/Ubuntu: apt-get install prometheus) or set ROLLGUARD_${name.toUpperCase()}_BIN`,
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface LocalPrometheusOptions {
  /** OpenMetrics text to backfill (with timestamps in seconds and a final `# EOF`); omit for an empty TSDB */
  openMetrics?: string;
  /** or a file of it (for more series than fit in a string) */
  openMetricsFile?: string;
  /**
   * promtool's --max-block-duration (e.g. `744h`). promtool reads the whole input once per block,
   * so weeks of series backfill far faster in a few long blocks than in the default 2h ones.
   */
  maxBlockDuration?: string;
  prometheusBin?: string;
  promtoolBin?: string;
  /** more flags for prometheus (tests: `--query.timeout=50ms`) */
  args?: string[];
  /** readiness wait, default 20 s */
  startTimeoutMs?: number;
}

export class LocalPrometheus {
  private constructor(
    readonly url: string,
    readonly port: number,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(opts: LocalPrometheusOptions = {}): Promise<LocalPrometheus> {
    const prometheus = await findBinary('prometheus', opts.prometheusBin);
    const dir = await mkdtemp(join(tmpdir(), 'rollguard-prom-'));
    const data = join(dir, 'data');
    try {
      if (opts.openMetrics !== undefined || opts.openMetricsFile !== undefined) {
        const promtool = await findBinary('promtool', opts.promtoolBin);
        let input = opts.openMetricsFile;
        if (opts.openMetrics !== undefined) await writeFile((input = join(dir, 'series.om')), opts.openMetrics);
        const blocks = opts.maxBlockDuration ? [`--max-block-duration=${opts.maxBlockDuration}`] : [];
        try {
          await run(promtool, ['tsdb', 'create-blocks-from', 'openmetrics', ...blocks, input!, data], { maxBuffer: 16 << 20 });
        } catch (e) {
          const err = e as { stderr?: string; message: string };
          throw new Error(`promtool could not backfill the series: ${(err.stderr || err.message).trim()}`);
        }
      }
      const config = join(dir, 'prometheus.yml');
      await writeFile(config, 'global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n');
      let lastError: unknown;
      for (let attempt = 0; attempt < 3; attempt++) {
        const port = await freePort();
        try {
          return await LocalPrometheus.spawn(prometheus, config, data, dir, port, opts.startTimeoutMs ?? 20_000, opts.args ?? []);
        } catch (e) {
          lastError = e;
        }
      }
      throw lastError;
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  private static async spawn(bin: string, config: string, data: string, dir: string, port: number, timeoutMs: number, args: string[]): Promise<LocalPrometheus> {
    const log = join(dir, `prometheus-${port}.log`);
    const { openSync, closeSync } = await import('node:fs');
    const fd = openSync(log, 'w');
    const child = spawn(
      bin,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${data}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=100y',
        '--log.level=warn',
        ...args,
      ],
      { stdio: ['ignore', fd, fd] },
    );
    closeSync(fd);
    let exited: number | null | undefined;
    child.on('exit', (code) => {
      exited = code;
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exited !== undefined) break;
      try {
        const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return new LocalPrometheus(url, port, dir, child);
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    const tail = (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-8).join('\n');
    throw new Error(`prometheus did not become ready on ${url}${exited !== undefined ? ` (exited with ${exited})` : ''}:\n${tail}`);
  }

  /** The process id (tests stop it to simulate "Prometheus down"). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const done = new Promise<void>((r) => this.child.once('exit', () => r()));
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(t);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
