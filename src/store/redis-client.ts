import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { redactUrl } from '../redact.js';

export type Client = Redis | Cluster;

/** Builds an ioredis client from redis://, rediss://, redis-sentinel:// or redis-cluster:// URLs. */
export function createRedisClient(url: string, extra: RedisOptions): Client {
  // URL() cannot parse several host:port pairs, so multi-host schemes are split by hand.
  const m = /^([a-z-]+):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)(?:\/([^?#]*))?/.exec(url);
  if (!m) throw new Error(`cannot parse Redis URL ${JSON.stringify(redactUrl(url))}`);
  const [, scheme, user, pass, authority, path] = m;
  const hosts = authority!.split(',').map((hp) => {
    const i = hp.lastIndexOf(':');
    return i < 0 ? { host: hp, port: 6379 } : { host: hp.slice(0, i) || '127.0.0.1', port: Number(hp.slice(i + 1)) };
  });
  const password = pass ? decodeURIComponent(pass) : undefined;
  const username = user ? decodeURIComponent(user) : undefined;
  if (scheme === 'redis-sentinel') {
    return new Redis({ ...extra, sentinels: hosts, name: path || 'mymaster', password, username, sentinelPassword: password });
  }
  if (scheme === 'redis-cluster') {
    return new Cluster(hosts, {
      redisOptions: { ...extra, password, username },
      enableOfflineQueue: extra.enableOfflineQueue ?? false,
      enableAutoPipelining: extra.enableAutoPipelining ?? false,
      lazyConnect: extra.lazyConnect ?? false,
    });
  }
  return new Redis(url, extra);
}
