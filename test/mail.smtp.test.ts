import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import { createMailer } from '../src/mail/index.ts';
import { smtpMailer } from '../src/mail/smtp.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp.ts';

let sink: SmtpSink;
let port: number;

beforeAll(async () => {
  sink = await startSmtpSink({ refuse: (address) => address.endsWith('@refused.test') });
  port = sink.port;
});
afterAll(() => sink.close());

const message = {
  key: 'welcome:ten_01jdsmtp',
  from: { name: 'AIQSO', address: 'noreply@aiqso.test' },
  to: [{ address: 'owner@acme.test' }],
  subject: 'Welcome to Acme',
  text: 'Your workspace is ready.',
};

describe('SMTP mail driver, against a real SMTP server', () => {
  it('delivers the message with a Message-ID derived from the outbox key', async () => {
    const mailer = smtpMailer(`smtp://127.0.0.1:${port}`, 'aiqso.test');
    const first = await mailer.send(message);
    const again = await mailer.send(message);
    mailer.close();
    expect(again.messageId).toBe(first.messageId);
    const mine = sink.received.filter((r) => r.raw.includes('Subject: Welcome to Acme'));
    expect(mine).toHaveLength(2);
    expect(mine[0]).toMatchObject({ from: 'noreply@aiqso.test', to: ['owner@acme.test'] });
    expect(mine[0]!.raw).toContain(`Message-ID: ${first.messageId}`);
    expect(mine[0]!.raw).toMatch(/^X-Aiqso-Key: welcome:ten_01jdsmtp\r$/im);
    expect(mine[0]!.raw).toContain('Your workspace is ready.');
  });

  it('reports a refused recipient as a dependency failure', async () => {
    const mailer = smtpMailer(`smtp://127.0.0.1:${port}`, 'aiqso.test');
    await expect(mailer.send({ ...message, to: [{ address: 'nobody@refused.test' }] })).rejects.toThrow(
      /SMTP server refused the message: .*mailbox unavailable/,
    );
    mailer.close();
  });

  it('is the driver configuration picks when SMTP_URL is set; files otherwise', () => {
    expect(createMailer(loadConfig({ SMTP_URL: `smtp://127.0.0.1:${port}` })).transport).toBe('smtp');
    expect(createMailer(loadConfig({ LISTMONK_URL: 'http://u:t@127.0.0.1:9' })).transport).toBe('listmonk');
    expect(createMailer(loadConfig({})).transport).toBe('files');
  });
});
