import { sql, type Transaction } from 'kysely';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { MailAddress, MailAttachment, Mailer } from '../core/mail.ts';
import { mailboxProblem } from '../core/mailbox.ts';
import type { DB } from '../db/tables.ts';
import type { OutboxHandler, OutboxItem } from './outbox.ts';

/** Payload of an `email` outbox item. */
export interface EmailPayload {
  to: string;
  subject: string;
  text: string;
  html?: string;
  /** Which message this is (welcome, service-ready, …), for the `emails` record. */
  template: string;
  tenantId?: string;
  attachments?: MailAttachment[];
  /**
   * The text carries a credential (a password reset link): once sent, the
   * outbox keeps the payload without it.
   */
  scrubAfterSend?: boolean;
}

/**
 * Payload of an `alert` outbox item: a message to every platform admin. An
 * alert by default (its subject marked `[aiqso alert]`); with a `template`
 * (e.g. `usage-summary`) a report, sent and recorded under that name.
 */
export interface AlertPayload {
  subject: string;
  text: string;
  template?: string;
  attachments?: MailAttachment[];
  [detail: string]: unknown;
}

/** The payload's attachments, each checked to be a named text file. */
function attachments(item: OutboxItem): MailAttachment[] | undefined {
  const list = item.payload.attachments;
  if (list === undefined) return undefined;
  const ok = (a: unknown): a is MailAttachment =>
    typeof a === 'object' &&
    a !== null &&
    ['filename', 'contentType', 'content'].every(
      (k) => typeof (a as Record<string, unknown>)[k] === 'string',
    );
  if (!Array.isArray(list) || !list.every(ok))
    throw new DomainError(
      'validation_failed',
      `outbox item ${item.key}: payload.attachments must be a list of { filename, contentType, content }`,
    );
  return list;
}

function field(item: OutboxItem, name: string): string {
  const value = item.payload[name];
  if (typeof value !== 'string' || value === '')
    throw new DomainError(
      'validation_failed',
      `outbox item ${item.key}: payload.${name} must be a non-empty string`,
    );
  return value;
}

async function record(
  trx: Transaction<DB>,
  item: OutboxItem,
  sent: { recipient: string; template: string; subject: string; tenantId: string | null },
  transport: string,
  messageId: string,
): Promise<void> {
  await trx
    .insertInto('emails')
    .values({
      id: newId('email'),
      outbox_key: item.key,
      tenant_id: sent.tenantId,
      recipient: sent.recipient,
      template: sent.template,
      subject: sent.subject,
      transport,
      message_id: messageId,
    })
    .onConflict((oc) => oc.column('outbox_key').doNothing())
    .execute();
}

/** A recipient that is exactly one mailbox; whatever else the text says never reaches a header. */
function recipient(item: OutboxItem, address: string): MailAddress {
  // Names without a dot are fine here (admin@localhost): signup decides which domains customers may use.
  const problem = mailboxProblem(address, { dotlessDomain: true });
  if (problem) throw new DomainError('validation_failed', `outbox item ${item.key}: recipient ${problem}`);
  return { address };
}

/** Sends `email` items through the mail port and records each in `emails`. */
export function emailHandler(mailer: Mailer, from: MailAddress): OutboxHandler {
  return async (item, trx) => {
    const to = field(item, 'to');
    const mailbox = recipient(item, to);
    const subject = field(item, 'subject');
    const text = field(item, 'text');
    const html = typeof item.payload.html === 'string' ? item.payload.html : undefined;
    const template = typeof item.payload.template === 'string' ? item.payload.template : 'message';
    const tenantId = typeof item.payload.tenantId === 'string' ? item.payload.tenantId : null;
    const { messageId } = await mailer.send({
      key: item.key,
      from,
      to: [mailbox],
      subject,
      text,
      html,
      attachments: attachments(item),
    });
    await record(trx, item, { recipient: to, template, subject, tenantId }, mailer.transport, messageId);
    if (item.payload.scrubAfterSend === true) {
      await trx
        .updateTable('outbox')
        .set({
          payload: sql`payload || jsonb_build_object('text', '[sent; its single-use link is not kept]')`,
        })
        .where('key', '=', item.key)
        .execute();
    }
  };
}

/**
 * Sends `alert` items to the platform admins (users with role platform_admin,
 * else `fallback`), resolved at delivery time; to `override` alone when it is
 * set (AIQSO_ALERT_EMAIL).
 */
export function alertHandler(
  mailer: Mailer,
  from: MailAddress,
  fallback?: string,
  override?: string,
): OutboxHandler {
  return async (item, trx) => {
    const template = typeof item.payload.template === 'string' ? item.payload.template : undefined;
    const subject = template ? field(item, 'subject') : `[aiqso alert] ${field(item, 'subject')}`;
    const text = field(item, 'text');
    const admins = override
      ? [{ email: override }]
      : await trx.selectFrom('users').select('email').where('role', '=', 'platform_admin').execute();
    const to = admins.map((a) => a.email);
    if (to.length === 0 && fallback) to.push(fallback);
    if (to.length === 0) throw new DomainError('unavailable', 'no platform admin to send the alert to');
    const mailboxes = to.map((address) => recipient(item, address));
    const { messageId } = await mailer.send({
      key: item.key,
      from,
      to: mailboxes,
      subject,
      text,
      attachments: attachments(item),
    });
    await record(
      trx,
      item,
      { recipient: to.join(', '), template: template ?? 'alert', subject, tenantId: null },
      mailer.transport,
      messageId,
    );
  };
}
