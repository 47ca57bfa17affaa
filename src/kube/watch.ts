// List, then watch, one resource: the loop client-go calls a reflector, without its cache. The
// list (paged, 500 a page) reports every object as ADDED and gives the resourceVersion the watch
// starts from; each watch goes on from the last resourceVersion seen, and a 410 Gone (that version
// is compacted away) or a watch that fails to open starts over with a fresh list, after retryMs.
// Objects are handed to the caller and forgotten: what to keep is the caller's (e.g. a hash).
import type { KubeObject } from './kube.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchHandlers {
  onEvent(type: WatchEventType, obj: KubeObject): void;
  /** a list or watch failed; the loop goes on after retryMs */
  onError?(err: unknown): void;
  /** the first (or a fresh) list was handed over whole */
  onSynced?(): void;
}

export interface WatchHandle {
  stop(): void;
  /** resolves once the first list was handed over (or the watch stopped) */
  synced: Promise<void>;
}

export type ListPage = (continueToken?: string) => Promise<{ items: KubeObject[]; resourceVersion: string; continue?: string }>;
type WatchFn = (
  params: Record<string, string | number | boolean | undefined>,
  cb: (type: string, obj: KubeObject) => void,
  done: (err: unknown) => void,
) => Promise<AbortController>;

const GONE = 410;

export function reflect(o: { list: ListPage; watch: WatchFn; handlers: WatchHandlers; retryMs?: number; timeoutSeconds?: number }): WatchHandle {
  const retryMs = o.retryMs ?? 1000;
  let stopped = false;
  let current: AbortController | undefined;
  let wake: (() => void) | undefined;
  let markSynced!: () => void;
  const synced = new Promise<void>((r) => (markSynced = r));
  const pause = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });

  async function listAll(): Promise<string> {
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await o.list(cont);
      for (const item of page.items) if (!stopped) o.handlers.onEvent('ADDED', item);
      rv = page.resourceVersion || rv;
      cont = page.continue;
    } while (cont && !stopped);
    return rv;
  }

  /** One watch from rv: resolves with the last resourceVersion seen, or 'gone'. */
  function watchOnce(rv: string): Promise<string | 'gone'> {
    return new Promise((resolve, reject) => {
      let last = rv;
      let gone = false;
      const cb = (type: string, obj: KubeObject) => {
        if (type === 'ERROR') {
          if ((obj as { code?: number }).code === GONE) gone = true;
          return;
        }
        const v = obj?.metadata?.resourceVersion;
        if (v) last = v;
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') o.handlers.onEvent(type, obj);
      };
      const done = (err: unknown) => {
        if (gone || (err as { statusCode?: number } | null)?.statusCode === GONE) resolve('gone');
        else if (err && !stopped && (err as { name?: string }).name !== 'AbortError') reject(err);
        else resolve(last);
      };
      o.watch({ resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: o.timeoutSeconds ?? 300 }, cb, done).then(
        (c) => {
          current = c;
          if (stopped) c.abort();
        },
        reject,
      );
    });
  }

  void (async () => {
    while (!stopped) {
      try {
        let rv = await listAll();
        if (stopped) break;
        o.handlers.onSynced?.();
        markSynced();
        while (!stopped) {
          const r = await watchOnce(rv);
          if (r === 'gone') break;
          rv = r;
        }
      } catch (err) {
        if (stopped) break;
        o.handlers.onError?.(err);
        await pause(retryMs);
      }
    }
    markSynced();
  })();

  return {
    synced,
    stop() {
      stopped = true;
      current?.abort();
      wake?.();
    },
  };
}
