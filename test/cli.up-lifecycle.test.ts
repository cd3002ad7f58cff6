import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { runCli, startCli } from './support/cli.ts';
import { createTestDatabase } from './support/db.ts';

/** Processes whose command line mentions `needle` (e.g. a postgres data dir). */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(needle)) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

async function eventually(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Connect to the embedded server of a running `aiqso up` with the credentials it keeps in the data dir. */
async function connectToEmbedded(dataDir: string): Promise<pg.Client> {
  const port = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[3]);
  const password = (await readFile(path.join(dataDir, 'pg-password'), 'utf8')).trim();
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'aiqso', password, database: 'aiqso' });
  await client.connect();
  return client;
}

const READY = 'Press Ctrl-C to stop.';

// Each test starts real `aiqso` processes and embedded PostgreSQL servers; on a busy machine that takes a while.
describe('aiqso up with embedded PostgreSQL', { timeout: 180_000 }, () => {
  it('serves /healthz, stops PostgreSQL on Ctrl-C and keeps the data for the next start', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-up-'));
    const port = await freePort();
    const env = { AIQSO_DATA_DIR: dataDir, AIQSO_HTTP_PORT: String(port) };
    const pgMarker = `-D ${path.join(dataDir, 'pg')}`;

    const first = await startCli(['up'], env, READY);
    expect(first.output()).toMatch(/Admin login\s+admin@localhost \/ \S{20}/);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
    expect(processesMentioning(pgMarker)).toHaveLength(1);

    const client = await connectToEmbedded(dataDir);
    await client.query(
      "INSERT INTO tenants (id, slug, company) VALUES ('ten_01jdtest0000000000000000aa', 'acme', 'Acme Ltd')",
    );
    await client.end();

    // A one-shot command next to the running platform shares its server rather than stopping it.
    const listed = await runCli(['tenants', 'list', '--json'], env);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ slug: 'acme', status: 'pending_payment' }),
    ]);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    first.child.kill('SIGINT');
    const stopped = await first.exited;
    expect(stopped.code).toBe(0);
    await eventually(() => processesMentioning(pgMarker).length === 0);

    const second = await startCli(['up'], env, READY);
    expect(second.output()).not.toMatch(/Admin login\s+admin@localhost \/ \S{20}/);
    const shown = await runCli(['tenants', 'show', 'acme', '--json'], env);
    expect(JSON.parse(shown.stdout)).toMatchObject({ slug: 'acme', company: 'Acme Ltd' });
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    await eventually(() => processesMentioning(pgMarker).length === 0);
  });

  it('leaves no PostgreSQL behind when the platform is killed, and starts again', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-up-'));
    const port = await freePort();
    const env = { AIQSO_DATA_DIR: dataDir, AIQSO_HTTP_PORT: String(port) };
    const pgMarker = `-D ${path.join(dataDir, 'pg')}`;

    const first = await startCli(['up'], env, READY);
    first.child.kill('SIGKILL');
    await first.exited;
    await eventually(() => processesMentioning(pgMarker).length === 0);

    const second = await startCli(['up'], env, READY);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    second.child.kill('SIGINT');
    expect((await second.exited).code).toBe(0);
  });
});

describe('aiqso command line', () => {
  it('stops with one line naming a bad variable and exit code 2', async () => {
    const result = await runCli(['up'], { AIQSO_HTTP_PORT: 'abc', AIQSO_DATA_DIR: os.tmpdir() });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'aiqso: configuration error: AIQSO_HTTP_PORT: expected a TCP port number (1-65535), got "abc"\n',
    );
  });

  it('lists every command in --help', async () => {
    const result = await runCli(['--help'], {});
    expect(result.code).toBe(0);
    for (const command of ['up', 'migrate', 'doctor', 'tenants'])
      expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('says which tenant is missing with exit code 3', async () => {
    const database = await createTestDatabase();
    const result = await runCli(['tenants', 'show', 'nobody'], {
      DATABASE_URL: database.url,
      AIQSO_DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'aiqso-cli-')),
    });
    await database.drop();
    expect(result.code).toBe(3);
    expect(result.stderr).toBe('aiqso: no tenant with slug or id "nobody"\n');
  });

  it('rejects an unknown status filter with a clear message', async () => {
    const result = await runCli(['tenants', 'list', '--status', 'sleeping'], {
      DATABASE_URL: 'postgres://127.0.0.1:1/x',
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^aiqso: --status: expected one of pending_payment, /);
  });

  it('doctor reports each part with a fix for what is missing', async () => {
    const result = await runCli(['doctor', '--json'], {
      AIQSO_DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'aiqso-doctor-')),
      AIQSO_EDGE: 'nginx',
      SMTP_URL: 'smtp://127.0.0.1:1',
    });
    const checks = JSON.parse(result.stdout) as { part: string; status: string; fix?: string }[];
    expect(checks.map((c) => c.part)).toEqual([
      'postgresql',
      'pg_dump',
      'lxc',
      'proxmox',
      'nginx',
      'redis',
      'services redis',
      'stripe',
      'smtp',
      'data directory',
      'backups',
      'isolation',
    ]);
    expect(checks.find((c) => c.part === 'postgresql')?.status).toBe('ok');
    const smtp = checks.find((c) => c.part === 'smtp')!;
    expect(smtp.status).toBe('failed');
    expect(smtp.fix).toMatch(/SMTP/);
    expect(result.code).toBe(1);
  });
});

describe('aiqso up with a broken service catalog', () => {
  it('stops before starting anything, naming the file and field, with exit code 2', async () => {
    const catalog = await mkdtemp(path.join(os.tmpdir(), 'aiqso-catalog-'));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(catalog, 'crm.yaml'), 'key: crm\nname: CRM\nkind: app\n');
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-up-'));
    const result = await runCli(['up'], { AIQSO_DATA_DIR: dataDir, AIQSO_CATALOG_DIR: catalog });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(`^aiqso: service catalog error: ${catalog}/crm.yaml: \\S+: .+\\n$`),
    );
    expect(processesMentioning(path.join(dataDir, 'pg'))).toEqual([]);
  });
});
