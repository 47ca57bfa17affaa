import type { Config } from '../config.js';
import type { Notification, Notifier, NotifierKind } from './notifier.js';
import { postJson } from './notifier.js';

/** A generic JSON webhook: the notification as it is, versioned. */
export class WebhookNotifier implements Notifier {
  readonly name = 'webhook';
  constructor(private readonly url: string) {}

  async send(n: Notification, signal: AbortSignal): Promise<void> {
    await postJson(this.url, { version: '1', ...n, at: new Date(n.at).toISOString() }, signal);
  }
}

/** Enabled by NOTIFY_WEBHOOK_URL. */
export const webhookKind: NotifierKind = {
  name: 'webhook',
  create: (config: Config) => (config.NOTIFY_WEBHOOK_URL ? new WebhookNotifier(config.NOTIFY_WEBHOOK_URL) : null),
};
