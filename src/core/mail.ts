/**
 * The mail port. Drivers: `mail/files` (one .eml per message in
 * `<data>/mail/`), `mail/smtp`, `mail/listmonk`. Core code builds a
 * `MailMessage` and never asks which driver sends it.
 */

/**
 * One mailbox, as structured fields: drivers hand these to the mail library,
 * which writes the headers. Never a string to be parsed, so an address can
 * never turn into a list of recipients or an extra header.
 */
export interface MailAddress {
  /** Display name (the library encodes it). */
  name?: string;
  address: string;
}

/** A small file sent with a message (a CSV report, say): its whole content, as text. */
export interface MailAttachment {
  filename: string;
  contentType: string;
  content: string;
}

export interface MailMessage {
  /**
   * The outbox key the message is sent for. Drivers derive the Message-ID from
   * it, so a retry after a crash is recognisably the same message (the files
   * driver writes it once; receivers can de-duplicate SMTP redeliveries).
   */
  key: string;
  from: MailAddress;
  to: MailAddress[];
  subject: string;
  text: string;
  html?: string;
  attachments?: MailAttachment[];
}

export interface Mailer {
  readonly transport: 'files' | 'smtp' | 'listmonk';
  send(message: MailMessage): Promise<{ messageId: string }>;
}
