import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forgetVisitorMail } from '../src/identity/account-recovery.ts';
import { filesMailer, mailFileName } from '../src/mail/files.ts';
import { emailHandler } from '../src/orchestrator/mail-handlers.ts';
import { countRows } from './support/db.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

/**
 * Getting back in by e-mail, through the API and the mail outbox as the
 * worker delivers it (files transport): a password reset link that works
 * once, expires, is stored hashed and changes only its own user's password,
 * ending their sessions; the same answer for an address without an account;
 * "find my workspace"; the limits per client and per recipient; and the
 * opt-in to product e-mails, recorded and shown in the tenant's audit.
 */
let h: Harness;
let mailDir: string;
const NEW_PASSWORD = 'a brand new passphrase 2026';

beforeAll(async () => {
  h = await createHarness({ recoveryLimits: { perIp: 10, perAddress: 3 } });
  mailDir = path.join(h.dataDir, 'mail');
});
afterAll(() => h?.close());

let ipCounter = 1;
/** Each test's requests from an address of its own, so the per-client limit is not shared. */
const freshIp = () => `10.20.0.${ipCounter++}`;

const post = (url: string, payload: object, ip = '10.99.0.1') =>
  h.api.inject({ method: 'POST', url, payload, remoteAddress: ip });

/** Deliver the pending mail in the outbox as the worker does, into the files transport. */
async function deliver(): Promise<void> {
  const send = emailHandler(filesMailer(mailDir), { address: 'noreply@aiqso.test' });
  const rows = await h.db.db
    .selectFrom('outbox')
    .selectAll()
    .where('kind', '=', 'email')
    .where('status', '=', 'pending')
    .execute();
  for (const row of rows) {
    await h.db.db.transaction().execute(async (trx) => {
      await send({ key: row.key, kind: row.kind, payload: row.payload }, trx);
      await trx.updateTable('outbox').set({ status: 'delivered' }).where('id', '=', row.id).execute();
    });
  }
}

/** The mails delivered to `to`, oldest first, as text (quoted-printable soft breaks joined). */
async function mailsTo(to: string): Promise<string[]> {
  await deliver();
  const rows = await h.db.db
    .selectFrom('emails')
    .select('outbox_key')
    .where('recipient', '=', to)
    .orderBy('id')
    .execute();
  return Promise.all(
    rows.map(async (r) =>
      (await readFile(path.join(mailDir, mailFileName(r.outbox_key)), 'utf8'))
        .replace(/=\r?\n/g, '')
        .replace(/=3D/g, '='),
    ),
  );
}

const tokenIn = (mail: string) => /\/password-reset\/new\?token=([A-Za-z0-9_-]+)/.exec(mail)?.[1];

async function resetLink(email: string): Promise<string> {
  const before = (await mailsTo(email)).length;
  const res = await post('/api/v1/auth/password-reset', { email }, freshIp());
  expect(res.statusCode, res.body).toBe(202);
  const mails = await mailsTo(email);
  expect(mails.length).toBe(before + 1);
  const token = tokenIn(mails[mails.length - 1]!);
  expect(token).toBeDefined();
  return token!;
}

async function canLogin(email: string, password: string): Promise<boolean> {
  const res = await post('/api/v1/auth/login', { email, password }, '10.98.0.1');
  return res.statusCode === 200;
}

describe('password reset', () => {
  it('mails a single-use link, stored hashed; the new password works, the old one and every session end', async () => {
    const email = h.a.member.email;
    const session = await h.login(email);
    const token = await resetLink(email);
    // Stored as its hash only; the outbox no longer holds the link once the mail is sent.
    const stored = await h.db.pool.query<{ token_hash: string }>(
      'SELECT r.token_hash FROM password_resets r JOIN users u ON u.id = r.user_id WHERE u.email = $1',
      [email],
    );
    expect(stored.rows.length).toBe(1);
    expect(stored.rows[0]!.token_hash).not.toBe(token);
    expect(
      await countRows(h.db, 'SELECT 1 FROM outbox WHERE position($1 IN payload::text) > 0', [token]),
    ).toBe(0);

    const res = await post('/api/v1/auth/password-reset/confirm', { token, newPassword: NEW_PASSWORD });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<{ sessionsEnded: number }>().sessionsEnded).toBeGreaterThanOrEqual(2);
    const me = await h.api.inject({ url: '/api/v1/auth/me', headers: h.bearer(session.accessToken) });
    expect(me.statusCode).toBe(401);
    const refreshed = await post('/api/v1/auth/refresh', { refreshToken: session.refreshToken });
    expect(refreshed.statusCode).toBe(401);
    expect(await canLogin(email, PASSWORD)).toBe(false);
    expect(await canLogin(email, NEW_PASSWORD)).toBe(true);

    // Audited in the user's tenant, with the user as actor.
    const audit = await h.db.pool.query<{ actor_id: string; tenant_id: string; result: string }>(
      "SELECT actor_id, tenant_id, result FROM audit_log WHERE action = 'auth.password.reset' ORDER BY id DESC LIMIT 1",
    );
    expect(audit.rows[0]).toEqual({ actor_id: h.a.member.id, tenant_id: h.a.id, result: 'success' });

    // Used once: the same link again is refused, naming the field.
    const again = await post('/api/v1/auth/password-reset/confirm', {
      token,
      newPassword: 'yet another passphrase 31',
    });
    expect(again.statusCode).toBe(400);
    expect(again.json<{ error: { message: string } }>().error.message).toMatch(
      /^token: the link is invalid, expired or already used/,
    );
    expect(await canLogin(email, NEW_PASSWORD)).toBe(true);
  });

  it('refuses an expired link', async () => {
    const email = h.b.member.email;
    const token = await resetLink(email);
    await h.db.pool.query(
      "UPDATE password_resets SET expires_at = now() - interval '1 second' WHERE user_id = $1",
      [h.b.member.id],
    );
    const res = await post('/api/v1/auth/password-reset/confirm', { token, newPassword: NEW_PASSWORD });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { message: string } }>().error.message).toMatch(/^token: /);
    expect(await canLogin(email, PASSWORD)).toBe(true);
    const page = await h.api.inject({
      url: `/password-reset/new?token=${token}`,
      headers: { accept: 'text/html' },
    });
    expect(page.statusCode).toBe(410);
    expect(page.body).toContain('This link no longer works');
  });

  it("changes only the link's own user: another user's link, or a body naming someone else, cannot", async () => {
    const token = await resetLink(h.b.owner.email);
    // The link is B's owner's; a body naming A's owner changes nothing of A's.
    const res = await post('/api/v1/auth/password-reset/confirm', {
      token,
      newPassword: NEW_PASSWORD,
      email: h.a.owner.email,
      userId: h.a.owner.id,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(await canLogin(h.a.owner.email, PASSWORD)).toBe(true);
    expect(await canLogin(h.a.owner.email, NEW_PASSWORD)).toBe(false);
    expect(await canLogin(h.b.owner.email, NEW_PASSWORD)).toBe(true);
    // A made-up token, or one of another shape, is the same refusal.
    for (const forged of ['x'.repeat(43), token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')]) {
      const bad = await post('/api/v1/auth/password-reset/confirm', {
        token: forged,
        newPassword: NEW_PASSWORD,
      });
      expect(bad.statusCode).toBe(400);
    }
  });

  it('keeps the link open after a password the rules refuse; a newer reset spends the older links', async () => {
    const email = 'owner@alpha.test';
    const first = await resetLink(email);
    const second = await resetLink(email);
    const weak = await post('/api/v1/auth/password-reset/confirm', { token: second, newPassword: 'short' });
    expect(weak.statusCode).toBe(400);
    expect(weak.json<{ error: { message: string } }>().error.message).toBe(
      'newPassword: must be at least 12 characters',
    );
    const ok = await post('/api/v1/auth/password-reset/confirm', {
      token: second,
      newPassword: NEW_PASSWORD,
    });
    expect(ok.statusCode).toBe(200);
    const old = await post('/api/v1/auth/password-reset/confirm', {
      token: first,
      newPassword: PASSWORD + 'x',
    });
    expect(old.statusCode).toBe(400);
  });

  it('answers an unknown address exactly as a known one, and mails it that no account uses it', async () => {
    const known = await post('/api/v1/auth/password-reset', { email: h.a.member.email }, freshIp());
    const unknown = await post('/api/v1/auth/password-reset', { email: 'nobody@alpha.test' }, freshIp());
    expect(unknown.statusCode).toBe(known.statusCode);
    expect(unknown.body).toBe(known.body);
    expect(Object.keys(unknown.headers).sort()).toEqual(Object.keys(known.headers).sort());
    const [mail] = await mailsTo('nobody@alpha.test');
    expect(mail).toContain('no account uses it');
    expect(tokenIn(mail!)).toBeUndefined();
    // The pages too: the same words whoever the address belongs to.
    const form = (email: string) =>
      h.api.inject({
        method: 'POST',
        url: '/password-reset',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
        payload: new URLSearchParams({ email }).toString(),
        remoteAddress: freshIp(),
      });
    const [a, b] = [await form(h.b.member.email), await form('nobody2@alpha.test')];
    expect(a.statusCode).toBe(200);
    expect(b.body).toBe(a.body);
  });

  it('refuses an address that is not one mailbox with a 400 naming the field', async () => {
    for (const email of ['not an address', '', 'a@b.test, c@d.test']) {
      const res = await post('/api/v1/auth/password-reset', { email }, freshIp());
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message).toMatch(/^email: /);
    }
    const missing = await post('/api/v1/auth/password-reset', {}, freshIp());
    expect(missing.statusCode).toBe(400);
    expect(missing.json<{ error: { message: string } }>().error.message).toMatch(/^body\.email: /);
  });

  it('limits requests per client address (429 with Retry-After) and mails per recipient (silently)', async () => {
    const ip = freshIp();
    for (let i = 0; i < 10; i++) {
      const res = await post('/api/v1/auth/password-reset', { email: `spray${i}@bravo.test` }, ip);
      expect(res.statusCode).toBe(202);
    }
    const over = await post('/api/v1/auth/password-reset', { email: 'spray10@bravo.test' }, ip);
    expect(over.statusCode).toBe(429);
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    // The page says so in words, with the same Retry-After.
    const page = await h.api.inject({
      method: 'POST',
      url: '/find-workspace',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
      payload: new URLSearchParams({ email: 'spray11@bravo.test' }).toString(),
      remoteAddress: ip,
    });
    expect(page.statusCode).toBe(429);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('Please try again later: too many requests from this address');
    expect(Number(page.headers['retry-after'])).toBeGreaterThan(0);

    // A fourth request for one address in the hour is answered the same and sends nothing.
    const target = 'many@bravo.test';
    const answers = [];
    for (let i = 0; i < 4; i++)
      answers.push(await post('/api/v1/auth/password-reset', { email: target }, freshIp()));
    expect(answers.map((a) => a.statusCode)).toEqual([202, 202, 202, 202]);
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect((await mailsTo(target)).length).toBe(3);
  });
});

describe('find my workspace', () => {
  it('mails the workspaces of an address, or that there is none, with the same answer', async () => {
    const known = await post('/api/v1/auth/find-workspace', { email: h.b.owner.email }, freshIp());
    const unknown = await post('/api/v1/auth/find-workspace', { email: 'stranger@bravo.test' }, freshIp());
    expect(known.statusCode).toBe(202);
    expect(unknown.statusCode).toBe(202);
    expect(unknown.body).toBe(known.body);
    const found = (await mailsTo(h.b.owner.email)).at(-1);
    expect(found).toContain('Subject: Your workspaces');
    expect(found).toContain('http://bravo.localhost:8080/');
    expect(found).not.toContain('alpha');
    const none = (await mailsTo('stranger@bravo.test')).at(-1);
    expect(none).toContain('Subject: No workspace uses this address');
    expect(none).not.toContain('bravo.localhost');
    const bad = await post('/api/v1/auth/find-workspace', { email: 'nope' }, freshIp());
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: { message: string } }>().error.message).toMatch(/^email: /);
  });
});

describe('mails to addresses without an account', () => {
  it('are forgotten after 30 days (record and outbox row); mails to account holders stay', async () => {
    const visitor = 'passer-by@nowhere.test';
    const owner = h.a.owner.email;
    for (const email of [visitor, owner]) {
      expect((await post('/api/v1/auth/password-reset', { email }, freshIp())).statusCode).toBe(202);
      expect((await post('/api/v1/auth/find-workspace', { email }, freshIp())).statusCode).toBe(202);
    }
    await deliver();
    const held = async () => {
      const emails = await h.db.db
        .selectFrom('emails')
        .select('recipient')
        .where('recipient', 'in', [visitor, owner])
        .execute();
      const outbox = await h.db.db
        .selectFrom('outbox')
        .select(sql<string>`payload ->> 'to'`.as('to'))
        .where(sql<string>`payload ->> 'to'`, 'in', [visitor, owner])
        .execute();
      const count = (rows: { recipient?: string; to?: string }[], who: string) =>
        rows.filter((r) => (r.recipient ?? r.to) === who).length;
      return {
        visitor: [count(emails, visitor), count(outbox, visitor)],
        owner: [count(emails, owner), count(outbox, owner)],
      };
    };
    const before = await held();
    expect(before.visitor).toEqual([2, 2]);
    // Not yet 30 days old: kept.
    await forgetVisitorMail(h.db.db);
    expect(await held()).toEqual(before);
    // 31 days on, the visitor's two mails go; the account holder's stay.
    await sql`UPDATE emails SET sent_at = sent_at - interval '31 days'
                WHERE recipient IN (${visitor}, ${owner})`.execute(h.db.db);
    await sql`UPDATE outbox SET created_at = created_at - interval '31 days'
                WHERE payload ->> 'to' IN (${visitor}, ${owner})`.execute(h.db.db);
    expect(await forgetVisitorMail(h.db.db)).toEqual({ emails: 2, outbox: 2 });
    expect(await held()).toEqual({ visitor: [0, 0], owner: before.owner });
  });
});

describe('product e-mails opt-in', () => {
  it('is off by default, changes through the API with a consent record, and shows in the tenant audit', async () => {
    const token = (await h.login(h.a.owner.email, { password: NEW_PASSWORD })).accessToken;
    const get = () => h.api.inject({ url: '/api/v1/auth/me/preferences', headers: h.bearer(token) });
    const before = await get();
    expect(before.statusCode).toBe(200);
    expect(before.json()).toMatchObject({ marketingEmails: false, marketingEmailsSince: null });

    const put = (marketingEmails: unknown) =>
      h.api.inject({
        method: 'PUT',
        url: '/api/v1/auth/me/preferences',
        headers: h.bearer(token),
        payload: { marketingEmails },
      });
    const on = await put(true);
    expect(on.statusCode, on.body).toBe(200);
    const body = on.json<{
      marketingEmails: boolean;
      marketingEmailsSince: string;
      marketingEmailsWording: string;
    }>();
    expect(body.marketingEmails).toBe(true);
    expect(Date.parse(body.marketingEmailsSince)).toBeGreaterThan(Date.now() - 60_000);
    const off = await put(false);
    expect(off.json()).toMatchObject({ marketingEmails: false });
    const records = await h.db.pool.query<{ granted: boolean; source: string; wording: string }>(
      'SELECT granted, source, wording FROM consent_records WHERE user_id = $1 ORDER BY id',
      [h.a.owner.id],
    );
    expect(records.rows.map((r) => [r.granted, r.source])).toEqual([
      [true, 'api'],
      [false, 'api'],
    ]);
    expect(records.rows[0]!.wording).toBe(body.marketingEmailsWording);

    const bad = await put('yes');
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: { message: string } }>().error.message).toMatch(/^body\.marketingEmails: /);

    // The tenant's owner reads both changes in the tenant's audit log.
    const audit = await h.api.inject({ url: '/api/v1/audit?limit=50', headers: h.bearer(token) });
    const entries = audit
      .json<{ entries: { action: string; tenantId: string; details: Record<string, unknown> }[] }>()
      .entries.filter((e) => e.action === 'auth.preferences.update' && e.details.status === 200);
    expect(entries.map((e) => [e.tenantId, e.details.marketingEmails])).toEqual([
      [h.a.id, false],
      [h.a.id, true],
    ]);
  });

  it('is recorded at signup when the unticked box is ticked, and not otherwise', async () => {
    const signup = (slug: string, extra: object) =>
      h.api.inject({
        method: 'POST',
        url: '/api/v1/signup',
        payload: { company: 'Opt Co', slug, email: `${slug}@opt.test`, password: PASSWORD, ...extra },
      });
    expect((await signup('opt-in', { marketingEmails: true })).statusCode).toBe(201);
    expect((await signup('opt-none', {})).statusCode).toBe(201);
    const rows = await h.db.pool.query<{ email: string; marketing_emails: boolean; records: string }>(
      `SELECT u.email, u.marketing_emails, (SELECT count(*) FROM consent_records c WHERE c.user_id = u.id
          AND c.source = 'signup' AND c.granted) AS records
         FROM users u WHERE u.email LIKE '%@opt.test' ORDER BY u.email`,
    );
    expect(rows.rows).toEqual([
      { email: 'opt-in@opt.test', marketing_emails: true, records: '1' },
      { email: 'opt-none@opt.test', marketing_emails: false, records: '0' },
    ]);
    // The signup's row in the tenant's audit log says which.
    const audit = await h.db.pool.query<{ slug: string; marketing: boolean }>(
      `SELECT t.slug, (a.details->>'marketingEmails')::boolean AS marketing FROM audit_log a
         JOIN tenants t ON t.id = a.tenant_id WHERE a.action = 'tenant.signup' AND t.slug LIKE 'opt-%'
         ORDER BY t.slug`,
    );
    expect(audit.rows).toEqual([
      { slug: 'opt-in', marketing: true },
      { slug: 'opt-none', marketing: false },
    ]);
  });
});
