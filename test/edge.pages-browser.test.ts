import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR_SUSPENSION, PAYMENT_SUSPENSION } from '../src/core/tenants.ts';
import { edgePages, PAGE_HEADERS, type EdgePage } from '../src/edge/pages.ts';
import { launchChromium, pageInspector, skipBrowser } from './support/browser.ts';

/**
 * Every page the edge writes itself (a workspace being prepared, held back,
 * cancelled, not there; a service refusing, failing or too slow), in Chromium
 * with the headers the edge sends (its Content-Security-Policy among them):
 * no serious or critical axe-core violation (the steps' colours on white
 * among what it checks), nothing sideways at 390 px with a long company name
 * or step, and each with a way back to the platform's front page.
 * Screenshots in test-output/edge-pages/.
 */
const OUT = path.resolve('test-output/edge-pages');
const HOME = 'http://localhost:8080/';

const p = edgePages(HOME);
const longName = 'Extraordinarily-Long-Company-Name-Without-Any-Spaces-GmbH-und-Co-KG';
const PAGES: Record<string, EdgePage> = {
  preparing: p.provisioning(longName, [
    { name: 'placement', state: 'done', attempts: 1 },
    { name: 'dashboard container', state: 'done', attempts: 1 },
    { name: 'dashboard running', state: 'failed', attempts: 2, lastError: 'boom' },
    { name: 'route', state: 'running', attempts: 1 },
    {
      name: 'health check',
      state: 'waiting',
      attempts: 1,
      waitingFor: 'capacity: no host has 128 MB of memory free for this container',
    },
  ]),
  'suspended-payment': p.suspended({
    status: 'suspended',
    statusReason: PAYMENT_SUSPENSION,
    purgeAfter: null,
  }),
  'suspended-operator': p.suspended({
    status: 'suspended',
    statusReason: OPERATOR_SUSPENSION,
    purgeAfter: null,
  }),
  cancelled: p.suspended({
    status: 'cancelled',
    statusReason: 'subscription cancelled',
    purgeAfter: new Date('2027-01-05T04:00:00Z'),
  }),
  'unknown-host': p.unknownHost(),
  'no-route': p.noRoute(),
  forbidden: p.forbidden(),
  'rate-limited': p.rateLimited(30),
  'too-large': p.tooLarge(),
  unavailable: p.unavailable(),
  'bad-gateway': p.badGateway(),
  'gateway-timeout': p.gatewayTimeout(),
  'bad-request': p.badRequest('the request target is not a valid path'),
};

let server: Server;
let base: string;
let browser: Browser;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

beforeAll(async () => {
  if (skipBrowser) return;
  // Served as the edge sends them: status, the page's own headers and the edge's.
  server = createServer((req, res) => {
    const page = PAGES[req.url!.slice(1)];
    if (!page) return void res.writeHead(404).end();
    res.writeHead(page.status, {
      'content-type': 'text/html; charset=utf-8',
      ...PAGE_HEADERS,
      ...page.headers,
    });
    res.end(page.html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

describe.skipIf(skipBrowser)("the edge's own pages in Chromium", { timeout: 120_000 }, () => {
  it('pass axe, fit 390 px and lead back to the front page', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const csp: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
    });
    for (const [name, edgePage] of Object.entries(PAGES)) {
      const res = await page.goto(`${base}/${name}`);
      expect([name, res?.status()]).toEqual([name, edgePage.status]);
      await inspect(page, name);
      const back = page.getByRole('link', { name: 'Go to the home page' });
      expect([name, await back.getAttribute('href')]).toEqual([name, HOME]);
    }
    // The stylesheet is allowed by its hash: the steps show in their colours.
    await page.goto(`${base}/preparing`);
    const doneColour = "getComputedStyle(document.querySelector('li.done')).color";
    expect(await page.evaluate<string>(doneColour)).toBe('rgb(21, 128, 61)');
    expect(csp).toEqual([]);
    await context.close();
  });

  it('say why a workspace is held back', () => {
    expect(PAGES['cancelled']!.status).toBe(410);
    expect(PAGES['cancelled']!.html).toContain('Its data is kept until 2027-01-05 and then deleted for good');
    expect(PAGES['suspended-operator']!.html).toContain("suspended by the platform's operator");
    expect(PAGES['suspended-payment']!.html).toContain('because a payment did not go through');
    expect(p.suspended().html).toContain('This workspace is suspended. Its owner can ask the platform why.');
  });
});
