import { spawn } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { backupEngine } from '../../src/platform/backups.ts';
import type { ResticRepository } from '../../src/backup/restic.ts';
import { ProcessDriver } from '../../src/compute/process/driver.ts';
import { loadConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import type { TestDatabase } from './db.ts';
import type { KilledPlatform } from './killed-platform.ts';
import { pollUntil } from './live-platform.ts';

/**
 * What the backup and restore kill tests share: a seeded random source (the
 * seed printed, and taken from AIQSO_KILL_SEED to replay a failure), and one
 * tenant with Notes on a platform that is killed, whose notes the test writes
 * and reads in the service's own database and whose data directory holds a
 * marker file, with the tenant's restic repository at hand.
 */

/** mulberry32: a small seeded generator, so the kill points of a run can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** AIQSO_KILL_SEED when set (to replay a failure), else a fresh one; the test prints it. */
export function killSeed(): number {
  const given = process.env.AIQSO_KILL_SEED;
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}

export const MARKER = 'kill-marker.txt';
const PASSWORD = 'correct horse battery staple';

/** Sign up `slug` (local checkout), subscribe it to Notes, and wait until Notes is active. */
export async function notesTenant(platform: KilledPlatform, testDb: TestDatabase, slug: string) {
  const email = `owner@${slug}.test`;
  const signup = await fetch(`${platform.base}/api/v1/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ company: `${slug} Ltd`, slug, email, password: PASSWORD }),
  });
  if (signup.status !== 201) throw new Error(`signup answered ${signup.status}: ${await signup.text()}`);
  const { checkoutUrl } = (await signup.json()) as { checkoutUrl: string };
  const paid = await fetch(`${platform.base}${new URL(checkoutUrl).pathname}/pay`, {
    method: 'POST',
    redirect: 'manual',
  });
  await paid.arrayBuffer();
  await pollUntil(
    () => testDb.db.selectFrom('tenants').select('status').where('slug', '=', slug).executeTakeFirst(),
    (t) => t?.status === 'active',
    180_000,
    250,
  );
  const login = await fetch(`${platform.base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  const { accessToken } = (await login.json()) as { accessToken: string };
  const subscribed = await fetch(`${platform.base}/api/v1/tenants/${slug}/services`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ service: 'notes' }),
  });
  if (subscribed.status !== 202) throw new Error(`subscribe answered ${subscribed.status}`);
  const ts = await pollUntil(
    () =>
      testDb.db
        .selectFrom('tenant_services as ts')
        .innerJoin('tenants as t', 't.id', 'ts.tenant_id')
        .select(['ts.id', 'ts.status', 'ts.container_name', 'ts.db_name', 'ts.tenant_id'])
        .where('t.slug', '=', slug)
        .executeTakeFirst(),
    (r) => r?.status === 'active',
    180_000,
    250,
  );
  if (ts?.status !== 'active') throw new Error(`Notes of ${slug} did not become active`);
  const url = new URL(testDb.url);
  url.pathname = `/${ts.db_name!}`;
  // As the server's superuser: the test reads and writes the notes behind the service's back.
  const notesDb = new pg.Pool({ connectionString: url.toString(), max: 1 });
  notesDb.on('error', () => undefined);
  // Notes makes its table when it starts; wait for it.
  await pollUntil(
    () =>
      notesDb
        .query<{ t: string | null }>("SELECT to_regclass('public.drafts')::text AS t")
        .then((r) => r.rows[0]?.t !== null)
        .catch(() => false),
    (ok) => ok,
    60_000,
  );
  const withDriver = async <T>(fn: (driver: ProcessDriver) => Promise<T>): Promise<T> => {
    const driver = await ProcessDriver.open({
      root: path.join(platform.dataDir, 'containers'),
      log: createLogger('silent'),
    });
    try {
      return await fn(driver);
    } finally {
      await driver.close();
    }
  };
  const { restic, keys } = backupEngine(loadConfig(platform.env), testDb.db);
  return {
    keys,
    tenantId: ts.tenant_id,
    tenantServiceId: ts.id,
    container: ts.container_name!,
    async addNote(body: string) {
      await notesDb.query("INSERT INTO drafts (kind, body) VALUES ('notes', $1)", [body]);
    },
    async notes(): Promise<string[]> {
      const { rows } = await notesDb.query<{ body: string }>('SELECT body FROM drafts ORDER BY id');
      return rows.map((r) => r.body);
    },
    writeMarker: (text: string) =>
      withDriver(async (d) => {
        const r = await d.exec(ts.container_name!, ['tee', MARKER], { stdin: text });
        if (r.exitCode !== 0) throw new Error(`writing the marker failed: ${r.stderr}`);
      }),
    readMarker: () =>
      withDriver(async (d) => {
        const r = await d.exec(ts.container_name!, ['cat', MARKER]);
        return r.exitCode === 0 ? r.stdout : null;
      }),
    restic,
    repo: async (): Promise<ResticRepository> => {
      const repo = await keys.existing(ts.tenant_id);
      if (!repo) throw new Error('the tenant has no repository yet');
      return repo;
    },
    close: () => notesDb.end(),
  };
}

export type NotesTenant = Awaited<ReturnType<typeof notesTenant>>;

/** One file of a snapshot, as bytes. */
export async function snapshotFile(t: NotesTenant, snapshot: string, file: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  await t.restic.dump(await t.repo(), snapshot, file, sink);
  return Buffer.concat(chunks);
}

/** The marker file inside a data snapshot's archive (`tar -xzO`), or null when it holds none. */
export async function markerIn(archive: Buffer): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', ['-xzO', '-f', '-', `./${MARKER}`], { stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    tar.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    tar.on('error', reject);
    tar.on('close', (code) => resolve(code === 0 ? out : null));
    tar.stdin.on('error', () => undefined);
    tar.stdin.end(archive);
  });
}

/** `restic check` of the tenant's repository: resolves when it finds no error, rejects with restic's words. */
export async function resticCheck(t: NotesTenant): Promise<void> {
  // check needs the repository to itself: a lock another restic holds for a moment is waited out.
  for (let attempt = 1; ; attempt++) {
    try {
      await t.restic.call(await t.repo(), ['check']);
      return;
    } catch (err) {
      const held = err instanceof Error && /already locked|lock was created at/.test(err.message);
      if (!held || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** The step a resource was in, as its status says (`running`/`waiting`, or its phase once settled). */
export async function stepUnderWay(testDb: TestDatabase, kind: string, id: string): Promise<string> {
  const row = await testDb.db
    .selectFrom('resources')
    .select(['phase', 'steps'])
    .where('kind', '=', kind)
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row) return 'not queued';
  const steps = row.steps as { name: string; state: string }[];
  const busy = steps.find((s) => s.state === 'running' || s.state === 'waiting' || s.state === 'failed');
  return busy ? `${busy.name} (${busy.state})` : row.phase === 'ready' ? 'finished' : `queued (${row.phase})`;
}

/**
 * Wait until the resource's `anchor` step is under way (or already past it: a later step started,
 * or the resource settled): the kill tests then wait a random offset more and kill. Anchoring on
 * a step spreads the kills over the steps however fast or loaded the machine is.
 */
export async function reachStep(
  testDb: TestDatabase,
  kind: string,
  id: string,
  steps: readonly string[],
  anchor: string,
): Promise<void> {
  const index = steps.indexOf(anchor);
  await pollUntil(
    async () => {
      const row = await testDb.db
        .selectFrom('resources')
        .select(['phase', 'steps'])
        .where('kind', '=', kind)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row) return false;
      if (row.phase === 'ready' || row.phase === 'failed') return true;
      const seen = row.steps as { name: string; state: string }[];
      return seen.some((s) => steps.indexOf(s.name) >= index && s.state !== 'pending');
    },
    (reached) => reached,
    120_000,
    10,
  );
}
