import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody } from '../src/api/errors.ts';
import type { ApiServer } from '../src/api/server.ts';
import type { Runner } from 'graphile-worker';
import { testApi } from './support/api.ts';
import { startBillingWorker } from './support/billing-worker.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';

let testDb: TestDatabase;
let api: ApiServer;
let worker: Runner;

beforeAll(async () => {
  testDb = await createTestDatabase();
  const built = await testApi(testDb);
  api = built.api;
  worker = await startBillingWorker(built.config, testDb);
});
afterAll(async () => {
  await worker.stop();
  await api.close();
  await testDb.drop();
});

const PASSWORD = 'correct horse battery staple';
const body = (over: Record<string, unknown> = {}) => ({
  company: 'Acme Ltd',
  slug: 'acme',
  email: 'Owner@Acme.test',
  password: PASSWORD,
  ...over,
});
const post = (payload: object) => api.inject({ method: 'POST', url: '/api/v1/signup', payload });
const errorOf = (res: { json: <T>() => T }) => res.json<ErrorBody>().error;

describe('POST /api/v1/signup', () => {
  it('creates a pending tenant and its owner and returns a checkout URL', async () => {
    const res = await post(body());
    expect(res.statusCode).toBe(201);
    const out = res.json<{ tenant: { id: string; slug: string; status: string }; checkoutUrl: string }>();
    expect(out.tenant).toMatchObject({ slug: 'acme', status: 'pending_payment' });
    expect(out.checkoutUrl).toMatch(/^http:\/\/localhost:8080\/billing\/checkout\/cs_local[0-9a-z]{26}$/);
    const owner = await testDb.db
      .selectFrom('users')
      .select(['email', 'role', 'tenant_id'])
      .where('tenant_id', '=', out.tenant.id)
      .execute();
    expect(owner).toEqual([{ email: 'owner@acme.test', role: 'tenant_owner', tenant_id: out.tenant.id }]);
    const page = await api.inject({ url: new URL(out.checkoutUrl).pathname });
    expect(page.body).toContain('owner@acme.test');
    expect(
      await countRows(testDb, "SELECT 1 FROM audit_log WHERE action = 'tenant.signup' AND tenant_id = $1", [
        out.tenant.id,
      ]),
    ).toBe(1);
  });

  it('gives the same tenant back to a repeated signup that has not paid yet', async () => {
    const first = await post(body({ slug: 'twice', email: 'twice@acme.test' }));
    const again = await post(body({ slug: 'twice', email: 'twice@acme.test' }));
    expect(again.statusCode).toBe(201);
    expect(again.json<{ tenant: { id: string } }>().tenant.id).toBe(
      first.json<{ tenant: { id: string } }>().tenant.id,
    );
    expect(await countRows(testDb, "SELECT 1 FROM tenants WHERE slug = 'twice'")).toBe(1);
  });

  it.each([
    ['a reserved slug', { slug: 'admin' }, 400, 'slug: is reserved'],
    [
      'a slug that is not a DNS label',
      { slug: 'Acme_Corp' },
      400,
      'slug: may contain only lowercase letters',
    ],
    [
      'a short password',
      { slug: 'short-pw', password: 'short' },
      400,
      'password must be at least 12 characters',
    ],
    ['a common password', { slug: 'common-pw', password: 'password1234' }, 400, 'password is too common'],
    [
      'an unknown plan',
      { slug: 'planless', plan: 'platinum' },
      400,
      'plan: expected one of starter, business',
    ],
    ['an empty company', { slug: 'nameless', company: '  ' }, 400, 'company: is required'],
    ['a slug someone has', { email: 'other@acme.test' }, 409, 'slug: is already taken'],
    ['an email that has an account', { slug: 'acme-two' }, 409, 'email: already has an account'],
  ])('refuses %s, naming the field', async (_label, over, status, message) => {
    const res = await post(body(over));
    expect(res.statusCode).toBe(status);
    expect(errorOf(res).message).toContain(message);
  });

  it.each([
    ['a list of addresses', { email: 'owner@acme.test, spy@evil.test' }, 'email: expected one address'],
    [
      'an address with a Bcc header after it',
      { email: 'owner@acme.test\r\nBcc: spy@evil.test' },
      'email: expected one address',
    ],
    ['an address with a display name', { email: 'Owner <owner@acme.test>' }, 'email: expected one address'],
    ['an address with a quoted part', { email: '"owner x"@acme.test' }, 'email: expected one address'],
    ['no domain', { email: 'owner@' }, 'email: expected one address'],
    ['a domain that is not a name', { email: 'owner@acme..test' }, 'email: has no valid domain'],
    ['a company name of two lines', { company: 'Acme\r\nBcc: spy@evil.test' }, 'company: must be one line'],
  ])('refuses %s with a 400 naming the field, and stores nothing', async (_label, over, message) => {
    const tenants = await countRows(testDb, 'SELECT 1 FROM tenants');
    const res = await post(body({ slug: 'bad-address', ...over }));
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toContain(message);
    expect(await countRows(testDb, 'SELECT 1 FROM tenants')).toBe(tenants);
    expect(await countRows(testDb, "SELECT 1 FROM users WHERE email LIKE '%evil%'")).toBe(0);
  });

  it('accepts an address at localhost only because this platform is on localhost', async () => {
    const res = await post(body({ slug: 'local-owner', email: 'owner@localhost' }));
    expect(res.statusCode).toBe(201);
  });

  it('refuses wrong types and missing fields with 400 naming the field', async () => {
    const res = await post({ company: 'X', slug: 'typed', email: 'a@b.test', password: 12 });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toMatch(/^body\.password:/);
  });

  it('moves to provisioning once the local checkout is paid', async () => {
    const res = await post(body({ slug: 'payer', email: 'payer@acme.test' }));
    const { tenant, checkoutUrl } = res.json<{ tenant: { id: string }; checkoutUrl: string }>();
    const paid = await api.inject({ method: 'POST', url: `${new URL(checkoutUrl).pathname}/pay` });
    expect(paid.headers.location).toBe('http://localhost:8080/signup/welcome?tenant=payer');
    for (
      let i = 0;
      i < 100 && (await countRows(testDb, 'SELECT 1 FROM inbox WHERE processed_at IS NULL')) > 0;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 25));
    }
    const row = await testDb.db
      .selectFrom('tenants')
      .select('status')
      .where('id', '=', tenant.id)
      .executeTakeFirstOrThrow();
    expect(row.status).toBe('provisioning');
  });

  it('thanks the customer on a page that follows the provisioning until the workspace is ready', async () => {
    const res = await post(body({ slug: 'follower', email: 'follower@acme.test' }));
    const { tenant } = res.json<{ tenant: { id: string } }>();
    // `follow=0`: the page as it is now, then its offer to follow again (a browser's is followed live).
    const welcome = () => api.inject({ url: '/signup/welcome?tenant=follower&follow=0' });
    const waiting = await welcome();
    expect(waiting.body).toContain('Payment <span class="badge warn">waiting for confirmation</span>');
    expect(waiting.body).toContain('<a href="/signup/welcome?tenant=follower">Follow it again</a>');
    expect(waiting.body).not.toContain('http-equiv="refresh"');
    await testDb.db
      .updateTable('tenants')
      .set({ status: 'provisioning' })
      .where('id', '=', tenant.id)
      .execute();
    await testDb.db
      .insertInto('resources')
      .values({
        kind: 'tenant',
        id: tenant.id,
        tenant_id: tenant.id,
        spec: JSON.stringify({ slug: 'follower' }),
        steps: JSON.stringify([
          { name: 'placement', state: 'done', attempts: 1 },
          { name: 'dashboard container', state: 'running', attempts: 1 },
        ]),
        updated_at: new Date(),
      })
      .execute();
    const running = await welcome();
    expect(running.body).toContain(
      '<li class="done">placement <span class="badge ok">done</span></li><li class="running">dashboard container <span class="badge info">running</span></li>',
    );
    expect(running.body).toContain('<li class="done">Payment <span class="badge ok">done</span></li>');
    expect(running.body).not.toContain('http-equiv="refresh"');
    await testDb.db.updateTable('tenants').set({ status: 'active' }).where('id', '=', tenant.id).execute();
    const ready = await welcome();
    expect(ready.body).toContain('Your workspace is ready');
    expect(ready.body).toContain('<a href="http://follower.localhost:8080/">');
    // It takes the browser there by itself, and reloads no more.
    expect(ready.body).toContain(
      '<meta http-equiv="refresh" content="0; url=http://follower.localhost:8080/">',
    );
    expect(ready.body).not.toContain('content="5"');
  });
});

describe('the signup page', () => {
  it('is linked from the front page at the base domain, with the API reference', async () => {
    const front = await api.inject({ url: '/' });
    expect(front.statusCode).toBe(200);
    expect(front.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(front.body).toContain('<a href="/signup">');
    expect(front.body).toContain('<a href="/api/docs">');
    expect(front.body).toContain('your-name.localhost');
  });

  it('posts the form and redirects to checkout', async () => {
    const page = await api.inject({ url: '/signup' });
    expect(page.body).toContain('<form method="post" action="/signup">');
    const res = await api.inject({
      method: 'POST',
      url: '/signup',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({
        company: 'Form Co',
        slug: 'form-co',
        email: 'form@co.test',
        password: PASSWORD,
      }).toString(),
    });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toMatch(/\/billing\/checkout\/cs_local/);
  });

  it('shows every problem next to its field at once and keeps what was typed (but not the password)', async () => {
    const res = await api.inject({
      method: 'POST',
      url: '/signup',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({
        company: 'Form <Co>',
        slug: 'www',
        email: 'not an address',
        password: 'short pw',
      }).toString(),
    });
    expect(res.statusCode).toBe(400);
    expect(res.body).toContain('<strong>Please correct these 3 fields:</strong>');
    expect(res.body).toContain('<div class="field-error" id="f-slug-error">is reserved</div>');
    expect(res.body).toContain(
      '<div class="field-error" id="f-email-error">expected one address such as name@example.com</div>',
    );
    expect(res.body).toContain(
      '<div class="field-error" id="f-password-error">must be at least 12 characters</div>',
    );
    expect(res.body).not.toContain('id="f-company-error"');
    expect(res.body).toContain('value="Form &lt;Co&gt;"');
    expect(res.body).toContain('value="not an address"');
    expect(res.body).not.toContain('short pw');

    // A problem only the database knows (a taken address) lands next to its field too.
    const taken = await api.inject({
      method: 'POST',
      url: '/signup',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({
        company: 'Other Co',
        slug: 'form-co',
        email: 'other@co.test',
        password: PASSWORD,
      }).toString(),
    });
    expect(taken.statusCode).toBe(409);
    expect(taken.body).toContain('<div class="field-error" id="f-slug-error">is already taken</div>');
    expect(taken.body).toContain('value="other@co.test"');
  });
});
