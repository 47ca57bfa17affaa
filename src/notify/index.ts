// The registry of notifier kinds: one file per kind, one line here. Each kind reads its own
// settings from the config and is enabled when they are set (NOTIFY_SLACK_URL, NOTIFY_WEBHOOK_URL).
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { Notifications, type Notifier, type NotifierKind } from './notifier.js';
import { slackKind } from './slack.js';
import { webhookKind } from './webhook.js';

export const NOTIFIER_KINDS: readonly NotifierKind[] = [slackKind, webhookKind];

/** The notifiers the config enables, in registry order. */
export function createNotifiers(config: Config): Notifier[] {
  return NOTIFIER_KINDS.flatMap((k) => k.create(config) ?? []);
}

/** The notifiers the config enables, with the config's timeout, retries (NOTIFY_RETRY_FOR) and folding (NOTIFY_FOLD_AFTER): serve's. */
export function createNotifications(config: Config, logger: Logger, metrics: Metrics, notifiers: Notifier[] = createNotifiers(config)): Notifications {
  return new Notifications(notifiers, logger, metrics, config.NOTIFY_TIMEOUT, { retryForMs: config.NOTIFY_RETRY_FOR, foldAfter: config.NOTIFY_FOLD_AFTER, externalUrl: config.EXTERNAL_URL });
}

export { Notifications, type Notification, type Notifier, type NotifierKind } from './notifier.js';
