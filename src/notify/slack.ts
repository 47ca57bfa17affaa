import type { Config } from '../config.js';
import { oneLine } from '../plain-text.js';
import { escapeRegex } from '../triggers/promql.js';
import type { Notification, Notifier, NotifierKind } from './notifier.js';
import { postJson } from './notifier.js';
import { NotifyError } from './retry.js';

const ICON: Record<Notification['severity'], string> = { info: ':white_check_mark:', warning: ':warning:', critical: ':rotating_light:' };

/**
 * Slack's limits on an incoming webhook's message (docs.slack.dev, Block Kit reference): a section
 * block's text is at most 3,000 characters, a message at most 50 blocks, its top-level `text` is
 * cut past 40,000; past the first two Slack answers 400 (invalid_blocks) and the message is lost.
 * Slack also refuses a message whose blocks add up to much over 12,000 characters
 * (msg_blocks_too_long), a limit it does not document exactly: a message here stays under
 * MESSAGE_MAX. Characters are counted as UTF-16 code units, never fewer than Slack counts.
 */
export const SLACK_LIMITS = { sectionText: 3000, blocks: 50, text: 40_000 } as const;
/** The longest line (bullet included) and title: an alert's 4,096-byte summary is cut, with `…`, well within a block. */
const LINE_MAX = 1500;
const TITLE_MAX = 500;
/** The whole message's text at most: the lines past it are counted, not sent (the record has them all). */
const MESSAGE_MAX = 10_000;
const ELLIPSIS = '…';

/**
 * Slack's three control characters in message text, as Slack requires (api.slack.com, "Formatting
 * text for app surfaces: escaping text"): `&` `<` `>` become `&amp;` `&lt;` `&gt;`. Alert labels and
 * annotations are data: escaped, `<!channel>`, `<@U123>` or `<https://evil|click>` in one of them
 * shows as text, never as a mention or a link.
 */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Text that may quote an alert (its labels and annotations, a target templated from them), made
 * inert in Slack's mrkdwn and in the Markdown that Mattermost and Rocket.Chat read in `text`: what
 * would mention, link, embed or format is replaced by a character that reads the same and means
 * nothing to either.
 *
 *   in the alert                         shown as
 *   @channel @here @all @alice           ＠channel … (a fullwidth at: no mention; an e-mail's @ stays)
 *   .@channel -@here x.@all _@alice      .＠channel … (any @ not after a letter or digit: Mattermost
 *                                        trims a word's leading `:.-_` and splits on `.-:`)
 *   https://evil.example  www.evil.x     https[:]//evil.example  www[.]evil.x (defanged: no link)
 *   [text](url)  ![](url)                [text] (url)  ! [] (url) (no link, no image)
 *   * ~ `                                ∗ ∼ ˋ (no bold, strike, code; Mattermost's ~channel link)
 *   _ at a word's edge (_it_)            ˍ (no italics; http_requests_total keeps its own)
 *   :emoji:                              ꞉emoji: (no emoji: a ✅ cannot be slipped in)
 *
 * `&` `<` `>` are escaped after this (escapeSlack), so `<!channel>` and `<url|text>` show as text.
 */
export function inert(text: string): string {
  return text
    // first: a look-alike put in below (ˍ, ˋ) is a letter, and would shield an @ after it
    .replace(/(?<![\p{L}\p{N}])@/gu, '\uff20')
    .replace(/(?<![\p{L}\p{N}])_|_(?![\p{L}\p{N}])/gu, '\u02cd')
    .replace(/`/g, '\u02cb')
    .replace(/\*/g, '\u2217')
    .replace(/~/g, '\u223c')
    .replace(/:\/\//g, '[:]//')
    .replace(/\bwww\./gi, (m) => `${m.slice(0, 3)}[.]`)
    .replace(/\]\(/g, '] (')
    .replace(/!\[/g, '! [')
    .replace(/(?<![\p{L}\p{N}]):(?=[a-z][a-z0-9_+-]*:)/gu, '\ua789');
}

/**
 * `text` escaped for Slack (escapeSlack), at most `max` characters once escaped: cut before the
 * character that would not fit, with `…`. An entity (`&amp;`) or a surrogate pair is never cut in half.
 */
function fitted(text: string, max: number): string {
  if (max < ELLIPSIS.length) return '';
  const whole = escapeSlack(text);
  if (whole.length <= max) return whole;
  let out = '';
  for (const ch of text) {
    const e = escapeSlack(ch);
    if (out.length + e.length + ELLIPSIS.length > max) break;
    out += e;
  }
  return out + ELLIPSIS;
}

/** A record link of rollguard's own, as Slack's `<url|text>`. */
const slackLink = (url: string, label?: string) => `<${url.replace(/[|<>]/g, encodeURIComponent)}${label ? `|${label}` : ''}>`;

/**
 * The path and query a link under EXTERNAL_URL may have to stay a link: plain characters only (no
 * `%` escape, no `:` of a nested URL, no `@`, a backslash or `#`), as in the links rollguard builds itself
 * (`/v1/rollbacks?state=blocked`, `/v1/rollbacks/<id>/report`).
 */
const OWN_REST = /^\/[\w\-./~]*(?:\?[\w\-.~=&,]*)?$/;
/** A dot segment (`/./`, `/../`): the link would lead elsewhere than it reads. */
const DOT_SEGMENT = /(?:^|\/)\.{1,2}(?:\/|\?|$)/;

/**
 * Whether `raw` (text that starts with `base/`) is a link of rollguard's own: its rest is plain
 * (OWN_REST) with no dot segment, and its parsed, normalised form (new URL) has the base's origin
 * and stays under the base's path. Anything else is alert text, made inert (defanged) as all of it.
 */
function ownLink(raw: string, base: string): boolean {
  const rest = raw.slice(base.length);
  // nor an empty segment (`//evil.example/x` under a base at the host's root reads as another host)
  const path = rest.split('?')[0]!;
  if (!OWN_REST.test(rest) || DOT_SEGMENT.test(path) || path.includes('//')) return false;
  try {
    const b = new URL(base);
    const u = new URL(raw);
    const under = b.pathname.replace(/\/+$/, '');
    return u.origin === b.origin && u.pathname.startsWith(`${under}/`) && !u.username && !u.password;
  } catch {
    return false;
  }
}

/**
 * One line of a message: inert and escaped, at most `max` characters. A URL under `ownBase`
 * (EXTERNAL_URL: rollguard's own records, as in a folded summary) stays a link, whole, when it is
 * one (ownLink: no `..`, no escape, no nested URL); any other is defanged with the rest.
 */
function renderLine(line: string, max: number, ownBase: string): string {
  const text = oneLine(line);
  if (!ownBase) return fitted(inert(text), max);
  const own = new RegExp(`${escapeRegex(ownBase)}/[^\\s<>|]*`, 'g');
  let out = '';
  let at = 0;
  for (const m of text.matchAll(own)) {
    if (!ownLink(m[0], ownBase)) continue;
    const before = escapeSlack(inert(text.slice(at, m.index)));
    const link = slackLink(m[0]);
    // what does not fit is cut as text (an own link cut in half would lead nowhere)
    if (out.length + before.length + link.length > max) break;
    out += before + link;
    at = m.index + m[0].length;
  }
  return out + fitted(inert(text.slice(at)), max - out.length);
}

/**
 * The mrkdwn body as lines: the title in bold, one bullet per line, the record link (ours, not the
 * alert's). The title and each line are one line each: a line break or another control character
 * in them (an alert's summary in `Impact: …`) becomes a space, so alert text cannot forge a bullet
 * or a heading of its own. The title and the lines may quote alert text: inert (no mention, link,
 * image, emphasis or emoji of the alert's), escaped, each cut to LINE_MAX (the title TITLE_MAX),
 * and the message to MESSAGE_MAX (the lines past it counted in a last one), so that every block
 * and the whole message stay within Slack's limits whatever the alert says.
 */
export function slackLines(n: Notification, ownBase = ''): string[] {
  const base = ownBase.replace(/\/+$/, '');
  const head = `${ICON[n.severity]} *${renderLine(n.title, TITLE_MAX, base)}*`;
  const link = n.link ? [slackLink(n.link, 'Rollback record')] : [];
  const tail = link.join('').length + 100;
  const out = [head];
  let used = head.length;
  for (const [i, l] of n.lines.entries()) {
    const line = `• ${renderLine(l, LINE_MAX - 2, base)}`;
    if (used + 1 + line.length + tail > MESSAGE_MAX) {
      out.push(`• … ${n.lines.length - i} more line${n.lines.length - i === 1 ? '' : 's'}, left out: the rollback record has them all`);
      break;
    }
    out.push(line);
    used += 1 + line.length;
  }
  return [...out, ...link];
}

/** The mrkdwn body (slackLines), one string. */
export function slackText(n: Notification, ownBase = ''): string {
  return slackLines(n, ownBase).join('\n');
}

/** The body's lines packed, in order, into as few section blocks as fit within Slack's limit each. */
export function slackBlocks(lines: readonly string[]): { type: 'section'; text: { type: 'mrkdwn'; text: string; verbatim: true } }[] {
  const texts: string[] = [];
  for (const l of lines) {
    const last = texts.length - 1;
    if (last >= 0 && texts[last]!.length + 1 + l.length <= SLACK_LIMITS.sectionText) texts[last] += `\n${l}`;
    else texts.push(l);
  }
  // verbatim: Slack turns no bare URL or channel name into a link (our record link is explicit)
  return texts.slice(0, SLACK_LIMITS.blocks).map((text) => ({ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } }));
}

/**
 * A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat accept `text` + blocks).
 * A message the receiver refuses (400: Slack's invalid_blocks, say) is sent once more as its text
 * alone, so that the page still goes out.
 */
export class SlackNotifier implements Notifier {
  readonly name = 'slack';
  constructor(
    private readonly url: string,
    /** EXTERNAL_URL: links to rollguard's own records in a line stay links */
    private readonly ownBase = '',
  ) {}

  async send(n: Notification, signal: AbortSignal): Promise<void> {
    const lines = slackLines(n, this.ownBase);
    const text = lines.join('\n');
    try {
      await postJson(this.url, { text, blocks: slackBlocks(lines) }, signal);
    } catch (err) {
      if (!(err instanceof NotifyError) || err.status !== 400) throw err;
      await postJson(this.url, { text }, signal);
    }
  }
}

/** Enabled by NOTIFY_SLACK_URL. */
export const slackKind: NotifierKind = {
  name: 'slack',
  create: (config: Config) => (config.NOTIFY_SLACK_URL ? new SlackNotifier(config.NOTIFY_SLACK_URL, config.EXTERNAL_URL) : null),
};
