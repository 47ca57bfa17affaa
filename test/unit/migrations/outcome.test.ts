import t from 'tap';
import type { KubeObject } from '../../../src/kube/kube.js';
import { failedContainer, jobVerdict, lastLines } from '../../../src/migrations/outcome.js';

const job = (status: Record<string, unknown>): KubeObject => ({ metadata: { name: 'undo', namespace: 'shop' }, status });
const cond = (type: string, status = 'True', reason?: string, message?: string) => ({ type, status, ...(reason ? { reason } : {}), ...(message ? { message } : {}) });

t.test('the Job verdict: complete, failed, timed out, running', async (t) => {
  const at = 1_000_000;
  t.same(jobVerdict(job({ conditions: [cond('Complete')], succeeded: 1 }), at, at, 60_000), { state: 'succeeded', message: 'Job shop/undo completed' });
  t.equal(jobVerdict(job({ conditions: [cond('SuccessCriteriaMet')] }), at, at, 60_000).state, 'succeeded', 'SuccessCriteriaMet comes before Complete');
  t.same(jobVerdict(job({ conditions: [cond('Failed', 'True', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit')] }), at, at, 60_000), {
    state: 'failed',
    message: 'Job shop/undo failed (BackoffLimitExceeded: Job has reached the specified backoff limit)',
  });
  t.equal(jobVerdict(job({ conditions: [cond('FailureTarget', 'True', 'DeadlineExceeded')] }), at, at, 60_000).state, 'failed', 'FailureTarget is decided already');
  t.equal(jobVerdict(job({ conditions: [cond('Failed', 'False')] , active: 1 }), at, at, 60_000).state, 'running', 'a condition that is not True does not count');
  t.same(jobVerdict(job({ active: 1 }), at + 59_999, at, 60_000), { state: 'running', message: 'Job shop/undo: 1 active, 0 succeeded, 0 failed pods' });
  t.same(jobVerdict(job({ active: 1 }), at + 60_000, at, 60_000), { state: 'timed_out', message: 'Job shop/undo did not finish within its deadline of 60s (1 active, 0 succeeded, 0 failed pods)' });
  t.equal(jobVerdict(job({ conditions: [cond('Complete')] }), at + 120_000, at, 60_000).state, 'succeeded', 'finished is finished, even read late');
});

const pod = (name: string, status: Record<string, unknown>): KubeObject => ({ metadata: { name }, spec: { containers: [{ name: 'flyway' }] }, status });
const terminated = (exitCode: number, finishedAt: string, message?: string) => ({ terminated: { exitCode, reason: exitCode ? 'Error' : 'Completed', finishedAt, ...(message ? { message } : {}) } });

t.test('the failed container: newest non-zero exit, init containers and last states too, else a failed pod', async (t) => {
  t.equal(failedContainer([]), undefined);
  t.equal(failedContainer([pod('ok', { phase: 'Succeeded', containerStatuses: [{ name: 'flyway', state: terminated(0, '2026-12-01T10:00:00Z') }] })]), undefined);
  const pods = [
    pod('a', { phase: 'Failed', containerStatuses: [{ name: 'flyway', state: terminated(1, '2026-12-01T10:00:00Z', 'first try') }] }),
    pod('b', { phase: 'Failed', initContainerStatuses: [{ name: 'wait-db', state: terminated(2, '2026-12-01T10:05:00Z', 'db unreachable') }], containerStatuses: [{ name: 'flyway', state: { waiting: { reason: 'PodInitializing' } } }] }),
  ];
  t.same(failedContainer(pods), { pod: 'b', container: 'wait-db', exitCode: 2, reason: 'Error', message: 'db unreachable', finishedAt: Date.parse('2026-12-01T10:05:00Z') });
  t.same(failedContainer([pod('c', { phase: 'Running', containerStatuses: [{ name: 'flyway', state: { running: {} }, lastState: terminated(137, '2026-12-01T10:01:00Z') }] })])?.exitCode, 137, 'a restarted container');
  t.same(failedContainer([pod('d', { phase: 'Failed', reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' })]), {
    pod: 'd',
    container: 'flyway',
    reason: 'DeadlineExceeded',
    message: 'Pod was active on the node longer than the specified deadline',
  });
});

t.test('last lines: the tail, blank lines dropped, long lines cut, credentials in URLs and key=value cut', async (t) => {
  t.same(lastLines('one\n\ntwo\r\nthree\n', 2), ['two', 'three']);
  t.same(lastLines('ERROR: connecting to jdbc:postgresql://flyway:s3cret@db:5432/shop failed', 5), ['ERROR: connecting to jdbc:postgresql://***@db:5432/shop failed']);
  t.same(lastLines('using password=hunter2 and token=abc', 5), ['using password=*** and token=***']);
  const long = lastLines('x'.repeat(1000), 1)[0]!;
  t.equal(long.length, 401);
  t.ok(long.endsWith('…'));
});

t.test('last lines: credentials in their common forms are cut, the error around them kept', async (t) => {
  const cases: [string, string][] = [
    // URLs, cut as redactUrl cuts them: up to the authority's last `@`, whatever the password holds
    ['FATAL: could not connect to postgres://app:pa/ss@db:5432/shop', 'FATAL: could not connect to postgres://***@db:5432/shop'],
    ['ERROR: mysql://app:p@ss@db refused', 'ERROR: mysql://***@db refused'],
    ['retrying "redis://:s3cr/et@redis:6379/0" in 5s', 'retrying "redis://***@redis:6379/0" in 5s'],
    // JSON keys, spaced or not, and JSON inside a string
    ['config {"password": "hunter2", "user": "app"} rejected', 'config {"password": "***", "user": "app"} rejected'],
    ['config {"db_password":"hunter2","user":"app"}', 'config {"db_password":"***","user":"app"}'],
    ['msg="{\\"apiKey\\": \\"k-123\\"}"', 'msg="{\\"apiKey\\": ***'],
    // CLI flags, space-separated
    ['exec flyway -password hunter2 -user app migrate', 'exec flyway -password *** -user app migrate'],
    ['exec liquibase --password hunter2 --username app update', 'exec liquibase --password *** --username app update'],
    ['exec tool --db-password hunter2', 'exec tool --db-password ***'],
    ['exec tool --api-key k-123 --access_key a-456', 'exec tool --api-key *** --access_key ***'],
    // env and config styles: `=` or `:`, spaces, quotes, the name at the end of a longer one
    ['DB_PASSWORD: hunter2', 'DB_PASSWORD: ***'],
    ["spring.datasource.password = 'hunter 2'", "spring.datasource.password = '***'"],
    ['AWS_ACCESS_KEY: AKIA123 AWS_SECRET: s3 client_credentials=c1', 'AWS_ACCESS_KEY: *** AWS_SECRET: *** client_credentials=***'],
    ['password: "unterminated hunter2', 'password: "***"'],
    // more names, auth schemes, mysql's glued -p
    ['SECRET_KEY=hunter2 PRIVATE_KEY=k-123 DB_PASS=hunter3 passphrase=s3 x', 'SECRET_KEY=*** PRIVATE_KEY=*** DB_PASS=*** passphrase=*** x'],
    ['curl -H "Authorization: Bearer hunter2" failed; Basic YWxhZGRpbjpzM2Ny', 'curl -H "Authorization: Bearer *** failed; Basic ***'],
    ['exec mysql -uapp -phunter2 shop', 'exec mysql -uapp -p*** shop'],
  ];
  for (const [line, want] of cases) t.same(lastLines(line, 1), [want], line);
  for (const line of cases.map((c) => lastLines(c[0], 1)[0]!)) t.notMatch(line, /hunter|pa\/ss|@ss|s3cr|k-123|a-456|AKIA|s3 |=c1|YWxh/, line);
  for (const plain of [
    'ERROR: relation "orders" does not exist',
    'FATAL: password authentication failed for user "app"',
    'Migration V42__drop_orders.sql failed: ERROR: syntax error at or near "FROM"',
    'connecting to postgres://db:5432/shop',
  ]) {
    t.same(lastLines(plain, 1), [plain], `kept as is: ${plain}`);
  }
});
