/**
 * The one way a URL is printed (logs, errors, records, notifications): without its user and
 * password, and with the values of query parameters that carry credentials (token, key, secret,
 * password, sig, auth, ...) replaced by ***. The user information is everything between `://` and
 * the last `@` before the query (or, with a `?` or `#` before any `/`, the last `@` followed by a
 * host), so a password holding an unencoded `/`, `@`, `?` or `#` is cut whole (a path holding an
 * `@` is then cut too: it prints less, never more). It works on every scheme rollguard
 * takes, multi-host ones too (redis-sentinel://:pw@h1:26379,h2:26379/master), which URL() cannot
 * parse; so it is written over the string rather than with URL().
 */
export function redactUrl(url: string, opts: { base?: boolean } = {}): string {
  if (url === '') return '';
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?(.*)$/is.exec(url.trim())!;
  const [, scheme = '', rest] = m as unknown as [string, string | undefined, string];
  // without a scheme an `@` cannot be told from a user part: such a string is not printed
  if (scheme === '' && rest.includes('@')) return '<a URL that does not parse>';
  const q = rest.search(/[?#]/);
  const beforeQuery = q < 0 ? rest : rest.slice(0, q);
  let at = beforeQuery.lastIndexOf('@');
  if (at < 0 && q >= 0 && !beforeQuery.includes('/')) {
    // a `?` or `#` before any `/`: maybe inside a password (redis://:pa?ss@host) when an `@` follows with a host after it
    const hostAt = /@[A-Za-z0-9.\-_[\]:,]+(?=[/?#]|$)/g;
    for (let h = hostAt.exec(rest); h; h = hostAt.exec(rest)) at = h.index;
  }
  let tail = at < 0 ? rest : rest.slice(at + 1);
  const userinfo = at < 0 ? '' : '***@';
  const split = tail.search(/[?#]/);
  let path = split < 0 ? tail : tail.slice(0, split);
  let suffix = split < 0 ? '' : tail.slice(split);
  if (opts.base) {
    // a base URL as shown: no query, no fragment, no trailing slash
    path = path.replace(/\/+$/, '');
    suffix = '';
  } else {
    suffix = suffix.replace(/([?#&])([^=&#]*)=([^&#]*)/g, (all, sep: string, key: string) => (isSecretName(key) ? `${sep}${key}=***` : all));
  }
  tail = path + suffix;
  return `${scheme}${userinfo}${tail}`;
}

/** Query parameter names that carry credentials: token, access_token, api_key, apiKey, X-Amz-Signature, sig, auth, password, ... */
export function isSecretName(name: string): boolean {
  let n = name;
  try {
    n = decodeURIComponent(name);
  } catch {
    // keep it as written
  }
  const words = n
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/);
  return words.some((w) => SECRET_WORDS.has(w)) || SECRET_WORDS.has(n.toLowerCase().replace(/[^a-z0-9]/g, ''));
}

const SECRET_WORDS = new Set(['token', 'key', 'apikey', 'secret', 'password', 'passwd', 'pass', 'pwd', 'sig', 'signature', 'auth', 'authorization', 'credential', 'credentials', 'session', 'jwt', 'code']);
