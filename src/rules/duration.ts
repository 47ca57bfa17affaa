import { z } from 'zod';
/**
 * Durations as Prometheus writes them: one or more `<number><unit>` with units y, w, d, h, m, s, ms
 * (largest first), e.g. `90s`, `1h30m`, `2m`. Returned in milliseconds.
 */
const UNITS: Record<string, number> = {
  y: 365 * 24 * 3600_000,
  w: 7 * 24 * 3600_000,
  d: 24 * 3600_000,
  h: 3600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
};
const ORDER = ['y', 'w', 'd', 'h', 'm', 's', 'ms'];
const PART = /(\d+)(ms|y|w|d|h|m|s)/y;

export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  if (s === '') throw new Error('expected a duration like 5m, got an empty string');
  let pos = 0;
  let total = 0;
  let lastUnit = -1;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) throw new Error(`expected a duration like 30s, 5m, 1h30m (units y w d h m s ms), got "${text}"`);
    const unitIdx = ORDER.indexOf(m[2]!);
    if (unitIdx <= lastUnit) throw new Error(`duration "${text}": units must go from largest to smallest, each once`);
    lastUnit = unitIdx;
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = PART.lastIndex;
  }
  return total;
}

/** Formats milliseconds back into the shortest Prometheus duration (`0s` for zero). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const u of ORDER) {
    const size = UNITS[u]!;
    if (rest >= size) {
      const n = Math.floor(rest / size);
      out += `${n}${u}`;
      rest -= n * size;
    }
  }
  return out;
}

/** A duration for PromQL range selectors: whole seconds at least 1s (PromQL does not take fractions). */
export function promqlDuration(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000));
  return formatDuration(s * 1000);
}

/** A zod schema for a duration string, parsed to milliseconds. */
export const durationSchema = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
