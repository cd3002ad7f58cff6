import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { createLogger } from '../src/observability/logger.ts';
import {
  dropServiceDatabase,
  ensureServiceDatabase,
  serviceDatabaseExists,
  serviceDatabaseName,
} from '../src/services/databases.ts';

// This file runs its own embedded server: it enforces passwords (scram-sha-256),
// which a trust-auth test server would not.
let server: EmbeddedPostgres;
let dir: string;
let handle: DatabaseHandle;
let admin: pg.Pool;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-svcdb-'));
  server = await startEmbeddedPostgres(dir, createLogger('silent'));
  // The platform's own pool: it survives the server closing idle connections at shutdown.
  handle = openDatabase(server.url, { max: 2 });
  admin = handle.pool;
}, 120_000);
afterAll(async () => {
  await handle.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

async function connectAs(role: string, password: string, database: string): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port: server.port, user: role, password, database });
  await client.connect();
  return client;
}

const crm = {
  name: serviceDatabaseName('ten_01jdaaaaaaaaaaaaaaaaaaaaaa', 'espocrm'),
  password: 'crm-secret-1',
};
const docs = {
  name: serviceDatabaseName('ten_01jdbbbbbbbbbbbbbbbbbbbbbb', 'paperless-ngx'),
  password: 'docs-secret-2',
};

describe('a database and role per tenant service', () => {
  it('derives deterministic, valid names', () => {
    expect(crm.name).toBe('s_01jdaaaaaaaaaaaaaaaaaaaaaa_espocrm');
    expect(docs.name).toBe('s_01jdbbbbbbbbbbbbbbbbbbbbbb_paperless_ngx');
  });

  it('creates the database owned by its role, and repeating it changes nothing', async () => {
    for (const db of [crm, docs]) {
      await ensureServiceDatabase(admin, { ...db, role: db.name });
      await ensureServiceDatabase(admin, { ...db, role: db.name });
    }
    const client = await connectAs(crm.name, crm.password, crm.name);
    await client.query('CREATE TABLE leads (id int)');
    await client.query('INSERT INTO leads VALUES (1)');
    expect((await client.query('SELECT count(*)::int AS n FROM leads')).rows).toEqual([{ n: 1 }]);
    await client.end();
  });

  it('is reachable only with its own role and password', async () => {
    // The embedded server's pg_hba.conf refuses first; REVOKE CONNECT … FROM PUBLIC is the wall behind it.
    await expect(connectAs(docs.name, docs.password, crm.name)).rejects.toThrow(
      /no pg_hba\.conf entry .* user "s_01jdbbbbbbbbbbbbbbbbbbbbbb_paperless_ngx", database "s_01jdaaaaaaaaaaaaaaaaaaaaaa_espocrm"/,
    );
    expect(
      (await admin.query("SELECT has_database_privilege('public', $1, 'CONNECT') AS open", [crm.name])).rows,
    ).toEqual([{ open: false }]);
    await expect(connectAs(crm.name, 'wrong', crm.name)).rejects.toThrow(/password authentication failed/);
  });

  it('keeps the password out of the SQL it sends', async () => {
    const seen: string[] = [];
    const spy = admin.query.bind(admin);
    const recording = Object.assign(Object.create(admin) as pg.Pool, {
      query: (text: string, params?: unknown[]) => {
        seen.push(text);
        return spy(text, params);
      },
    });
    await ensureServiceDatabase(recording, { ...crm, role: crm.name, password: 'rotated-secret-3' });
    expect(seen.join('\n')).not.toContain('rotated-secret-3');
    const client = await connectAs(crm.name, 'rotated-secret-3', crm.name);
    await client.end();
  });

  it('drops the database and role, even with a session open, and dropping again is fine', async () => {
    const client = await connectAs(docs.name, docs.password, docs.name);
    client.on('error', () => undefined);
    await dropServiceDatabase(admin, { name: docs.name, role: docs.name });
    await dropServiceDatabase(admin, { name: docs.name, role: docs.name });
    expect(await serviceDatabaseExists(admin, docs.name)).toBe(false);
    const roles = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [docs.name]);
    expect(roles.rowCount).toBe(0);
    await client.end().catch(() => undefined);
  });
});
