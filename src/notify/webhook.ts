import type { Notification, Notifier } from './notifier.js';
import { postJson } from './notifier.js';

/** A generic JSON webhook: the notification as it is, versioned. */
export class WebhookNotifier implements Notifier {
  readonly name = 'webhook';
  constructor(private readonly url: string) {}

  async send(n: Notification, signal: AbortSignal): Promise<void> {
    await postJson(this.url, { version: '1', ...n, at: new Date(n.at).toISOString() }, signal);
  }
}
