// An alert's fingerprint and alertname are the sender's strings, each up to ALERT_MAX_LABEL_BYTES,
// and every line of the alert's handling carries them: they are cut to 200 characters (forLog).
// Found by a review (2026-12-08): they were logged whole, so a sender's long fingerprint made each
// of an alert's lines kilobytes long.
import t from 'tap';
import { capturingLogger } from '../../support/secret-template.js';
import { firing, testEngine } from '../../support/engine.js';

t.test("an alert's fingerprint and alertname are cut to 200 characters in every line of its handling", async (t) => {
  const logs = capturingLogger();
  const e = testEngine({ logger: logs.logger });
  // one a rule matches whose labels name no target (a warning), one no rule matches (a debug line)
  await e.deliver(firing('HighErrorRate', '.*', { fingerprint: 'f'.repeat(4000) }));
  await e.deliver(firing('a'.repeat(4000), 'checkout', { fingerprint: 'g'.repeat(4000) }));
  const lines = logs.text().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const carrying = lines.filter((l) => l.fingerprint !== undefined);
  t.same(carrying.map((l) => l.msg).sort(), ['no rule matches this alert', 'target not resolved'], 'a line of each alert carries its fingerprint');
  for (const l of carrying) {
    t.equal((l.fingerprint as string).length, 201, `${String(l.msg).slice(0, 60)}: the fingerprint cut, marked with …`);
    if (l.alertname !== undefined) t.ok((l.alertname as string).length <= 201, `${String(l.msg).slice(0, 60)}: the alertname cut`);
  }
  t.notMatch(logs.text(), /f{300}|g{300}|a{300}/, 'neither is logged whole anywhere');
});
