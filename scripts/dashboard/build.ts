/**
 * `npm run dashboard`: writes helm/rollguard/dashboards/rollguard.json from scripts/dashboard/rollguard.ts.
 * `npm run dashboard -- --check`: exits 1 when the committed file differs from what would be written.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dashboardJson } from './rollguard.js';

export const DASHBOARD_FILE = fileURLToPath(new URL('../../helm/rollguard/dashboards/rollguard.json', import.meta.url));

const json = dashboardJson();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(DASHBOARD_FILE, 'utf8');
  } catch {
    // missing: differs
  }
  if (current !== json) {
    process.stderr.write(`${DASHBOARD_FILE} differs from scripts/dashboard/rollguard.ts: run npm run dashboard and commit the result\n`);
    process.exit(1);
  }
  process.stdout.write(`${DASHBOARD_FILE} is up to date\n`);
} else {
  writeFileSync(DASHBOARD_FILE, json);
  process.stdout.write(`wrote ${DASHBOARD_FILE}\n`);
}
