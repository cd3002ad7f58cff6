import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesMailer } from '../src/mail/files.ts';
import { smtpMailer } from '../src/mail/smtp.ts';
import { emailHandler } from '../src/orchestrator/mail-handlers.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp.ts';

/**
 * Mail headers are written by nodemailer from structured fields: a recipient
 * is one mailbox, never text to be parsed, so an address with a list or a
 * header smuggled in cannot add recipients (the signup that took such an
 * address made the platform a free mail relay).
 */
let sink: SmtpSink;
let testDb: TestDatabase;

beforeAll(async () => {
  sink = await startSmtpSink();
  testDb = await createTestDatabase();
});
afterAll(async () => {
  await sink.close();
  await testDb.drop();
});

const from = { name: 'AIQSO', address: 'noreply@aiqso.test' };
const item = (key: string, to: string) => ({
  key,
  kind: 'email' as const,
  payload: { to, subject: 'Welcome', text: 'Hello.', template: 'welcome' },
});

describe('mail recipients', () => {
  it.each([
    ['a list', 'owner@acme.test, spy@evil.test'],
    ['a smuggled Bcc header', 'owner@acme.test\r\nBcc: spy@evil.test'],
    ['a display name', 'Owner <owner@acme.test>'],
  ])('an email item whose recipient is %s reaches no one', async (_label, to) => {
    const mailer = smtpMailer(`smtp://127.0.0.1:${sink.port}`, 'aiqso.test');
    const send = emailHandler(mailer, from);
    const before = sink.received.length;
    await expect(
      testDb.db.transaction().execute((trx) => send(item(`welcome:${to.length}`, to), trx)),
    ).rejects.toThrow(/^outbox item welcome:\d+: recipient expected one address/);
    mailer.close();
    expect(sink.received.length).toBe(before);
    expect(sink.received.flatMap((m) => m.to)).not.toContain('spy@evil.test');
  });

  it('delivers to exactly the one mailbox of a valid item', async () => {
    const mailer = smtpMailer(`smtp://127.0.0.1:${sink.port}`, 'aiqso.test');
    await testDb.db
      .transaction()
      .execute((trx) => emailHandler(mailer, from)(item('welcome:one', 'owner@acme.test'), trx));
    mailer.close();
    const [mail] = await sink.to('owner@acme.test');
    expect(mail).toMatchObject({ from: 'noreply@aiqso.test', to: ['owner@acme.test'] });
    expect(mail!.raw).toMatch(/^From: AIQSO <noreply@aiqso\.test>\r$/m);
    expect(mail!.raw).toMatch(/^To: owner@acme\.test\r$/m);
  });

  it('encodes a display name with line breaks instead of writing them into the headers', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-mail-'));
    await filesMailer(dir).send({
      key: 'alert:name',
      from: { name: 'Ops\r\nBcc: spy@evil.test', address: 'noreply@aiqso.test' },
      to: [{ address: 'admin@aiqso.test' }],
      subject: 'Disk\r\nBcc: spy@evil.test',
      text: 'Full.',
    });
    const [file] = await readdir(dir);
    const eml = await readFile(path.join(dir, file!), 'utf8');
    expect(eml).not.toMatch(/^Bcc:/im);
    expect(eml).toMatch(/^To: admin@aiqso\.test\r$/m);
  });
});
