import t from 'tap';
import { createRedisClient } from '../../src/store/redis-client.js';
import { isSecretName, redactUrl } from '../../src/redact.js';

t.test('credentials are cut whole, whatever the password holds', async (t) => {
  const cases: [string, string][] = [
    ['redis://:s3cr/et@redis:6379/0', 'redis://***@redis:6379/0'],
    ['redis://user:p@ss/w@rd@redis:6379', 'redis://***@redis:6379'],
    ['redis://:pa?ss@redis:6379/0', 'redis://***@redis:6379/0'],
    ['redis-sentinel://:pw/x@h1:26379,h2:26379/mymaster', 'redis-sentinel://***@h1:26379,h2:26379/mymaster'],
    ['http://admin:prom-pass@prometheus:9090/graph?g0.expr=up', 'http://***@prometheus:9090/graph?g0.expr=up'],
    ['http://prometheus:9090/graph?g0.expr=rate(x[5m])%20%40%20123', 'http://prometheus:9090/graph?g0.expr=rate(x[5m])%20%40%20123'],
  ];
  for (const [url, want] of cases) {
    const got = redactUrl(url);
    t.equal(got, want, url);
    t.notMatch(got, /s3cr|et@|p@ss|rd@|pa\?ss|pw\/x|prom-pass/, `${url}: nothing of the password`);
  }
});

t.test('query values that carry credentials are replaced, the others kept', async (t) => {
  t.equal(
    redactUrl('https://grafana.example/d/x?orgId=1&token=abc123&api_key=k1&apiKey=k2&X-Amz-Signature=s1&sig=s2&auth=a1&password=p1&secret=q1#access_token=f1'),
    'https://grafana.example/d/x?orgId=1&token=***&api_key=***&apiKey=***&X-Amz-Signature=***&sig=***&auth=***&password=***&secret=***#access_token=***',
  );
  t.equal(redactUrl('http://prom:9090/graph?g0.expr=up&g0.tab=1'), 'http://prom:9090/graph?g0.expr=up&g0.tab=1');
  t.ok(isSecretName('access_token') && isSecretName('X-Api-Key') && isSecretName('sessionToken'));
  t.notOk(isSecretName('g0.expr') || isSecretName('orgId') || isSecretName('monkey') || isSecretName('tab'));
});

t.test('as a base URL: no query, no fragment, no trailing slash; empty stays empty; without a scheme, an @ is not printed', async (t) => {
  t.equal(redactUrl('https://u:pw@prom.example.com:9090/prefix/?token=x#y', { base: true }), 'https://***@prom.example.com:9090/prefix');
  t.equal(redactUrl(''), '');
  t.equal(redactUrl('user:s3cret@host:9090'), '<a URL that does not parse>');
  t.equal(redactUrl('localhost:9090/x?token=t'), 'localhost:9090/x?token=***', 'no scheme: the query is still looked at');
});

t.test('a Redis URL that does not parse is named without its password', async (t) => {
  const err = (() => {
    try {
      createRedisClient('redis//:pa/ss@word@host', {});
    } catch (e) {
      return e as Error;
    }
    return undefined;
  })();
  t.ok(err, 'refused');
  t.notMatch(err!.message, /pa\/ss|word@/, err!.message);
});
