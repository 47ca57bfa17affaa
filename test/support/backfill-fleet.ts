import { ALERTING_RULES, DAY, HOUR, MINUTE, type Scenario, type ServiceSpec } from './backfill.js';

/**
 * A fleet for the replay benchmark: N services over 30 days (from 2024-03-01), each deployed every
 * two to five days, with the incidents of the replay test spread over them pseudo-randomly (the
 * same fleet every time): bad deploys with an error spike, flapping error bursts, latency
 * regressions after a deploy, the odd slow latency creep, and a few services in kube-system or
 * without kube-state-metrics. About one deploy in three goes wrong somehow.
 */

export const FLEET_FROM = Date.UTC(2024, 2, 1);
export const FLEET_TO = FLEET_FROM + 30 * DAY;

function rng(start: number): () => number {
  let a = start | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const minute = (t: number) => Math.floor(t / MINUTE) * MINUTE;

export function fleetScenario(services = 50, variant = 7): Scenario {
  const rnd = rng(variant);
  const out: ServiceSpec[] = [];
  for (let i = 0; i < services; i++) {
    const errors: Array<[number, number, number]> = [];
    const slow: Array<[number, number, number]> = [];
    const deploys = [minute(FLEET_FROM - (1 + rnd() * 5) * DAY)];
    for (let t = FLEET_FROM + rnd() * 3 * DAY; t < FLEET_TO - HOUR; t += (2 + rnd() * 3) * DAY) {
      const d = minute(t);
      deploys.push(d);
      const kind = rnd();
      const start = d + Math.round(3 + rnd() * 7) * MINUTE;
      if (kind < 0.15) errors.push([start, start + Math.round(10 + rnd() * 30) * MINUTE, 0.08 + rnd() * 0.1]);
      else if (kind < 0.22) {
        // flapping: a few short bursts
        for (let b = 0, s = start; b < 4; b++, s += Math.round(8 + rnd() * 10) * MINUTE) errors.push([s, s + Math.round(2 + rnd() * 5) * MINUTE, 0.12]);
      } else if (kind < 0.3) slow.push([start, start + Math.round(60 + rnd() * 60) * MINUTE, 3]);
      else if (kind < 0.34) errors.push([start, start + Math.round(6 + rnd() * 10) * HOUR, 0.03]);
    }
    const creep = rnd() < 0.06 ? minute(FLEET_FROM + (5 + rnd() * 15) * DAY) : undefined;
    const inKubeSystem = i % 25 === 24;
    out.push({
      namespace: inKubeSystem ? 'kube-system' : `team-${i % 5}`,
      name: `svc-${String(i).padStart(2, '0')}`,
      deploys,
      ksm: i % 10 !== 9,
      latency: i % 5 < 3,
      requestsPerMinute: 600 + Math.round(rnd() * 5000),
      p95: 0.15 + rnd() * 0.1,
      p99: 0.4 + rnd() * 0.1,
      errorRatio: (t) => errors.find(([a, b]) => t >= a && t < b)?.[2],
      latencyAt: (t) => {
        const s = slow.find(([a, b]) => t >= a && t < b);
        if (s) return { p95: 0.2 * s[2], p99: 1.2 };
        if (creep !== undefined && t >= creep && t < creep + 3 * DAY) return { p99: 0.4 + (2.6 * (t - creep)) / (3 * DAY) };
        return undefined;
      },
    });
  }
  return {
    fromMs: FLEET_FROM,
    toMs: FLEET_TO,
    services: out,
    alertingRules: ALERTING_RULES,
    fixedAlerts: Array.from({ length: 12 }, (_, k) => ({
      labels: { alertname: 'DiskAlmostFull', instance: `node-${k}:9100`, device: '/dev/sdb', mountpoint: '/var/lib/data', severity: 'warning' },
      fromMs: minute(FLEET_FROM + (k * 2.3 + 1) * DAY),
      toMs: minute(FLEET_FROM + (k * 2.3 + 1) * DAY + 3 * HOUR),
    })),
  };
}
