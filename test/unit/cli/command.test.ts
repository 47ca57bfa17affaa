// The API commands' command line: --help, usage errors (exit 2, nothing sent), the token file and
// the URL setting named in errors. Requests against a real server are in test/integration/cli*.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../../src/cli/client.js';
import type { CommandEnv } from '../../../src/cli/command.js';
import { rollbacksCommand, ROLLBACK_COMMANDS } from '../../../src/cli/rollbacks.js';
import { statusCommand } from '../../../src/cli/status.js';
import { freePort } from '../../support/ports.js';

function env(vars: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  let requests = 0;
  const e: CommandEnv = {
    io: { out: (s) => out.push(s), err: (s) => err.push(s) },
    env: vars,
    now: () => Date.UTC(2026, 10, 23, 12, 0, 0),
    fetch: async (...args) => {
      requests++;
      return fetch(...args);
    },
  };
  return { e, out, err, requests: () => requests };
}

t.test('--help of each command: usage, its options, the common ones and the exit codes; exit 0, nothing sent', async (t) => {
  for (const c of ROLLBACK_COMMANDS) {
    const x = env();
    t.equal(await rollbacksCommand([c.name.split(' ')[1]!, '--help'], x.e), 0, c.name);
    const text = x.out.join('\n');
    t.match(text, `usage: rollguard ${c.name}`);
    for (const flag of ['--url URL', '--token-file FILE', '-o, --output FORMAT', '--timeout SECONDS']) t.match(text, flag, `${c.name}: ${flag}`);
    for (const o of Object.keys(c.options ?? {})) t.match(text, `--${o}`, `${c.name}: --${o}`);
    t.match(text, /exit codes: 0 done; 1 server error; 2 bad command line; 3 server unreachable/);
    t.equal(x.requests(), 0);
  }
  for (const name of ['status', 'pause', 'resume'] as const) {
    const x = env();
    t.equal(await statusCommand(name, ['-h'], x.e), 0);
    t.match(x.out.join('\n'), `usage: rollguard ${name}`);
  }
  const group = env();
  t.equal(await rollbacksCommand(['--help'], group.e), 0);
  const rows = group.out.join('\n').split('commands:\n')[1]!.split('\n\n')[0]!.split('\n');
  t.match(rows[0], /^ {2}list +Lists rollback records/);
  t.ok(rows.some((r) => /^ {2}resume-gitops +Puts back exactly what a rollback suspended/.test(r)), 'resume-gitops is listed');
  const at = rows.map((r) => r.search(/ [A-Z]/) + 1);
  t.same(new Set(at).size, 1, `every summary starts in one column (${at.join(', ')})`);
});

t.test('usage errors: exit 2, a message naming the flag or argument, nothing sent', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['list', '--stat', 'x'], /rollguard rollbacks list: Unknown option '--stat'.*see rollguard rollbacks list --help/],
    [['list', '--state', 'pending'], /--state: expected one of deciding, held, .*pending_approval/],
    [['list', '--limit', 'ten'], /--limit: expected a number/],
    [['list', '-o', 'xml'], /--output: expected table, json, yaml, got "xml"/],
    [['list', 'extra'], /unexpected argument "extra"/],
    [['get'], /missing argument: usage: rollguard rollbacks get ID/],
    [['get', 'checkout'], /expected a rollback id like rb-/],
    [['approve', 'rb-1', '--comment'], /Option '--comment <value>' argument missing/],
    [['resume-gitops'], /missing argument: usage: rollguard rollbacks resume-gitops ID/],
    [['resume-gitops', 'checkout'], /expected a rollback id like rb-/],
    [['resume-gitops', 'rb-1', '--comment', 'x'], /Unknown option '--comment'/],
    [['resume-gitops', 'rb-1', '--reverted', 'rb-2,api'], /--reverted: expected a rollback id like rb-.*got "api"/],
    [['create', 'Deployment/shop/checkout'], /--reason is required/],
    [['create', 'shop/checkout', '--reason', 'x'], /expected KIND\/NAMESPACE\/NAME/],
    [['create', 'Pod/shop/checkout', '--reason', 'x'], /unknown kind "Pod": expected one of Deployment, StatefulSet/],
    [['create', 'Deployment/shop/checkout', '--reason', 'x', '--to-revision', '0'], /--to-revision: expected a revision number/],
    [['watch', '--interval', '0'], /--interval: expected a number of seconds above 0/],
    [['watch', '--since', 'yesterday'], /--since: expected a duration like 30s/],
    [['list', '--timeout=-1'], /--timeout: expected a number of seconds above 0, got "-1"/],
    [['frobnicate'], /rollguard rollbacks: unknown command "frobnicate"/],
  ];
  for (const [argv, message] of cases) {
    const x = env({ ROLLGUARD_URL: 'http://127.0.0.1:1' });
    t.equal(await rollbacksCommand(argv, x.e), EXIT.usage, argv.join(' '));
    t.match(x.err.join('\n'), message, argv.join(' '));
    t.equal(x.requests(), 0, `${argv.join(' ')}: nothing sent`);
  }
});

t.test('--token-file: a missing or empty file is a usage error naming the flag', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rg-cli-'));
  writeFileSync(join(dir, 'empty'), '\n  \n');
  writeFileSync(join(dir, 'two'), 'a\nb\n');
  for (const [file, message] of [
    [join(dir, 'nope'), /--token-file .*nope: no such file/],
    [join(dir, 'empty'), /--token-file .*empty is empty/],
    [join(dir, 'two'), /holds more than one token/],
  ] as const) {
    const x = env();
    t.equal(await statusCommand('pause', ['--token-file', file], x.e), EXIT.usage);
    t.match(x.err.join('\n'), message);
    t.equal(x.requests(), 0);
  }
});

t.test('ROLLGUARD_TOKEN holding two tokens (a token file during a rotation): exit 2 naming the variable, never the tokens, nothing sent', async (t) => {
  const port = await freePort();
  for (const value of ['adm-old-8f3k2\nadm-new-x9q7', 'adm-old-8f3k2 adm-new-x9q7', 'adm-old-8f3k2\u0000x9q7']) {
    const x = env({ ROLLGUARD_URL: `http://127.0.0.1:${port}`, ROLLGUARD_TOKEN: value });
    t.equal(await statusCommand('status', [], x.e), EXIT.usage, JSON.stringify(value));
    const err = x.err.join('\n');
    t.match(err, /^rollguard status: ROLLGUARD_TOKEN holds more than one token, or whitespace or control characters inside one .*give the CLI one\)$/);
    t.notMatch(err, /adm-old|x9q7/, 'no part of the value is echoed');
    t.equal(x.requests(), 0, 'nothing sent');
  }
  const dir = mkdtempSync(join(tmpdir(), 'rg-cli-'));
  writeFileSync(join(dir, 'nul'), 'adm-old-8f3k2\u0000x9q7\n');
  const f = env({ ROLLGUARD_URL: `http://127.0.0.1:${port}` });
  t.equal(await statusCommand('status', ['--token-file', join(dir, 'nul')], f.e), EXIT.usage, 'a control character in --token-file too');
  t.notMatch(f.err.join('\n'), /adm-old|x9q7/);
  t.equal(f.requests(), 0);
  const one = env({ ROLLGUARD_URL: `http://127.0.0.1:${port}`, ROLLGUARD_TOKEN: '  adm-new-x9q7\n' });
  t.equal(await statusCommand('status', [], one.e), EXIT.unreachable, 'one token with a trailing newline is sent');
});

t.test('what the server sends reaches the terminal without control characters: a report holding an escape sequence rewrites nothing', async (t) => {
  const report = '# Incident report: Deployment/prod/checkout\n\nAlert started: x \u001b]52;c;Y3VybCBldmlsLnNofHNo\u0007 \u001b[2K\rstate: rejected\u009b31m\n\n## Impact';
  const out: string[] = [];
  const err: string[] = [];
  const e: CommandEnv = {
    io: { out: (s) => out.push(s), err: (s) => err.push(s) },
    env: { ROLLGUARD_URL: 'http://rollguard.test' },
    now: () => Date.UTC(2026, 10, 23, 12, 0, 0),
    fetch: async (u) =>
      String(u).endsWith('/report')
        ? new Response(report, { headers: { 'content-type': 'text/markdown; charset=utf-8' } })
        : new Response(JSON.stringify({ message: 'no rollback rb-1\u001b[2K\rbut all is well' }), { status: 404, headers: { 'content-type': 'application/json' } }),
  };
  t.equal(await rollbacksCommand(['report', 'rb-1'], e), EXIT.ok);
  t.same(out.join('\n').split('\n'), ['# Incident report: Deployment/prod/checkout', '', 'Alert started: x  ]52;c;Y3VybCBldmlsLnNofHNo   [2K state: rejected 31m', '', '## Impact'], 'line feeds kept, every other control character a space');
  t.equal(await rollbacksCommand(['get', 'rb-1'], e), EXIT.notFound);
  t.same(err, ['rollguard rollbacks get: no rollback rb-1 [2K but all is well'], 'stderr too');
});

t.test('an unreachable server: exit 3 naming the variable or the flag that gave the URL', async (t) => {
  const port = await freePort();
  const fromEnv = env({ ROLLGUARD_URL: `http://127.0.0.1:${port}` });
  t.equal(await statusCommand('status', [], fromEnv.e), EXIT.unreachable);
  t.match(fromEnv.err.join('\n'), new RegExp(`^rollguard status: cannot reach rollguard at http://127.0.0.1:${port} \\(ECONNREFUSED\\): check ROLLGUARD_URL$`));
  const fromFlag = env({ ROLLGUARD_URL: 'http://127.0.0.1:1' });
  t.equal(await rollbacksCommand(['list', '--url', `http://127.0.0.1:${port}`], fromFlag.e), EXIT.unreachable);
  t.match(fromFlag.err.join('\n'), /check --url$/);
});
