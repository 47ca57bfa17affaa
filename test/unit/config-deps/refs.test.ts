import t from 'tap';
import { configRefs } from '../../../src/config-deps/refs.js';

const template = {
  metadata: { labels: { app: 'web' } },
  spec: {
    initContainers: [
      { name: 'migrate', envFrom: [{ secretRef: { name: 'db-creds' } }, { configMapRef: { name: 'flags', optional: true } }] },
    ],
    containers: [
      {
        name: 'app',
        env: [
          { name: 'PLAIN', value: 'x' },
          { name: 'MODE', valueFrom: { configMapKeyRef: { name: 'app-config-7f9c2', key: 'mode' } } },
          { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'api-token', key: 'token', optional: true } } },
          { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        ],
      },
      { name: 'sidecar', envFrom: [{ configMapRef: { name: 'flags' } }] },
    ],
    volumes: [
      { name: 'config', configMap: { name: 'app-config-7f9c2' } },
      { name: 'tls', secret: { secretName: 'web-tls', optional: false } },
      { name: 'data', emptyDir: {} },
      {
        name: 'bundle',
        projected: {
          sources: [
            { configMap: { name: 'ca-bundle', optional: true } },
            { secret: { name: 'signing-key' } },
            { serviceAccountToken: { path: 'token' } },
          ],
        },
      },
    ],
  },
};

t.test('every kind of reference, each object once, in the order first seen', async (t) => {
  const refs = configRefs(template);
  t.same(
    refs.map((r) => `${r.kind}/${r.name}${r.optional ? ' (optional)' : ''}`),
    [
      'Secret/db-creds',
      'ConfigMap/flags',
      'ConfigMap/app-config-7f9c2',
      'Secret/api-token (optional)',
      'Secret/web-tls',
      'ConfigMap/ca-bundle (optional)',
      'Secret/signing-key',
    ],
  );
  t.same(refs.find((r) => r.name === 'app-config-7f9c2')?.usedBy, ['container app env MODE', 'volume config']);
  t.same(refs.find((r) => r.name === 'signing-key')?.usedBy, ['volume bundle (projected)']);
});

t.test('an object is optional only when every use of it is', async (t) => {
  const flags = configRefs(template).find((r) => r.name === 'flags');
  t.equal(flags?.optional, false, 'optional in the init container, required in the sidecar');
  t.same(flags?.usedBy, ['init container migrate envFrom', 'container sidecar envFrom']);
  const onlyOptional = configRefs({ spec: { volumes: [{ name: 'v', configMap: { name: 'c', optional: true } }], containers: [{ name: 'a', envFrom: [{ configMapRef: { name: 'c', optional: true } }] }] } });
  t.same(onlyOptional.map((r) => r.optional), [true]);
});

t.test('a ConfigMap and a Secret of the same name are two objects', async (t) => {
  const refs = configRefs({ spec: { containers: [{ name: 'a', envFrom: [{ configMapRef: { name: 'same' } }, { secretRef: { name: 'same' } }] }] } });
  t.same(refs.map((r) => `${r.kind}/${r.name}`), ['ConfigMap/same', 'Secret/same']);
});

t.test('templates without references, or malformed ones, give no references', async (t) => {
  t.same(configRefs(undefined), []);
  t.same(configRefs({}), []);
  t.same(configRefs({ spec: { containers: [{ name: 'a', image: 'x' }] } }), []);
  t.same(configRefs({ spec: { containers: 'nope', volumes: [null, { name: 'v', configMap: {} }, { name: 'w', secret: { name: 'wrong-field' } }] } }), []);
});
