import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { runCli, startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * AIQSO_BILLING: Stripe when a Stripe key is set, else local billing mode,
 * whose Pay button activates any tenant for free. `aiqso up` says so in one
 * line, and a platform on a real domain does not fall into it by a missing
 * key: it refuses to start unless AIQSO_BILLING=local says it is meant.
 */
let testDb: TestDatabase;
const dataDirs: string[] = [];
const READY = 'Press Ctrl-C to stop.';
const WARNING =
  'WARNING: local billing mode: payments are simulated and the checkout Pay button activates any tenant for free; set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) for real payments.';
const REFUSAL =
  'aiqso: configuration error: AIQSO_BILLING: local billing mode (simulated payments: anyone can activate a tenant for free) is not used on example.com unless chosen; set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET for Stripe, or AIQSO_BILLING=local, got nothing\n';

beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => {
  await testDb.drop();
  for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
});

async function env(extra: Record<string, string> = {}) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-billing-mode-'));
  dataDirs.push(dataDir);
  return {
    DATABASE_URL: testDb.url,
    AIQSO_DATA_DIR: dataDir,
    AIQSO_HTTP_PORT: String(await freePort()),
    ...extra,
  };
}

/** Start `aiqso up`, stop it with Ctrl-C, and return what it printed. */
async function upOutput(vars: Record<string, string>): Promise<string> {
  const up = await startCli(['up'], vars, READY, 120_000);
  const output = up.output();
  up.child.kill('SIGINT');
  expect((await up.exited).code).toBe(0);
  return output;
}

const count = (text: string, line: string) => text.split('\n').filter((l) => l === line).length;

describe('AIQSO_BILLING', { timeout: 180_000 }, () => {
  it('local mode (no Stripe key) on localhost: aiqso up prints one warning line', async () => {
    expect(count(await upOutput(await env()), WARNING)).toBe(1);
  });

  it('Stripe mode (a Stripe key): no warning', async () => {
    const output = await upOutput(
      await env({ STRIPE_SECRET_KEY: 'sk_test_billingmode', STRIPE_WEBHOOK_SECRET: 'whsec_billingmode' }),
    );
    expect(output).not.toContain('local billing mode');
  });

  it('local mode on another base domain: aiqso up and aiqso edge refuse with one line and exit 2', async () => {
    const vars = await env({ AIQSO_BASE_DOMAIN: 'example.com' });
    for (const command of ['up', 'edge']) {
      const result = await runCli([command], vars);
      expect([command, result.code, result.stderr]).toEqual([command, 2, REFUSAL]);
    }
  });

  it('local mode on another base domain starts when AIQSO_BILLING=local says so, with the warning', async () => {
    const output = await upOutput(await env({ AIQSO_BASE_DOMAIN: 'example.com', AIQSO_BILLING: 'local' }));
    expect(count(output, WARNING)).toBe(1);
  });
});
