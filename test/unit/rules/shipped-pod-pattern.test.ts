// The shipped pod patterns (rules/*.yaml selectors, deploy/prometheus/alert-rules.yaml's
// label_replace and pod matchers) take a Deployment's pods and nothing else that Kubernetes names
// like them. A Deployment's pod is <deployment>-<pod-template-hash>-<5 chars>: the hash is
// rand.SafeEncodeString of a uint32 in decimal, the 5 chars rand.String(5) (k8s.io/apimachinery
// pkg/util/rand, apiserver pkg/storage/names); both alphabets are derived here from that code, not
// copied from the pattern under test. The patterns run on re2js (RE2, as Prometheus), anchored as
// Prometheus anchors them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RE2JS } from 're2js';
import t from 'tap';
import { parse } from 'yaml';
import { loadRules } from '../../../src/rules/loader.js';
import { ROOT } from '../../support/serve.js';

/** k8s.io/apimachinery/pkg/util/rand: alphanums */
const ALPHANUMS = 'bcdfghjklmnpqrstvwxz2456789';
/** rand.SafeEncodeString: each byte b becomes alphanums[b % 27]; a hash is the decimal text of a uint32 */
const safeEncode = (s: string) => [...s].map((c) => ALPHANUMS[c.charCodeAt(0) % ALPHANUMS.length]).join('');
const HASH_CHARS = [...new Set(safeEncode('0123456789'))].sort().join('');
const podTemplateHash = (n: number) => safeEncode(String(n >>> 0));
const NOT_IN = (alphabet: string) => [...'abcdefghijklmnopqrstuvwxyz0123456789'].filter((c) => !alphabet.includes(c));

t.test('the alphabets, from Kubernetes: a hash uses 4-9 b c d f, 1 to 10 of them', async (t) => {
  t.equal(HASH_CHARS, '456789bcdf');
  t.equal(podTemplateHash(4294967295), '86f8fbc6f9', 'the largest uint32, 10 characters');
  t.equal(podTemplateHash(0).length, 1);
});

const SHIPPED = ['error-rate', 'latency', 'latency-baseline', 'memory'];

/** Pod names and whether they are Deployment api's. */
const API_PODS: Array<[pod: string, theirs: boolean, what: string]> = [
  ['api-7d9f8b6c4-x7k2p', true, "a ReplicaSet's pod, 9-character hash"],
  ['api-6d8f7c9b54-x7k2p', true, "a ReplicaSet's pod, 10-character hash (most hashes)"],
  [`api-${podTemplateHash(4294967295)}-bcdfg`, true, 'the largest hash'],
  [`api-${podTemplateHash(7)}-x7k2p`, true, 'a 1-character hash'],
  ['api-7c9d8-x2x4z', true, 'the name the shipped tests use'],
  ['api-proxy-q8z2x', false, 'a DaemonSet api-proxy'],
  ['api-migrate-x7k2p', false, 'a Job api-migrate'],
  ['api-x-abcde', false, "a bare pod someone named, with the Service's labels"],
  ['api-29012345-bcdfg', false, 'a Job of a CronJob api (a scheduled time in minutes: digits 0-3)'],
  ['api-gateway-5f6b7-x9k2p', false, 'a Deployment api-gateway'],
  ['api-db-7d9f8b6c4-q8z2x', false, 'a Deployment api-db'],
  ['api-q8z2x', false, 'a DaemonSet or Job named api'],
  ['api-0', false, 'a StatefulSet api'],
  ['api-6d8f7c9b545-x7k2p', false, 'an 11-character hash (a uint32 has at most 10 digits)'],
  ['api-7d9f8b6c4-x7k2', false, '4 random characters'],
  ['api-7d9f8b6c4-x7k2pq', false, '6 random characters'],
  ['api-7D9F8B6C4-X7K2P', false, 'upper case'],
  ['xapi-7d9f8b6c4-x7k2p', false, 'a longer name ending in api (the pattern is anchored)'],
  // the documented limits: these still match (docs/rules.md)
  ['api-db-x7k2p', true, 'LIMIT: a Job or DaemonSet api-db ("db" is a possible hash)'],
  ['api-bcd-bcdfg', true, 'LIMIT: a bare pod named to look like a ReplicaSet pod'],
];

for (const c of [...HASH_CHARS]) API_PODS.push([`api-${c}-x7k2p`, true, `hash character ${c}`]);
for (const c of NOT_IN(HASH_CHARS)) API_PODS.push([`api-7d9f8${c}6c4-x7k2p`, false, `hash character ${c}`]);
for (const c of ALPHANUMS) API_PODS.push([`api-7d9f8b6c4-x7k2${c}`, true, `random character ${c}`]);
for (const c of NOT_IN(ALPHANUMS)) API_PODS.push([`api-7d9f8b6c4-x7k2${c}`, false, `random character ${c}`]);

/** The pod=~"..." matchers of a PromQL text, unescaped from their PromQL strings. */
function podRegexes(promql: string): string[] {
  return [...promql.matchAll(/\bpod=~"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]!}"`) as string);
}

const anchored = (re: string) => RE2JS.compile(`^(?:${re})$`);

t.test("each shipped rule's pod selector, rendered for deployment=api, takes api's pods only", async (t) => {
  const { rules, errors } = await loadRules(SHIPPED.map((f) => join(ROOT, 'rules', `${f}.yaml`)));
  t.same(errors, []);
  t.equal(rules.length, SHIPPED.length);
  for (const rule of rules) {
    const query = rule.trigger.query({ alertname: 'X', namespace: 'shop', deployment: 'api' });
    const regexes = podRegexes(query);
    t.ok(regexes.length > 0, `${rule.name}: its query selects pods by regex`);
    for (const re of new Set(regexes)) {
      const compiled = anchored(re);
      const wrong = API_PODS.filter(([pod, theirs]) => compiled.matches(pod) !== theirs).map(([pod, theirs, what]) => `${pod} (${what}) taken: ${!theirs}`);
      t.same(wrong, [], `${rule.name}: pod=~"${re}" takes exactly api's pods of the ${API_PODS.length} names`);
    }
  }
});

t.test('the shipped alerts take the deployment label from the same pod names only', async (t) => {
  const doc = parse(readFileSync(join(ROOT, 'deploy/prometheus/alert-rules.yaml'), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
  let checked = 0;
  for (const { alert, expr } of doc.groups.flatMap((g) => g.rules)) {
    const fromPod = [...expr.matchAll(/"deployment", "\$1", "pod", "((?:[^"\\]|\\.)*)"\)/g)].map((m) => JSON.parse(`"${m[1]!}"`) as string);
    if (!fromPod.length) continue;
    const filters = podRegexes(expr);
    t.ok(filters.length > 0, `${alert}: pods of another shape are left out before the sum (no alert without a deployment label)`);
    for (const re of new Set(fromPod)) {
      checked++;
      const compiled = anchored(re);
      const deploymentOf = (pod: string) => {
        const m = compiled.matcher(pod);
        return m.matches() ? m.group(1) : null;
      };
      const wrong = API_PODS.filter(([pod, theirs]) => (deploymentOf(pod) === 'api') !== theirs).map(([pod, theirs, what]) => `${pod} (${what}): deployment ${deploymentOf(pod)}, want ${theirs ? 'api' : 'not api'}`);
      t.same(wrong, [], `${alert}: label_replace(..., "${re}") makes deployment="api" of exactly api's pods`);
      for (const f of new Set(filters)) {
        const kept = API_PODS.filter(([pod]) => anchored(f).matches(pod) !== (deploymentOf(pod) !== null)).map(([pod]) => pod);
        t.same(kept, [], `${alert}: pod=~"${f}" leaves in exactly the pods that get a deployment label`);
      }
      t.equal(deploymentOf('api-db-7d9f8b6c4-q8z2x'), 'api-db', `${alert}: a Deployment api-db's pod is api-db's`);
    }
  }
  t.equal(checked, 4, 'the deployment patterns of the error, both latency and the memory alerts were checked');
});

t.test('LIMIT (docs/rules.md): a Deployment of 47+ characters may have pods the pattern does not take', async (t) => {
  // The API server cuts a generateName to 58 characters before adding 5: <deployment>-<hash>- is cut
  // when it is longer, here after 7 of the 10 hash characters and without the last dash. The trigger
  // then finds no series (insufficient data, never a rollback); it takes no other workload's pods.
  const deployment = 'payments-reconciliation-worker-europe-west1-prod-a'; // 50 characters
  const pod = `${deployment}-6b7f9c8d5b-`.slice(0, 58) + 'q8z2x';
  t.equal(pod.length, 63);
  const { rules } = await loadRules([join(ROOT, 'rules/error-rate.yaml')]);
  const [re] = podRegexes(rules[0]!.trigger.query({ namespace: 'shop', deployment }));
  t.notOk(anchored(re!).matches(pod), `${pod} is not taken`);
  const short = deployment.slice(0, 46);
  const [shortRe] = podRegexes(rules[0]!.trigger.query({ namespace: 'shop', deployment: short }));
  t.equal(`${short}-6b7f9c8d5b-`.length, 58);
  t.ok(anchored(shortRe!).matches(`${short}-6b7f9c8d5b-q8z2x`), 'a 46-character name with a 10-character hash is never cut, and taken');
});
