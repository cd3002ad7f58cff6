import { createHash } from 'node:crypto';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type { MailAddress, Mailer, MailMessage } from '../core/mail.ts';

/** File name for an outbox key: readable, safe on any filesystem, unique per key. */
export function mailFileName(key: string): string {
  const readable = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 12);
  return `${readable}-${hash}.eml`;
}

/** Message-ID derived from the outbox key, so every attempt at one message carries the same id. */
export function messageIdFor(key: string, domain: string): string {
  return `<${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${domain}>`;
}

/** Address objects for nodemailer (copies: it normalises what it is given in place). */
export const mailboxes = (list: MailAddress[]) =>
  list.map((a) => ({ name: a.name ?? '', address: a.address }));

function compose(message: MailMessage, messageId: string): Promise<Buffer> {
  const composer = new MailComposer({
    from: mailboxes([message.from])[0],
    to: mailboxes(message.to),
    subject: message.subject,
    text: message.text,
    html: message.html,
    attachments: message.attachments?.map((a) => ({ ...a })),
    messageId,
    date: new Date(),
  });
  return new Promise((resolve, reject) =>
    composer.compile().build((err, out) => (err ? reject(err) : resolve(out))),
  );
}

/**
 * The files mail driver: one RFC 5322 `.eml` per message in `dir`, named by the
 * outbox key. Written to a temporary name and renamed into place, so a reader
 * never sees half a message; a message whose file exists is not written again,
 * so a retry after a crash does not duplicate it.
 */
export function filesMailer(dir: string, options: { domain?: string } = {}): Mailer {
  const domain = options.domain ?? 'aiqso.local';
  return {
    transport: 'files',
    async send(message) {
      const messageId = messageIdFor(message.key, domain);
      const file = path.join(dir, mailFileName(message.key));
      try {
        await stat(file);
        return { messageId };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // One temporary name per key: a retry after a crash overwrites the leftover, then renames it.
      const tmp = `${file}.tmp`;
      await writeFile(tmp, await compose(message, messageId), { mode: 0o600 });
      await rename(tmp, file);
      return { messageId };
    },
  };
}
