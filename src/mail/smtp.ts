import nodemailer from 'nodemailer';
import type { Mailer, MailMessage } from '../core/mail.ts';
import { DomainError } from '../core/errors.ts';
import { mailboxes, messageIdFor } from './files.ts';

/**
 * SMTP (SMTP_URL, e.g. `smtps://user:pass@mail.example:465`) through
 * nodemailer. Delivery is at-least-once: a crash between the server's accept
 * and the outbox's "delivered" mark resends, with the same Message-ID (derived
 * from the outbox key) so receivers and support can tell it is one message.
 */
export function smtpMailer(smtpUrl: string, domain: string): Mailer & { close(): void } {
  const transport = nodemailer.createTransport(smtpUrl);
  return {
    transport: 'smtp',
    async send(message: MailMessage) {
      const messageId = messageIdFor(message.key, domain);
      try {
        await transport.sendMail({
          from: mailboxes([message.from])[0],
          to: mailboxes(message.to),
          subject: message.subject,
          text: message.text,
          html: message.html,
          attachments: message.attachments?.map((a) => ({ ...a })),
          messageId,
          headers: { 'X-AIQSO-Key': message.key },
        });
      } catch (err) {
        throw new DomainError(
          'dependency_failed',
          `SMTP server refused the message: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      return { messageId };
    },
    close() {
      transport.close();
    },
  };
}
