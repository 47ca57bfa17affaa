import type { Notification, Notifier } from './notifier.js';
import { postJson } from './notifier.js';

const ICON: Record<Notification['severity'], string> = { info: ':white_check_mark:', warning: ':warning:', critical: ':rotating_light:' };

/** A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat accept `text` + blocks). */
export class SlackNotifier implements Notifier {
  readonly name = 'slack';
  constructor(private readonly url: string) {}

  async send(n: Notification, signal: AbortSignal): Promise<void> {
    const head = `${ICON[n.severity]} *${n.title}*`;
    const body = [head, ...n.lines.map((l) => `• ${l}`), ...(n.link ? [`<${n.link}|Rollback record>`] : [])].join('\n');
    await postJson(this.url, { text: body, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: body } }] }, signal);
  }
}
