import { spawn } from 'node:child_process';
import type { CommandEnv } from '../../src/cli/command.js';
import { killOnExit } from './children.js';
import { ROOT } from './serve.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `rollguard` binary (the TypeScript entry, through tsx) with only `env` set. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const proc = killOnExit(spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** The same commands in this process (faster than a process each), collecting what they print. */
export function cliEnv(env: Record<string, string>, signal?: AbortSignal): { e: CommandEnv; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { e: { io: { out: (s) => out.push(s), err: (s) => err.push(s) }, env, now: Date.now, ...(signal ? { signal } : {}) }, out, err };
}
