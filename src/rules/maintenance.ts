/**
 * Maintenance windows: `DAYS HH:MM-HH:MM`, in UTC.
 *   DAYS: `daily` (or `*`), a day (`Sun`), a list (`Sat,Sun`) or a range (`Mon-Fri`); names are the
 *   English three-letter abbreviations, case-insensitive.
 *   HH:MM-HH:MM: start and end, 24-hour clock; an end at or before the start crosses midnight
 *   (`Fri 22:00-02:00` runs from Friday 22:00 to Saturday 02:00). DAYS names the start's day.
 * Examples: `Sat,Sun 02:00-06:00`, `Mon-Fri 22:00-23:30`, `daily 03:00-04:00`.
 */

export interface MaintenanceWindow {
  source: string;
  /** weekdays on which a window starts, 0 = Sunday */
  days: ReadonlySet<number>;
  /** minutes after midnight UTC */
  startMinute: number;
  durationMinutes: number;
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const DAY_MS = 24 * 3600_000;

export function parseMaintenanceWindow(text: string): MaintenanceWindow {
  const m = /^\s*(\S+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*(?:UTC)?\s*$/i.exec(text);
  if (!m) throw new Error(`expected a window like "Sat,Sun 02:00-06:00" (days, then HH:MM-HH:MM in UTC), got "${text}"`);
  const days = parseDays(m[1]!);
  const sh = Number(m[2]);
  const sm = Number(m[3]);
  const eh = Number(m[4]);
  const em = Number(m[5]);
  if (sh > 23 || eh > 24 || sm > 59 || em > 59 || (eh === 24 && em !== 0)) throw new Error(`invalid time of day in "${text}"`);
  const start = sh * 60 + sm;
  const end = eh * 60 + em;
  let duration = (end - start + 1440) % 1440;
  if (duration === 0) duration = 1440;
  return { source: text.trim(), days, startMinute: start, durationMinutes: duration };
}

function parseDays(s: string): Set<number> {
  const lower = s.toLowerCase();
  if (lower === 'daily' || lower === '*') return new Set([0, 1, 2, 3, 4, 5, 6]);
  const out = new Set<number>();
  for (const part of lower.split(',')) {
    const range = part.split('-');
    if (range.length > 2) throw new Error(`invalid day range "${part}"`);
    const idx = range.map((d) => {
      const i = DAY_NAMES.indexOf(d);
      if (i === -1) throw new Error(`unknown day "${d}" (expected Mon, Tue, Wed, Thu, Fri, Sat, Sun, or daily)`);
      return i;
    });
    if (idx.length === 1) out.add(idx[0]!);
    else for (let d = idx[0]!; ; d = (d + 1) % 7) {
      out.add(d);
      if (d === idx[1]) break;
    }
  }
  return out;
}

export interface WindowOccurrence {
  startMs: number;
  endMs: number;
}

/** The window occurrence containing `nowMs`, else the next one to start. */
export function nextMaintenanceWindow(w: MaintenanceWindow, nowMs: number): WindowOccurrence {
  const midnight = Math.floor(nowMs / DAY_MS) * DAY_MS;
  for (let d = -1; d <= 8; d++) {
    const day = midnight + d * DAY_MS;
    if (!w.days.has(new Date(day).getUTCDay())) continue;
    const startMs = day + w.startMinute * 60_000;
    const endMs = startMs + w.durationMinutes * 60_000;
    if (endMs > nowMs) return { startMs, endMs };
  }
  throw new Error(`maintenance window "${w.source}" has no day`);
}

export function inMaintenanceWindow(w: MaintenanceWindow, nowMs: number): boolean {
  const o = nextMaintenanceWindow(w, nowMs);
  return o.startMs <= nowMs && nowMs < o.endMs;
}
