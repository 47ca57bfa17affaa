import t from 'tap';
import { ConfigError, flagsToSettings, loadConfig, parseDuration } from '../../src/config.js';

t.test('defaults: in-memory store, port 9095, dry-run without a cluster', async (t) => {
  const c = loadConfig({});
  t.equal(c.PORT, 9095);
  t.equal(c.REDIS_URL, undefined);
  t.equal(c.DEDUPE_TTL, 86_400_000);
  t.equal(c.DRY_RUN, true, 'no KUBECONFIG and not in a pod: dry-run');
  t.equal(c.RULES_PATH, 'rules');
  t.equal(c.HELM_BIN, 'helm');
  // events in hand, and the load they may put on each dependency, bounded apart
  t.equal(c.QUEUE_CONCURRENCY, 32);
  t.equal(c.PROMETHEUS_MAX_CONCURRENT, 16);
  t.equal(c.PROMETHEUS_MAX_RESPONSE_BYTES, 4 * 1024 * 1024, 'one answer read at most: 4 MiB');
  t.equal(c.KUBE_MAX_CONCURRENT_READS, 16);
  t.equal(c.RECHECK_CONCURRENCY, 16, 'the scheduler\'s re-checks: a bound of their own');
});

t.test('DRY_RUN unset follows from the cluster settings; set, it wins; the config cannot be changed after loading', async (t) => {
  t.equal(loadConfig({ KUBECONFIG: '/etc/kc' }).DRY_RUN, false, 'a kubeconfig: changes are made');
  t.equal(loadConfig({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }).DRY_RUN, false, 'in a pod: changes are made');
  t.equal(loadConfig({ KUBECONFIG: '/etc/kc', DRY_RUN: 'true' }).DRY_RUN, true);
  t.equal(loadConfig({ DRY_RUN: 'false' }).DRY_RUN, false, 'an explicit false stays false without a cluster');
  t.equal(loadConfig({}, { HELM_BIN: '/opt/helm' }).HELM_BIN, '/opt/helm');
  const c = loadConfig({});
  t.throws(() => {
    (c as { DRY_RUN: boolean }).DRY_RUN = false;
  }, TypeError);
  t.equal(c.DRY_RUN, true);
});

t.test('a setting flag given no value is refused, naming it, rather than taken as "true" (a guessable --admin-token)', async (t) => {
  for (const argv of [['--admin-token'], ['--admin-token', '--dry-run'], ['serve', '--webhook-token']]) {
    t.throws(() => flagsToSettings(argv), new ConfigError(`--${argv.find((a) => a.endsWith('token'))!.slice(2)} needs a value (--${argv.find((a) => a.endsWith('token'))!.slice(2)}=VALUE or --${argv.find((a) => a.endsWith('token'))!.slice(2)} VALUE), or set ${argv.find((a) => a.endsWith('token'))!.slice(2).toUpperCase().replaceAll('-', '_')}`), argv.join(' '));
  }
  t.same(flagsToSettings(['--dry-run']).settings, { DRY_RUN: 'true' }, 'a switch alone is still true');
});

t.test('a flag given an empty value is refused, naming it: it would unset the setting over the environment', async (t) => {
  for (const argv of [['--admin-token='], ['--read-token', ''], ['--webhook-token', ' '], ['--webhook-basic-password='], ['--read-token-file', ''], ['--port='], ['--dry-run=']]) {
    const flag = argv[0]!.replace(/=.*/, '');
    t.throws(() => flagsToSettings(argv), { name: 'ConfigError', message: new RegExp(`^${flag} was given an empty value: to leave a setting unset, do not pass it`) }, JSON.stringify(argv));
  }
  t.throws(() => loadConfig({ READ_TOKEN: 'r', ADMIN_TOKEN: 'adm' }, flagsToSettings(['--read-token=']).settings), ConfigError, 'READ_TOKEN in the environment is not unset by an empty flag');
  t.same(loadConfig({ READ_TOKEN: 'r', ADMIN_TOKEN: 'adm' }, flagsToSettings([]).settings).READ_TOKEN, ['r']);
});

t.test('flags override env; durations and booleans parse', async (t) => {
  const { settings, rest } = flagsToSettings(['--port', '1234', '--dedupe-ttl=2h', '--dry-run', 'extra', '--unknown-flag']);
  t.same(rest, ['extra', '--unknown-flag']);
  const c = loadConfig({ PORT: '1', DRY_RUN: 'false', WEBHOOK_TOKEN: 'a, b ,' }, settings);
  t.equal(c.PORT, 1234);
  t.equal(c.DEDUPE_TTL, 7_200_000);
  t.equal(c.DRY_RUN, true);
  t.same(c.WEBHOOK_TOKEN, ['a', 'b'], 'several tokens for rotation');
});

t.test('a bad setting is refused with its name and flag', async (t) => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT \(--port\): expected an integer/],
    [{ PORT: '70000' }, /PORT \(--port\)/],
    [{ REDIS_URL: 'http://x' }, /REDIS_URL \(--redis-url\): expected redis:\/\//],
    [{ DEDUPE_TTL: '5 minutes' }, /DEDUPE_TTL \(--dedupe-ttl\): expected a duration/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ DRY_RUN: 'maybe' }, /DRY_RUN \(--dry-run\): expected true or false/],
    [{ PROMETHEUS_URL: 'not a url' }, /PROMETHEUS_URL/],
    [{ WEBHOOK_BASIC_USER: 'am' }, /WEBHOOK_BASIC_PASSWORD .*required/],
    [{ EVENT_DEADLINE: '2m' }, /EVENT_DEADLINE \(--event-deadline\): at most QUEUE_CLAIM_IDLE \(60000 ms\)/],
    // durations whose zero (or a few ms) breaks the service: refused, saying what it would break
    [{ LOCK_TTL: '0' }, /LOCK_TTL \(--lock-ttl\): expected at least 150 ms: locks are renewed every LOCK_TTL\/3/],
    [{ LOCK_TTL: '100ms' }, /LOCK_TTL .*at least 150 ms/],
    [{ DEDUPE_TTL: '0s' }, /DEDUPE_TTL \(--dedupe-ttl\): expected at least 1000 ms: .*every webhook would fail/],
    [{ SCHEDULER_INTERVAL: '0' }, /SCHEDULER_INTERVAL \(--scheduler-interval\): expected at least 100 ms/],
    [{ QUEUE_CLAIM_IDLE: '10ms' }, /QUEUE_CLAIM_IDLE .*at least 100 ms/],
    [{ REDIS_COMMAND_TIMEOUT: '0' }, /REDIS_COMMAND_TIMEOUT .*at least 10 ms/],
    [{ RECOVERY_POLL: '0' }, /RECOVERY_POLL .*at least 10 ms/],
    [{ PROMETHEUS_TIMEOUT: '0' }, /PROMETHEUS_TIMEOUT .*at least 1 ms/],
    [{ PROMETHEUS_MAX_CONCURRENT: '0' }, /PROMETHEUS_MAX_CONCURRENT \(--prometheus-max-concurrent\)/],
    [{ KUBE_MAX_CONCURRENT_READS: '0' }, /KUBE_MAX_CONCURRENT_READS \(--kube-max-concurrent-reads\)/],
    [{ PROMETHEUS_MAX_RESPONSE_BYTES: '1000' }, /PROMETHEUS_MAX_RESPONSE_BYTES \(--prometheus-max-response-bytes\): expected at least 65536 \(64 KiB\)/],
    [{ PROMETHEUS_MAX_RESPONSE_BYTES: '4MiB' }, /PROMETHEUS_MAX_RESPONSE_BYTES \(--prometheus-max-response-bytes\): expected a number of bytes/],
    [{ PROMETHEUS_MAX_RESPONSE_BYTES: '2147483648' }, /PROMETHEUS_MAX_RESPONSE_BYTES .*at most 1073741824 \(1 GiB\).*aggregate the query/],
    [{ RECHECK_CONCURRENCY: '0' }, /RECHECK_CONCURRENCY \(--recheck-concurrency\)/],
  ];
  for (const [env, re] of bad) {
    t.throws(() => loadConfig(env), ConfigError);
    try {
      loadConfig(env);
    } catch (err) {
      t.match((err as Error).message, re, JSON.stringify(env));
    }
  }
});

t.test('a token setting that holds no token is refused, naming it: it would open its endpoint, where an empty token file refuses every request', async (t) => {
  for (const key of ['WEBHOOK_TOKEN', 'ADMIN_TOKEN', 'READ_TOKEN'] as const) {
    for (const value of [',', ' , ', ',,', ' ']) {
      const env = { [key]: value, DRY_RUN: 'true' };
      t.throws(() => loadConfig(env), ConfigError, `${key}=${JSON.stringify(value)}`);
      try {
        loadConfig(env);
      } catch (err) {
        const flag = `--${key.toLowerCase().replaceAll('_', '-')}`;
        t.match((err as Error).message, `${key} (${flag}): holds no token, only commas or whitespace, which would leave its endpoint open: give the token(s), comma-separated, or unset the setting`);
      }
    }
    t.same(loadConfig({ [key]: ' tok-a , ,tok-b' })[key], ['tok-a', 'tok-b'], `${key}: empty items between tokens are still skipped`);
    t.equal(loadConfig({ [key]: '' })[key], undefined, `${key}: an empty value is unset, as for every setting`);
  }
});

t.test('a token in two of WEBHOOK_TOKEN, ADMIN_TOKEN and READ_TOKEN is refused, naming both settings and never the token', async (t) => {
  const cases: [Record<string, string>, string][] = [
    [{ WEBHOOK_TOKEN: 'same-token-123', ADMIN_TOKEN: 'same-token-123' }, 'WEBHOOK_TOKEN (--webhook-token), ADMIN_TOKEN (--admin-token)'],
    [{ WEBHOOK_TOKEN: 'wh-1,shared-tok', READ_TOKEN: 'rd-1, shared-tok' }, 'WEBHOOK_TOKEN (--webhook-token), READ_TOKEN (--read-token)'],
    [{ ADMIN_TOKEN: 'adm-old,adm-new', READ_TOKEN: 'adm-new' }, 'ADMIN_TOKEN (--admin-token), READ_TOKEN (--read-token)'],
  ];
  for (const [env, names] of cases) {
    t.throws(() => loadConfig(env), ConfigError, JSON.stringify(env));
    try {
      loadConfig(env);
    } catch (err) {
      const msg = (err as Error).message;
      t.match(msg, `${names}: a token is in both; each credential needs its own token`);
      t.notMatch(msg, /same-token-123|shared-tok|adm-new/, 'the token is not in the message');
    }
  }
  t.ok(loadConfig({ WEBHOOK_TOKEN: 'wh-a,wh-b', ADMIN_TOKEN: 'adm-a', READ_TOKEN: 'rd-a,rd-b' }), 'distinct tokens, several each: accepted');
});

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('1500'), 1500);
  t.equal(parseDuration('2d'), 172_800_000);
  t.equal(parseDuration('5 m'), null);
  t.equal(parseDuration('m5'), null);
  t.equal(parseDuration(''), null);
  t.equal(parseDuration(-1), null);
});

t.test('CONFIG_CHECK_SECRETS: on by default (a plain start checks Secrets as before), off by env or flag', async (t) => {
  t.equal(loadConfig({}).CONFIG_CHECK_SECRETS, true);
  t.equal(loadConfig({ CONFIG_CHECK_SECRETS: 'false' }).CONFIG_CHECK_SECRETS, false);
  t.equal(loadConfig({}, flagsToSettings(['--config-check-secrets', 'false']).settings).CONFIG_CHECK_SECRETS, false);
  t.throws(() => loadConfig({ CONFIG_CHECK_SECRETS: 'maybe' }), /CONFIG_CHECK_SECRETS/);
});

t.test('CONFIG_SNAPSHOTS needs CONFIG_SNAPSHOTS_KEY, at least 32 characters', async (t) => {
  t.throws(() => loadConfig({ CONFIG_SNAPSHOTS: 'true' }), { name: 'ConfigError', message: /CONFIG_SNAPSHOTS_KEY \(--config-snapshots-key\): required with CONFIG_SNAPSHOTS=true/ });
  t.throws(() => loadConfig({ CONFIG_SNAPSHOTS: 'true', CONFIG_SNAPSHOTS_KEY: 'short' }), { message: /CONFIG_SNAPSHOTS_KEY.*at least 32 characters/ });
  t.equal(loadConfig({ CONFIG_SNAPSHOTS: 'true', CONFIG_SNAPSHOTS_KEY: 'k'.repeat(32) }).CONFIG_SNAPSHOTS_KEY, 'k'.repeat(32));
  t.equal(loadConfig({}).CONFIG_SNAPSHOTS_KEY, undefined, 'off: none needed');
});

t.test('CONSUMER_NAME: a name marking a given-up claim is refused, naming the setting', async (t) => {
  t.throws(() => loadConfig({ CONSUMER_NAME: 'released:replica-a' }), { name: 'ConfigError', message: /CONSUMER_NAME.*must not start with "released:"/ });
  // a lock's holder is "<replica> for <record>": a name of its own with " for rb-…" would be read as another record's rollback
  for (const name of ['replica for rb-1', 'a b', 'tab\there', 'nl\n']) {
    t.throws(() => loadConfig({ CONSUMER_NAME: name }), { name: 'ConfigError', message: /CONSUMER_NAME.*must not contain whitespace/ }, JSON.stringify(name));
  }
  t.equal(loadConfig({ CONSUMER_NAME: 'rollguard-7d9f-x2k4q' }).CONSUMER_NAME, 'rollguard-7d9f-x2k4q');
  t.equal(loadConfig({ CONSUMER_NAME: 'rollguard-0' }).CONSUMER_NAME, 'rollguard-0');
});

t.test('REDIS_MIN_REPLICAS_ACK: needs REDIS_URL, not a Redis Cluster, and a wait at most half of REDIS_COMMAND_TIMEOUT', async (t) => {
  t.equal(loadConfig({}).REDIS_MIN_REPLICAS_ACK, 0, 'off by default');
  t.throws(() => loadConfig({ REDIS_MIN_REPLICAS_ACK: '1' }), { name: 'ConfigError', message: /REDIS_MIN_REPLICAS_ACK \(--redis-min-replicas-ack\): needs REDIS_URL/ });
  t.throws(() => loadConfig({ REDIS_MIN_REPLICAS_ACK: '1', REDIS_URL: 'redis-cluster://a:6379,b:6379' }), { message: /REDIS_MIN_REPLICAS_ACK.*not supported with a Redis Cluster URL/ });
  t.throws(() => loadConfig({ REDIS_MIN_REPLICAS_ACK: '1', REDIS_URL: 'redis://r:6379', REDIS_REPLICA_ACK_TIMEOUT: '1001ms' }), { message: /REDIS_REPLICA_ACK_TIMEOUT \(--redis-replica-ack-timeout\): at most half of REDIS_COMMAND_TIMEOUT \(2000 ms\)/ });
  t.throws(() => loadConfig({ REDIS_REPLICA_ACK_TIMEOUT: '0' }), { message: /REDIS_REPLICA_ACK_TIMEOUT.*at least 1 ms/ });
  const c = loadConfig({ REDIS_MIN_REPLICAS_ACK: '1', REDIS_URL: 'redis-sentinel://s0:26379,s1:26379/mymaster', REDIS_REPLICA_ACK_TIMEOUT: '250ms' });
  t.equal(c.REDIS_MIN_REPLICAS_ACK, 1);
  t.equal(c.REDIS_REPLICA_ACK_TIMEOUT, 250);
});

t.test('WEBHOOK_BASIC_PASSWORD equal to a token of ADMIN_TOKEN, READ_TOKEN or WEBHOOK_TOKEN is refused, naming both settings, never the value', async (t) => {
  const secret = 'the-shared-secret-xyz';
  for (const setting of ['ADMIN_TOKEN', 'READ_TOKEN', 'WEBHOOK_TOKEN']) {
    const env = { WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: ` ${secret} `, [setting]: `other-token-${setting}, ${secret}` };
    const err = t.throws(() => loadConfig(env), ConfigError, setting) as Error;
    t.match(err.message, new RegExp(`WEBHOOK_BASIC_PASSWORD \\(--webhook-basic-password\\), ${setting} \\(`), `${setting}: both named`);
    t.notMatch(err.message, secret, `${setting}: the value is not in the message`);
  }
  t.equal(loadConfig({ WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: 'pw', ADMIN_TOKEN: 'adm', READ_TOKEN: 'r' }).WEBHOOK_BASIC_PASSWORD, 'pw', 'different values: loads');
});
