import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, pollUntil, startLivePlatform } from './support/live-platform.ts';

/**
 * Receivers that never answer do not hold the platform's work: on a real
 * `aiqso up` with two job slots, four endpoints whose receiver keeps every
 * request open (the delivery timeout is a minute) and one that answers at
 * once, a signup becomes a live workspace and the prompt receiver gets its
 * events, while all four slow deliveries are still waiting. Deliveries run in
 * slots of their own (AIQSO_WEBHOOKS_CONCURRENCY), never in the job slots that
 * provision and repair (AIQSO_WORKER_CONCURRENCY).
 */

const SLOW = 4;

/** A receiver that keeps every request open until `release()`; counts them by path. */
async function hangingReceiver() {
  const open: ServerResponse[] = [];
  const paths = new Set<string>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    paths.add(req.url ?? '');
    open.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: (n: number) => `${base}/slow-${n}`,
    waiting: () => open.filter((r) => !r.writableEnded && !r.destroyed).length,
    paths,
    close: async () => {
      for (const r of open) if (!r.writableEnded) r.writeHead(200).end('late');
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function promptReceiver() {
  const types: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      types.push((JSON.parse(body) as { type: string }).type);
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    types,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let testDb: TestDatabase;
beforeEach(async () => {
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await testDb.drop();
});

const process_ = driverCases().find((d) => d.name === 'process')!;

describe('slow webhook receivers', { timeout: 300_000 }, () => {
  it('never hold the jobs that provision a tenant, nor the deliveries to a receiver that answers', async () => {
    const slow = await hangingReceiver();
    const prompt = await promptReceiver();
    const platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver: process_,
      env: {
        AIQSO_WEBHOOKS_ALLOW_PRIVATE: '1',
        AIQSO_WEBHOOKS_TIMEOUT_SECONDS: '60',
        AIQSO_WORKER_CONCURRENCY: '2',
      },
    });
    try {
      for (let n = 0; n < SLOW; n++) {
        const res = await runCli(['webhooks', 'add', slow.url(n), '--events', '*'], platform.env);
        expect(res.code, res.stderr).toBe(0);
      }
      const added = await runCli(['webhooks', 'add', prompt.url, '--events', '*'], platform.env);
      expect(added.code, added.stderr).toBe(0);

      const signup = await platform.signup({ company: 'Slow Co', slug: 'slowhooks', email: 'o@slow.test' });
      expect(signup.status).toBe(201);
      // Every slow endpoint has its first delivery open before the payment is made.
      await pollUntil(
        () => Promise.resolve(slow.paths.size),
        (n) => n === SLOW,
        60_000,
      );
      expect(slow.waiting()).toBe(SLOW);
      expect((await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(
        303,
      );

      // Provisioning needs the job slots that four hanging deliveries would fill twice over.
      const live = await platform.until('slowhooks', (p) => p.status === 200, 45_000);
      expect(live.status).toBe(200);
      const activated = await pollUntil(
        () => Promise.resolve(prompt.types),
        (t) => t.includes('tenant.activated'),
        30_000,
      );
      expect(activated).toContain('tenant.created');
      expect(activated).toContain('tenant.activated');
      // …and all of that while every slow delivery is still waiting for its answer.
      expect(slow.waiting()).toBe(SLOW);
    } finally {
      await slow.close();
      await prompt.close();
      await platform.stop(testDb.db);
    }
  });
});
