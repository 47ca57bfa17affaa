import { watch, type FSWatcher } from 'node:fs';
import { lstat, realpath, stat } from 'node:fs/promises';
import { basename, dirname, resolve, sep } from 'node:path';
import type { Metrics } from '../metrics.js';
import { formatRuleError, loadRules, type RuleFileError } from './loader.js';
import { RuleSet } from './ruleset.js';
import { Rounds } from '../rounds.js';

/**
 * Holds the rules in force and reloads them atomically, as Prometheus does its config: a reload
 * loads every rule file; only if all of them are valid does the new set replace the old one. A
 * bad edit keeps the last good rules in force, is logged with its file:line errors, and sets
 * rollguard_config_last_reload_successful to 0.
 *
 * Reloads come from reload() (wired to SIGHUP and POST /-/reload) and from file changes when
 * watch() is on (fs.watch on each rule path, debounced). Concurrent reloads are serialised.
 */

export interface ReloadResult {
  ok: boolean;
  /** the errors, one per line (file:line: field: message), when ok is false */
  error?: string;
  errors?: RuleFileError[];
  /** rules in force after this reload (the old count when it failed) */
  rules: number;
  files: string[];
  /** what asked for the reload */
  trigger: string;
}

export interface HolderLogger {
  info(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RuleHolderOptions {
  /** rule files and directories */
  paths: string[];
  metrics?: Pick<Metrics, 'configLastReloadSuccessful' | 'configLastReloadSuccessTimestamp' | 'rulesLoaded'>;
  logger?: HolderLogger;
  /** file-change debounce, default 250 ms */
  debounceMs?: number;
  now?: () => number;
}

export class RuleHolder {
  private set: RuleSet = RuleSet.empty();
  private readonly reloads = new Rounds<string, ReloadResult>((trigger) => this.doReload(trigger));
  private watchers: FSWatcher[] = [];
  /** each watched directory and where it resolved to when its watch was set (a watch follows the inode, not the path) */
  private watchedAt = new Map<string, string>();
  private watching = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private listeners: Array<(r: ReloadResult) => void> = [];
  private lastResult: ReloadResult | undefined;

  constructor(private readonly opts: RuleHolderOptions) {}

  /** Builds a holder and loads the rules; throws if the first load fails (do not start on broken rules). */
  static async create(opts: RuleHolderOptions): Promise<RuleHolder> {
    const h = new RuleHolder(opts);
    const r = await h.reload('startup');
    if (!r.ok) throw new Error(`rules do not load:\n${r.error}\n(the rule files of RULES_PATH: ${opts.paths.join(', ')})`);
    return h;
  }

  /** The rules in force. Read it once per alert batch: a reload swaps the whole set. */
  get rules(): RuleSet {
    return this.set;
  }

  get last(): ReloadResult | undefined {
    return this.lastResult;
  }

  /**
   * For /readyz: throws when no rule is in force because loading failed, naming RULES_PATH, the
   * paths it holds and the files read, so the operator knows what to fix.
   */
  assertLoaded(): void {
    if (this.set.size > 0 || this.lastResult?.ok) return;
    const files = this.lastResult?.files ?? [];
    throw new Error(
      `no rules loaded: RULES_PATH is ${this.opts.paths.join(', ')}; files read: ${files.length ? files.join(', ') : 'none'}; ` +
        'fix the rule files or RULES_PATH, then reload (SIGHUP or POST /-/reload)',
    );
  }

  /** Called after every reload, good or bad. */
  onReload(fn: (r: ReloadResult) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /**
   * Reloads now. A reload requested while one runs waits for it and then reads the files again
   * (requests arriving meanwhile share that next reload), so the result a caller gets always
   * reflects the files as they were when it asked.
   */
  reload(trigger = 'manual'): Promise<ReloadResult> {
    return this.reloads.run(trigger);
  }

  private async doReload(trigger: string): Promise<ReloadResult> {
    const now = this.opts.now ?? Date.now;
    const m = this.opts.metrics;
    let result: ReloadResult;
    try {
      const loaded = await loadRules(this.opts.paths);
      if (loaded.errors.length) {
        result = {
          ok: false,
          error: loaded.errors.map(formatRuleError).join('\n'),
          errors: loaded.errors,
          rules: this.set.size,
          files: loaded.files,
          trigger,
        };
      } else {
        this.set = new RuleSet(loaded.rules, now());
        result = { ok: true, rules: this.set.size, files: loaded.files, trigger };
      }
    } catch (e) {
      result = { ok: false, error: (e as Error).message, rules: this.set.size, files: [], trigger };
    }
    if (result.ok) {
      m?.configLastReloadSuccessful.set(1);
      m?.configLastReloadSuccessTimestamp.set(now() / 1000);
      m?.rulesLoaded.set(result.rules);
      this.opts.logger?.info({ rules: result.rules, files: result.files.length, trigger }, 'rules loaded');
    } else {
      m?.configLastReloadSuccessful.set(0);
      this.opts.logger?.error({ trigger, errors: result.error, rulesInForce: result.rules }, 'rules reload failed; the previous rules stay in force');
    }
    this.lastResult = result;
    for (const l of this.listeners) l(result);
    return result;
  }

  /**
   * Watches the rule paths and reloads (debounced) on change. Directories are watched themselves,
   * files through their directory (editors replace files by rename, which a watch on the file loses).
   *
   * A watch follows the directory it resolved to, not its path: a rule directory reached through a
   * symlink that is swapped (git-sync's `current -> .worktrees/<commit>`) would be watched in its
   * old place for ever. So the directory holding each symlink of a path is watched for that name
   * too, and the watches are set again after a reload once a watched path resolves elsewhere.
   */
  async watch(): Promise<void> {
    if (this.closed) return;
    this.watching = true;
    const dirs = new Map<string, Set<string> | 'all'>();
    const add = (dir: string, name?: string) => {
      const cur = dirs.get(dir);
      if (name === undefined) dirs.set(dir, 'all');
      else if (cur !== 'all') dirs.set(dir, new Set([...(cur ?? []), name]));
    };
    for (const p of this.opts.paths) {
      const abs = resolve(p);
      let isDir = false;
      try {
        isDir = (await stat(abs)).isDirectory();
      } catch {
        isDir = false;
      }
      if (isDir) add(abs);
      else add(dirname(abs), basename(abs));
      for (const link of await symlinksOn(isDir ? abs : dirname(abs))) add(dirname(link), basename(link));
    }
    const watchedAt = new Map<string, string>();
    for (const dir of dirs.keys()) watchedAt.set(dir, await realpath(dir).catch(() => ''));
    if (!this.watching) return; // unwatched meanwhile
    // the new watches are set before the old ones are closed: no change falls between them
    const watchers: FSWatcher[] = [];
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, file) => {
          const name = file ? file.toString() : undefined;
          // a watched directory: any change (reloading is cheap and debounced). Watched files: their
          // names, and Kubernetes ConfigMap volume swaps (the ..data symlink is replaced atomically)
          if (names !== 'all' && name && !names.has(name) && !name.startsWith('..')) return;
          this.schedule();
        });
        w.on('error', (e) => this.opts.logger?.error({ dir, err: e.message }, 'rules watch failed'));
        watchers.push(w);
      } catch (e) {
        this.opts.logger?.error({ dir, err: (e as Error).message }, 'cannot watch rules directory');
      }
    }
    for (const w of this.watchers) w.close();
    this.watchers = watchers;
    this.watchedAt = watchedAt;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reload('file change').then(() => this.rewatchIfMoved());
    }, this.opts.debounceMs ?? 250);
    this.timer.unref?.();
  }

  /**
   * Sets the watches again when a watched directory now resolves elsewhere (its symlink was
   * swapped), then reloads once more: a change made while the old watch was on the old place is
   * read too. A reload that finds nothing moved stops there.
   */
  private async rewatchIfMoved(): Promise<void> {
    for (const [dir, was] of this.watchedAt) {
      if ((await realpath(dir).catch(() => '')) === was) continue;
      if (!this.watching) return;
      this.opts.logger?.info({ dir }, 'a watched rules directory now resolves elsewhere: watching it there');
      await this.watch();
      if (this.watching) this.schedule();
      return;
    }
  }

  unwatch(): void {
    this.watching = false;
    this.watchedAt = new Map();
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stops watching; waits for a running reload. */
  async close(): Promise<void> {
    this.closed = true;
    this.unwatch();
    await this.reloads.running?.catch(() => undefined);
  }
}

/** The symlinks on the way to `dir` (itself included): `/git/current` for `/git/current/rules` when `current` is a link. */
async function symlinksOn(dir: string): Promise<string[]> {
  const out: string[] = [];
  const parts = dir.split(sep).filter(Boolean);
  let at = dir.startsWith(sep) ? sep : '';
  for (const part of parts) {
    at = at === sep || at === '' ? `${at}${part}` : `${at}${sep}${part}`;
    const st = await lstat(at).catch(() => undefined);
    if (st?.isSymbolicLink()) out.push(at);
  }
  return out;
}
