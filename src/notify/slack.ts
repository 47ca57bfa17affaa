import type { Config } from '../config.js';
import { oneLine } from '../plain-text.js';
import type { Notification, Notifier, NotifierKind } from './notifier.js';
import { postJson } from './notifier.js';

const ICON: Record<Notification['severity'], string> = { info: ':white_check_mark:', warning: ':warning:', critical: ':rotating_light:' };

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
 * The mrkdwn body: the title in bold, one bullet per line, the record link (ours, not the alert's).
 * The title and each line are one line each: a line break or another control character in them
 * (an alert's summary in `Impact: …`) becomes a space, so alert text cannot forge a bullet or a
 * heading of its own.
 */
export function slackText(n: Notification): string {
  const head = `${ICON[n.severity]} *${escapeSlack(oneLine(n.title))}*`;
  const link = n.link ? [`<${n.link.replace(/[|<>]/g, encodeURIComponent)}|Rollback record>`] : [];
  return [head, ...n.lines.map((l) => `• ${escapeSlack(oneLine(l))}`), ...link].join('\n');
}

/** A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat accept `text` + blocks). */
export class SlackNotifier implements Notifier {
  readonly name = 'slack';
  constructor(private readonly url: string) {}

  async send(n: Notification, signal: AbortSignal): Promise<void> {
    const body = slackText(n);
    await postJson(this.url, { text: body, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: body } }] }, signal);
  }
}

/** Enabled by NOTIFY_SLACK_URL. */
export const slackKind: NotifierKind = {
  name: 'slack',
  create: (config: Config) => (config.NOTIFY_SLACK_URL ? new SlackNotifier(config.NOTIFY_SLACK_URL) : null),
};
