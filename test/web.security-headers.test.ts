import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser as Chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiUrl, Browser, startDashboard, type RunningDashboard } from './support/dashboard.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { rawGet } from './support/upstreams.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';
import { missingPart } from './support/strict.ts';

/**
 * Every HTML page the platform serves (portal, signup, welcome, local
 * checkout, API reference) and the dashboard serves carries a CSP without
 * inline script, no framing, nosniff and no Referer; the welcome page never
 * links off-site whatever its query says. In Chromium: the pages render with
 * their hashed stylesheet (and Swagger UI with its scripts) without a CSP
 * violation, and another site cannot frame the dashboard's Unsubscribe.
 */
let h: Harness;
let base: string;
let dash: RunningDashboard;
let checkoutPath: string;
let edge: TestEdge;

beforeAll(async () => {
  h = await createHarness();
  edge = await startTestEdge(h.db);
  base = await apiUrl(h);
  dash = await startDashboard(h, h.a, 'Alpha Widgets');
  const signup = await h.api.inject({
    method: 'POST',
    url: '/api/v1/signup',
    payload: { company: 'Headers Co', slug: 'headersco', email: 'owner@headers.test', password: PASSWORD },
  });
  checkoutPath = new URL(signup.json<{ checkoutUrl: string }>().checkoutUrl).pathname;
});
afterAll(async () => {
  await edge?.close();
  await dash?.stop();
  await h?.close();
});

const PAGES = () =>
  [
    ['GET', '/'],
    ['GET', '/signup'],
    ['GET', '/signup/welcome?tenant=acme'],
    ['GET', checkoutPath],
  ] as const;

describe('platform pages', () => {
  it('carry the CSP, no framing, nosniff and no Referer on every HTML page', async () => {
    const answers = [
      ...(await Promise.all(PAGES().map(([method, url]) => h.api.inject({ method, url })))),
      await h.api.inject({
        method: 'POST',
        url: '/signup',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'company=X&slug=www&email=a%40b.test&password=correct+horse+battery+staple',
      }),
    ];
    for (const res of answers) {
      const label = `${res.statusCode} ${res.body.slice(0, 60)}`;
      expect(res.headers['content-type'], label).toMatch(/^text\/html/);
      expect(res.headers, label).toMatchObject({
        'x-frame-options': 'DENY',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      const csp = String(res.headers['content-security-policy']);
      expect(csp, label).toContain("default-src 'none'");
      expect(csp, label).toContain("frame-ancestors 'none'");
      expect(csp, label).not.toContain('unsafe-inline');
      expect(res.body, label).not.toMatch(/<script|style="/);
    }
    const docs = await h.api.inject({ url: '/api/docs/' });
    const csp = String(docs.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(docs.headers['x-frame-options']).toBe('DENY');
    // JSON answers are not sniffed either.
    expect((await h.api.inject({ url: '/healthz' })).headers['x-content-type-options']).toBe('nosniff');
  });

  it.each([
    'evil.example%2F%23',
    'evil.example/',
    '%2F%2Fevil.example',
    'acme.evil.example',
    'a@evil.example',
    'ACME',
  ])('links nowhere off-site from the welcome page (tenant=%s)', async (tenant) => {
    const res = await h.api.inject({ url: `/signup/welcome?tenant=${tenant}` });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain('evil');
    // Only the page's own links (its stylesheet, the skip link, the front page): none leaves the site.
    const hrefs = [...res.body.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!);
    expect(
      hrefs.every((href) => (href.startsWith('/') && !href.startsWith('//')) || href.startsWith('#')),
    ).toBe(true);
    expect(res.body).toContain('We are preparing your workspace.');
  });

  it("carry them on the edge's own pages too (unknown workspace, no such service)", async () => {
    for (const host of ['nobody.localhost', 'localhost']) {
      const res = await rawGet(edge.port, '/', host);
      expect(res.headers['x-frame-options'], host).toBe('DENY');
      expect(res.headers['x-content-type-options'], host).toBe('nosniff');
      if (host === 'localhost') continue; // the portal's front page, above
      expect(res.body).toContain('no workspace at this address');
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      const style = /<style>([\s\S]*?)<\/style>/.exec(res.body)![1]!;
      expect(csp).toContain(`'sha256-${createHash('sha256').update(style).digest('base64')}'`);
    }
  });

  it('links to the workspace for a real slug', async () => {
    const res = await h.api.inject({ url: '/signup/welcome?tenant=acme' });
    expect(res.body).toContain(`<a href="http://acme.localhost:8080/">`);
  });
});

const chromiumPath = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const skipBrowser = missingPart('Chromium', chromiumPath !== undefined, 'apt-get install chromium');

describe.skipIf(skipBrowser)('in Chromium', () => {
  let browser: Chromium;
  let attacker: Server;
  let attackerUrl: string;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
    // Another site (another origin: another port) that frames whatever `?src=` names.
    attacker = createServer((req, res) => {
      const src = new URL(req.url ?? '/', 'http://x').searchParams.get('src') ?? '';
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        `<!doctype html><p>Win a prize!</p><iframe id="f" src="${src}" width="800" height="600"></iframe>`,
      );
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', () => r()));
    // A page on another tenant's subdomain, say.
    attackerUrl = `http://evil.localhost:${(attacker.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => attacker?.close(r));
  });

  /** Open `url`; returns the page and the CSP violations its console reported. */
  async function open(url: string, cookies: { name: string; value: string; url: string }[] = []) {
    const context = await browser.newContext();
    await context.addCookies(cookies);
    const page = await context.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(url);
    return { page, context, violations };
  }

  it('renders the portal pages and the dashboard with their styles and no CSP violation', async () => {
    const dashboard = `http://127.0.0.1:${dash.port}/`;
    for (const url of [...PAGES().map(([, path]) => `${base}${path}`), dashboard]) {
      const { page, context, violations } = await open(url);
      // Pages in the design system (src/web/design.ts) set the width on <main> (72rem, 28rem when
      // narrow), the others on <body>: a width that is not the browser's default shows the stylesheet
      // was applied under the CSP.
      const maxWidth = await page.evaluate<string>(
        "getComputedStyle(document.querySelector('main') || document.body).maxWidth",
      );
      expect(maxWidth, url).toMatch(/^(448|640|768|1152)px$/);
      expect(violations, url).toEqual([]);
      await context.close();
    }
  });

  it('runs the API reference (Swagger UI) under its CSP', async () => {
    const { page, context, violations } = await open(`${base}/api/docs/`);
    await page.waitForSelector('.swagger-ui .info .title', { timeout: 20_000 });
    expect(violations).toEqual([]);
    await context.close();
  });

  it("does not let another site frame the dashboard's Unsubscribe or the checkout's Pay", async () => {
    // A signed-in owner of A visits a page on another subdomain, which frames A's dashboard and the
    // portal's checkout: neither renders there at all (without the headers, both did).
    const owner = new Browser(dash.port, '198.51.100.70');
    expect((await owner.signIn(h.a.owner.email, PASSWORD)).status).toBe(303);
    const cookies = [...owner.jar].map(([name, value]) => ({
      name,
      value,
      url: `http://alpha.localhost:${dash.port}/`,
    }));
    const portal = base.replace('127.0.0.1', 'localhost');
    for (const target of [`http://alpha.localhost:${dash.port}/`, `${portal}${checkoutPath}`]) {
      const { page, context } = await open(`${attackerUrl}?src=${encodeURIComponent(target)}`, cookies);
      await page.waitForLoadState('load');
      const frame = page.frames().find((f) => f !== page.mainFrame());
      const framed = await frame
        ?.evaluate<string>('document.body ? document.body.innerText : ""')
        .catch(() => '');
      expect(framed ?? '', target).not.toMatch(/Unsubscribe|Sign out|Pay|Checkout|Alpha Widgets/);
      await context.close();
    }
  });
});
