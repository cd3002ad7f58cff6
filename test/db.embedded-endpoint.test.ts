import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { runningListenAddresses } from '../src/db/embedded-settings.ts';
import { createLogger } from '../src/observability/logger.ts';
import {
  ensureServiceDatabase,
  serviceDatabaseName,
  dropServiceDatabase,
} from '../src/services/databases.ts';

/**
 * Workloads keep the database URL they were given, so the embedded server's
 * endpoint must not change across restarts: it keeps the port it first chose
 * (recorded in the data directory), moves only when something else holds it,
 * and listens on the extra addresses it is asked for (the lxc bridge's
 * gateway), where containers reach it without the control plane.
 */
let dataDir: string;
const lines: string[] = [];
const log = createLogger(
  'info',
  new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  }),
);

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-pg-endpoint-'));
});
afterAll(() => rm(dataDir, { recursive: true, force: true }));

const recorded = async () => Number((await readFile(path.join(dataDir, 'pg-port'), 'utf8')).trim());

describe('the embedded server endpoint', { timeout: 120_000 }, () => {
  it('keeps its port across restarts and moves only when something else holds it', async () => {
    const first = await startEmbeddedPostgres(dataDir, log);
    const port = first.port;
    expect(await recorded()).toBe(port);
    await first.stop();

    const second = await startEmbeddedPostgres(dataDir, log);
    expect(second.port).toBe(port);
    await second.stop();

    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', r));
    try {
      const third = await startEmbeddedPostgres(dataDir, log);
      expect(third.port).not.toBe(port);
      expect(await recorded()).toBe(third.port);
      expect(lines.join('')).toMatch(/port recorded in the data directory is taken/);
      await third.stop();
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    // Moved for good: the new port is the one kept from now on.
    const fourth = await startEmbeddedPostgres(dataDir, log);
    expect(fourth.port).toBe(await recorded());
    await fourth.stop();
  });

  it('listens on the extra addresses asked for, and says so to a process sharing it', async () => {
    const server = await startEmbeddedPostgres(dataDir, log, { listen: ['127.0.0.2'] });
    const admin = openDatabase(server.url, { max: 1 });
    const name = serviceDatabaseName('ten_01jdcccccccccccccccccccccc', 'notes');
    try {
      expect(server.listens).toEqual(['127.0.0.1', '127.0.0.2']);
      await ensureServiceDatabase(admin.pool, { name, role: name, password: 'listen-secret-1' });
      const client = new pg.Client({
        host: '127.0.0.2',
        port: server.port,
        user: name,
        password: 'listen-secret-1',
        database: name,
      });
      client.on('error', () => undefined);
      await client.connect();
      expect((await client.query('SELECT host(inet_server_addr()) AS a')).rows).toEqual([{ a: '127.0.0.2' }]);
      await client.end();
      // A CLI command next to the running platform, connecting to it, reads what it listens on here.
      expect(await runningListenAddresses(server.dir)).toEqual(['127.0.0.1', '127.0.0.2']);
    } finally {
      await dropServiceDatabase(admin.pool, { name, role: name });
      await admin.close();
      await server.stop();
    }
  });
});
