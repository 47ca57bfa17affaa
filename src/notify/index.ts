// The registry of notifier kinds: one file per kind, one line here. Each kind reads its own
// settings from the config and is enabled when they are set (NOTIFY_SLACK_URL, NOTIFY_WEBHOOK_URL).
import type { Config } from '../config.js';
import type { Notifier, NotifierKind } from './notifier.js';
import { slackKind } from './slack.js';
import { webhookKind } from './webhook.js';

export const NOTIFIER_KINDS: readonly NotifierKind[] = [slackKind, webhookKind];

/** The notifiers the config enables, in registry order. */
export function createNotifiers(config: Config): Notifier[] {
  return NOTIFIER_KINDS.flatMap((k) => k.create(config) ?? []);
}

export { Notifications, type Notification, type Notifier, type NotifierKind } from './notifier.js';
