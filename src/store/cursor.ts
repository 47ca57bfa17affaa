/**
 * Record listings are ordered newest first: createdAt descending, then id descending. A cursor is
 * the position of the last record of a page, so the next page starts strictly after it and stays
 * stable while newer records arrive. Opaque to clients (base64url).
 */
export interface Position {
  createdAt: number;
  id: string;
}

export class BadCursorError extends Error {
  override name = 'BadCursorError';
}

export function encodeCursor(p: Position): string {
  return Buffer.from(`${p.createdAt}:${p.id}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): Position {
  const text = /^[A-Za-z0-9_-]{1,400}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const m = /^(\d{1,16}):(.{1,200})$/s.exec(text);
  if (!m) throw new BadCursorError('expected the nextCursor of an earlier page');
  return { createdAt: Number(m[1]), id: m[2]! };
}

export function isCursor(cursor: string): boolean {
  try {
    decodeCursor(cursor);
    return true;
  } catch {
    return false;
  }
}

/** Newest-first order: negative when a comes first. */
export function newestFirst(a: Position, b: Position): number {
  return b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** Whether r comes strictly after position c in newest-first order. */
export function isAfter(r: Position, c: Position): boolean {
  return newestFirst(r, c) > 0;
}
