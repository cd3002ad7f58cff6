import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertTenant } from './support/edge.ts';
import { eventually, rawGet, startEchoUpstream, type EchoUpstream } from './support/upstreams.ts';

let database: TestDatabase;
const upstreams: EchoUpstream[] = [];
const children: Awaited<ReturnType<typeof startCli>>[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  upstreams.push(await startEchoUpstream('one'), await startEchoUpstream('two'));
});

afterAll(async () => {
  for (const c of children) {
    c.child.kill('SIGTERM');
    await c.exited;
  }
  for (const u of upstreams) await u.close();
  await database?.drop();
});

describe('aiqso edge', () => {
  it('runs several instances that all follow a route change', async () => {
    const tenant = await insertTenant(database.db, 'acme');
    await upsertRoute(database.db, {
      hostname: 'acme.localhost',
      tenantId: tenant,
      upstream: { host: '127.0.0.1', port: upstreams[0]!.port },
    });
    const ports = [await freePort(), await freePort()];
    for (const port of ports) {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-edge-cli-'));
      children.push(
        await startCli(
          ['edge'],
          { DATABASE_URL: database.url, AIQSO_HTTP_PORT: String(port), AIQSO_DATA_DIR: dataDir },
          'Press Ctrl-C to stop.',
        ),
      );
    }
    for (const port of ports) {
      expect((await rawGet(port, '/', 'acme.localhost')).headers['x-upstream']).toBe('one');
      expect((await rawGet(port, '/healthz', 'localhost')).status).toBe(200);
    }
    await upsertRoute(database.db, {
      hostname: 'acme.localhost',
      tenantId: tenant,
      upstream: { host: '127.0.0.1', port: upstreams[1]!.port },
    });
    for (const port of ports) {
      await eventually(async () =>
        (await rawGet(port, '/', 'acme.localhost')).headers['x-upstream'] === 'two' ? true : undefined,
      );
    }
  });
});
