import { FormData, request } from 'undici';
import type { MailAttachment, Mailer, MailMessage } from '../core/mail.ts';
import { DomainError } from '../core/errors.ts';

/**
 * Listmonk's transactional API (`POST /api/tx`) as a mail driver. LISTMONK_URL
 * carries the API user and token (`https://api-user:token@listmonk.example`) and
 * optionally `?template_id=N`, a transactional template that renders
 * `{{ .Tx.Data.subject }}` and `{{ .Tx.Data.body }}` (default template 1).
 * Recipients need not be subscribers (`subscriber_mode: external`). A message
 * with attachments is posted as multipart form data: the same JSON as the
 * `data` field and one `file` field per attachment, as Listmonk takes them.
 */
export function listmonkMailer(listmonkUrl: string): Mailer {
  const url = new URL(listmonkUrl);
  const user = decodeURIComponent(url.username);
  const token = decodeURIComponent(url.password);
  const templateId = Number(url.searchParams.get('template_id') ?? 1);
  if (!user || !token)
    throw new Error('LISTMONK_URL must carry the API user and token: https://user:token@host');
  const endpoint = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}/api/tx`;
  return {
    transport: 'listmonk',
    async send(message: MailMessage) {
      const from = message.from.name
        ? `${message.from.name} <${message.from.address}>`
        : message.from.address;
      for (const to of message.to) {
        const payload = JSON.stringify({
          subscriber_emails: [to.address],
          subscriber_mode: 'external',
          template_id: templateId,
          from_email: from,
          subject: message.subject,
          data: { subject: message.subject, body: message.text, key: message.key },
          headers: [{ 'X-AIQSO-Key': message.key }],
          content_type: 'plain',
        });
        const res = await request(endpoint, {
          method: 'POST',
          headers: {
            authorization: `token ${user}:${token}`,
            ...(message.attachments?.length ? {} : { 'content-type': 'application/json' }),
          },
          body: message.attachments?.length ? withFiles(payload, message.attachments) : payload,
          headersTimeout: 15_000,
          bodyTimeout: 15_000,
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) {
          throw new DomainError(
            'dependency_failed',
            `Listmonk refused the message (${res.statusCode}): ${text.slice(0, 200)}`,
          );
        }
      }
      return { messageId: `listmonk:${message.key}` };
    },
  };
}

function withFiles(payload: string, attachments: MailAttachment[]): FormData {
  const form = new FormData();
  form.append('data', payload);
  for (const a of attachments)
    form.append('file', new Blob([a.content], { type: a.contentType }), a.filename);
  return form;
}
