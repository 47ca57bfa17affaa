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
 * Regexes run on re2js, a JavaScript port of Go's regexp (RE2 semantics, as Alertmanager): matching
 * time is linear in the label value, so no rule meeting a long or hostile label value can stall the
 * event loop, and a regex RE2 refuses (lookaround, backreferences) is refused here with RE2's
 * own message, so a rule means the same in rollguard as in Alertmanager's routes.
 */

import { RE2JS, RE2JSException } from 're2js';
import { ownLabel, prototypeName } from './template.js';

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

/**
 * Compiles a rule regex as Alertmanager does (Go regexp, anchored as `^(?:REGEX)$`). The regex is
 * first compiled on its own so that an error quotes what the user wrote, and so that text which
 * only parses once wrapped (`a)|(b`) is refused.
 */
function compileRegex(value: string): RE2JS {
  try {
    RE2JS.compile(value);
    return RE2JS.compile(`^(?:${value})$`);
  } catch (e) {
    if (!(e instanceof RE2JSException)) throw e;
    const why = e.message.replace(/^error parsing regexp: /, '');
    throw new MatcherError(`invalid regex "${value}": ${why} (RE2 syntax, as Alertmanager: no lookaround, no backreferences)`);
  }
}

export function compileMatcher(name: string, op: MatchOp, value: string): Matcher {
  if (!LABEL_NAME.test(name)) throw new MatcherError(`"${name}" is not a valid label name`);
  const proto = prototypeName(name);
  if (proto) throw new MatcherError(proto);
  let test: (v: string) => boolean;
  if (op === '=' || op === '!=') {
    test = (v) => v === value;
  } else {
    const re = compileRegex(value);
    test = (v) => re.testExact(v);
  }
  const negate = op === '!=' || op === '!~';
  return {
    name,
    op,
    value,
    matches: negate ? (labels) => !test(ownLabel(labels, name) ?? '') : (labels) => test(ownLabel(labels, name) ?? ''),
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
