/**
 * Alertmanager-style label matchers: `name=value`, `name!=value`, `name=~regex`, `name!~regex`.
 *
 * Semantics follow Alertmanager (pkg/labels):
 * - regexes are fully anchored, compiled as `^(?:REGEX)$`, so `=~"api"` does not match "api-v2";
 * - a matcher on a label the alert does not have compares against the empty string, so
 *   `team=""` matches alerts without a team label and `team!~".+"` does too;
 * - values may be double-quoted (with `\"`, `\\` and `\n` escapes; any other backslash stays, so
 *   `"\d+"` is the regex \d+) or bare.
 *
 * Alertmanager uses Go's RE2, which has no lookaround or backreferences; such regexes are refused
 * here, so that a rule that works in rollguard also means the same in Alertmanager's own matchers.
 */

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
  /** true when the labels satisfy this matcher */
  matches(labels: Record<string, string>): boolean;
  /** the matcher as it would be written in a rule file */
  toString(): string;
}

export class MatcherError extends Error {
  override name = 'MatcherError';
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Returns what in a regex RE2 (Go) would not accept, scanning escapes and character classes properly. */
export function re2Unsupported(re: string): string | undefined {
  let inClass = false;
  for (let i = 0; i < re.length; i++) {
    const c = re[i]!;
    if (c === '\\') {
      const n = re[i + 1];
      if (!inClass && n !== undefined && n >= '1' && n <= '9') return 'backreferences (\\1 ...)';
      if (!inClass && n === 'k' && re[i + 2] === '<') return 'named backreferences (\\k<name>)';
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      if (re[i + 1] === '^') i++;
      if (re[i + 1] === ']') i++; // a leading ] is literal
      continue;
    }
    if (c === '(' && re[i + 1] === '?') {
      const rest = re.slice(i + 2, i + 4);
      if (rest.startsWith('=') || rest.startsWith('!') || rest === '<=' || rest === '<!') return 'lookaround assertions ((?=, (?!, (?<=, (?<!)';
    }
  }
  return undefined;
}

export function compileMatcher(name: string, op: MatchOp, value: string): Matcher {
  if (!LABEL_NAME.test(name)) throw new MatcherError(`"${name}" is not a valid label name`);
  let test: (v: string) => boolean;
  if (op === '=' || op === '!=') {
    test = (v) => v === value;
  } else {
    const what = re2Unsupported(value);
    if (what) throw new MatcherError(`regex "${value}" uses ${what}, which Alertmanager's RE2 does not support`);
    // RE2's leading flag group (?i), (?s), (?is) ... becomes JS flags (Node 20 has no inline flags)
    const flagGroup = /^\(\?([imsU]+)\)/.exec(value);
    let body = value;
    let flags = '';
    if (flagGroup) {
      if (flagGroup[1]!.includes('U')) throw new MatcherError(`regex "${value}": the U (ungreedy) flag is not supported`);
      flags = [...new Set(flagGroup[1]!)].join('');
      body = value.slice(flagGroup[0].length);
    }
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${body})$`, flags);
    } catch (e) {
      throw new MatcherError(`invalid regex "${value}": ${(e as Error).message}`);
    }
    test = (v) => re.test(v);
  }
  const negate = op === '!=' || op === '!~';
  return {
    name,
    op,
    value,
    matches: negate ? (labels) => !test(labels[name] ?? '') : (labels) => test(labels[name] ?? ''),
    toString: () => `${name}${op}${JSON.stringify(value)}`,
  };
}

/**
 * Parses one matcher as Alertmanager writes them in `matchers:` lists, e.g. `alertname="HighErrorRate"`,
 * `severity =~ "critical|page"`, `env!=staging`.
 */
export function parseMatcher(text: string): Matcher {
  const m = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$/s.exec(text);
  if (!m) {
    throw new MatcherError(
      `expected a matcher like name="value", name!="value", name=~"regex" or name!~"regex", got ${JSON.stringify(text)}`,
    );
  }
  const [, name, op, raw] = m as unknown as [string, string, MatchOp, string];
  return compileMatcher(name, op, unquote(raw, text));
}

function unquote(raw: string, whole: string): string {
  if (!raw.startsWith('"')) {
    if (raw.includes('"')) throw new MatcherError(`unbalanced quote in matcher ${JSON.stringify(whole)}`);
    return raw;
  }
  let out = '';
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\') {
      const n = raw[i + 1];
      if (n === undefined) break;
      // as Alertmanager: \n, \" and \\ are escapes; any other backslash is literal (so "\d+" is the regex \d+)
      out += n === 'n' ? '\n' : n === '"' || n === '\\' ? n : `\\${n}`;
      i++;
    } else if (c === '"') {
      if (i !== raw.length - 1) {
        throw new MatcherError(`unexpected text after the closing quote in matcher ${JSON.stringify(whole)}`);
      }
      return out;
    } else out += c;
  }
  throw new MatcherError(`missing closing quote in matcher ${JSON.stringify(whole)}`);
}

export function matchesAll(matchers: readonly Matcher[], labels: Record<string, string>): boolean {
  for (const m of matchers) if (!m.matches(labels)) return false;
  return true;
}
