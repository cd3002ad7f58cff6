import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listmonkMailer } from '../../src/mail/listmonk.ts';

/**
 * A stand-in for Listmonk's `POST /api/tx` that enforces its documented
 * contract: token auth, JSON body, template_id required and known, recipients
 * by email, external subscriber mode for non-subscribers.
 */
interface Sent {
  to: string[];
  subject: string;
  data: Record<string, string>;
  files?: { name: string; type: string; text: string }[];
}

let server: Server;
let base: string;
const sent: Sent[] = [];

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    void (async () => {
      const reply = (status: number, payload: object) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      if (req.method !== 'POST' || req.url !== '/api/tx') return reply(404, { message: 'not found' });
      if (req.headers.authorization !== 'token aiqso:s3cret')
        return reply(403, { message: 'invalid API credentials' });
      // JSON, or multipart with the same JSON in `data` and the attachments as `file` fields.
      const type = req.headers['content-type'] ?? '';
      let payload: Record<string, unknown>;
      let files: Sent['files'];
      if (type === 'application/json') payload = JSON.parse(await body(req)) as Record<string, unknown>;
      else if (type.startsWith('multipart/form-data; boundary=')) {
        const form = await new Request('http://listmonk/api/tx', {
          method: 'POST',
          headers: { 'content-type': type },
          body: await body(req),
        }).formData();
        const data = form.get('data');
        if (typeof data !== 'string') return reply(400, { message: 'invalid JSON in data field' });
        payload = JSON.parse(data) as Record<string, unknown>;
        files = [];
        for (const f of form.getAll('file')) {
          if (typeof f === 'string') return reply(400, { message: 'file must be a file' });
          files.push({ name: f.name, type: f.type, text: await f.text() });
        }
      } else return reply(400, { message: 'invalid JSON' });
      if (payload.template_id !== 7) return reply(400, { message: 'template not found' });
      const emails = payload.subscriber_emails as string[] | undefined;
      if (!emails?.length) return reply(400, { message: 'subscriber_email or subscriber_id required' });
      if (payload.subscriber_mode !== 'external') return reply(400, { message: 'subscriber not found' });
      sent.push({
        to: emails,
        subject: payload.subject as string,
        data: payload.data as Record<string, string>,
        ...(files ? { files } : {}),
      });
      reply(200, { data: true });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const message = {
  key: 'welcome:ten_1',
  from: { name: 'AIQSO', address: 'noreply@aiqso.test' },
  to: [{ address: 'owner@acme.test' }],
  subject: 'Welcome',
  text: 'Your workspace is ready.',
};

describe('Listmonk mail driver', () => {
  it('sends through the transactional API with the configured template', async () => {
    const mailer = listmonkMailer(`${base.replace('http://', 'http://aiqso:s3cret@')}/?template_id=7`);
    expect(await mailer.send(message)).toEqual({ messageId: 'listmonk:welcome:ten_1' });
    expect(sent.at(-1)).toEqual({
      to: ['owner@acme.test'],
      subject: 'Welcome',
      data: { subject: 'Welcome', body: 'Your workspace is ready.', key: 'welcome:ten_1' },
    });
  });

  it('reports a refusal as a dependency failure with Listmonk’s reason', async () => {
    const mailer = listmonkMailer(`${base.replace('http://', 'http://aiqso:wrong@')}/?template_id=7`);
    await expect(mailer.send(message)).rejects.toThrow(
      /Listmonk refused the message \(403\): .*invalid API credentials/,
    );
  });

  it('posts attachments as multipart form data: the JSON in `data`, each file in a `file` field', async () => {
    const mailer = listmonkMailer(`${base.replace('http://', 'http://aiqso:s3cret@')}/?template_id=7`);
    const csv = 'tenant,metric,value\r\nacme,requests,72000\r\n';
    await mailer.send({
      ...message,
      key: 'usage-report:ten_1:2031-11',
      attachments: [{ filename: 'usage-acme-2031-11.csv', contentType: 'text/csv', content: csv }],
    });
    expect(sent.at(-1)).toMatchObject({
      to: ['owner@acme.test'],
      data: { key: 'usage-report:ten_1:2031-11' },
      files: [{ name: 'usage-acme-2031-11.csv', type: 'text/csv', text: csv }],
    });
  });

  it('needs credentials in LISTMONK_URL', () => {
    expect(() => listmonkMailer(base)).toThrow(/must carry the API user and token/);
  });
});
