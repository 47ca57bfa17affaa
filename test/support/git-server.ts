// A local git server for the GitOps tests: Debian's git, smart HTTP through `git http-backend`
// (CGI) behind a small node:http server on 127.0.0.1. Flux's GitRepository accepts http(s) and ssh
// URLs only (not git://), and Argo CD's repo-server runs the git CLI: both clone from here.
//
//   const git = await startGitServer();
//   const repo = await git.createRepo('apps', { 'checkout/deployment.yaml': '...' });
//   repo.url                         // http://127.0.0.1:PORT/apps.git
//   await repo.commit({ 'checkout/deployment.yaml': '...' }, 'revert the bad image');
//   await git.stop();
import { spawn, execFile as execFileCb } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { killOnExit } from './children.js';

const execFile = promisify(execFileCb);
const HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

export interface GitRepo {
  name: string;
  /** Clone URL (smart HTTP). */
  url: string;
  /** Writes the files (path -> content; null deletes), commits on main and returns the commit id. */
  commit(files: Record<string, string | null>, message: string): Promise<string>;
  /** The commit id main points at. */
  head(): Promise<string>;
}

export interface GitServer {
  url: string;
  dir: string;
  createRepo(name: string, files: Record<string, string>): Promise<GitRepo>;
  stop(): Promise<void>;
}

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'rollguard tests',
  GIT_AUTHOR_EMAIL: 'tests@rollguard.invalid',
  GIT_COMMITTER_NAME: 'rollguard tests',
  GIT_COMMITTER_EMAIL: 'tests@rollguard.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
};

async function git(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await execFile('git', args, {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, ...GIT_ENV },
  });
  return stdout.trim();
}

/** Runs `git http-backend` for one request (CGI/1.1) and relays its answer. */
function serveCgi(root: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const child = spawn(HTTP_BACKEND, [], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: root,
      GATEWAY_INTERFACE: 'CGI/1.1',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
      ...(req.headers['git-protocol'] ? { HTTP_GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      SERVER_PROTOCOL: 'HTTP/1.1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  killOnExit(child);
  req.pipe(child.stdin);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let head = Buffer.alloc(0);
  let headerDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headerDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    let sep = head.indexOf('\r\n\r\n');
    let sepLen = 4;
    if (sep < 0) {
      sep = head.indexOf('\n\n');
      sepLen = 2;
    }
    if (sep < 0) return;
    headerDone = true;
    let status = 200;
    for (const line of head.subarray(0, sep).toString('latin1').split(/\r?\n/)) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i).trim();
      const v = line.slice(i + 1).trim();
      if (k.toLowerCase() === 'status') status = Number.parseInt(v, 10) || 500;
      else res.setHeader(k, v);
    }
    res.writeHead(status);
    res.write(head.subarray(sep + sepLen));
  });
  child.on('close', (code) => {
    if (!headerDone) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`git http-backend exited ${code}: ${stderr}`);
      return;
    }
    res.end();
  });
}

export async function startGitServer(): Promise<GitServer> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'rollguard-git-'));
  const root = path.join(dir, 'repos');
  await fsp.mkdir(root);
  const server = http.createServer((req, res) => serveCgi(root, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const createRepo = async (name: string, files: Record<string, string>): Promise<GitRepo> => {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`repository name '${name}': lower-case letters, digits and dashes`);
    const bare = path.join(root, `${name}.git`);
    const work = path.join(dir, 'work', name);
    await fsp.mkdir(work, { recursive: true });
    await git(root, ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    await git(work, ['init', '--quiet', '--initial-branch=main']);
    await git(work, ['remote', 'add', 'origin', bare]);
    const repo: GitRepo = {
      name,
      url: `${url}/${name}.git`,
      commit: async (changes, message) => {
        for (const [file, content] of Object.entries(changes)) {
          const p = path.join(work, file);
          if (!p.startsWith(work + path.sep)) throw new Error(`path '${file}' leaves the repository`);
          if (content === null) await fsp.rm(p, { force: true });
          else {
            await fsp.mkdir(path.dirname(p), { recursive: true });
            await fsp.writeFile(p, content);
          }
        }
        await git(work, ['add', '--all']);
        await git(work, ['commit', '--quiet', '--allow-empty', '-m', message]);
        await git(work, ['push', '--quiet', 'origin', 'main']);
        return git(work, ['rev-parse', 'HEAD']);
      },
      head: () => git(work, ['rev-parse', 'HEAD']),
    };
    await repo.commit(files, `initial manifests of ${name}`);
    return repo;
  };

  return {
    url,
    dir,
    createRepo,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      if (fs.existsSync(dir)) await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
