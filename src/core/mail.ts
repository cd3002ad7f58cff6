/**
 * The mail port. Drivers: `mail/files` (one .eml per message in
 * `<data>/mail/`); SMTP and Listmonk come later. Core code builds a
 * `MailMessage` and never asks which driver sends it.
 */
export interface MailMessage {
  /**
   * The outbox key the message is sent for. Drivers derive the Message-ID from
   * it, so a retry after a crash is recognisably the same message (the files
   * driver writes it once; receivers can de-duplicate SMTP redeliveries).
   */
  key: string;
  from: string;
  to: string[];
  subject: string;
  text: string;
  html?: string;
}

export interface Mailer {
  readonly transport: 'files' | 'smtp' | 'listmonk';
  send(message: MailMessage): Promise<{ messageId: string }>;
}
