import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repositoryKeys } from '../src/backup/repositories.ts';
import { applyRetention } from '../src/backup/retention.ts';
import { Restic, type ResticRepository } from '../src/backup/restic.ts';
import { newId } from '../src/core/ids.ts';
import { isoWeek, selectKept } from '../src/core/retention.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Retention: over 400 days of daily snapshots the GFS selection keeps exactly
 * the newest of the last 30 days, 12 ISO weeks and 12 months (by value); on a
 * real repository whose snapshots span 400 days (a fake clock: restic's
 * `--time` dates each one) it keeps exactly what restic's own `forget
 * --keep-daily 30 --keep-weekly 12 --keep-monthly 12` keeps (restic is the
 * oracle, asked with --dry-run), and applying it leaves exactly that set, per
 * service and kind, with the rows of what went removed.
 */
let db: TestDatabase;
let dir: string;
const restic = () => new Restic({ cacheDir: path.join(dir, 'cache') });
beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-retention-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

const POLICY = { daily: 30, weekly: 12, monthly: 12 };
const DAY = 86_400_000;

describe('isoWeek', () => {
  it('numbers weeks as ISO 8601 does across year ends', () => {
    expect(isoWeek(new Date('2026-01-01T12:00:00Z'))).toBe('2026-W01');
    expect(isoWeek(new Date('2027-01-01T12:00:00Z'))).toBe('2026-W53');
    expect(isoWeek(new Date('2024-12-30T12:00:00Z'))).toBe('2025-W01');
    expect(isoWeek(new Date('2021-01-03T12:00:00Z'))).toBe('2020-W53');
  });
});

describe('GFS selection', () => {
  it('keeps 30 days, 12 weeks and 12 months of 400 daily snapshots, counted by value', () => {
    const start = Date.parse('2025-01-01T02:00:00Z');
    const snaps = Array.from({ length: 400 }, (_, i) => ({ id: `s${i}`, time: new Date(start + i * DAY) }));
    const kept = selectKept(snaps, POLICY);
    // Newest 30 days, the newest of each of the 12 newest ISO weeks, of each of the 12 newest months.
    const days = snaps.slice(-30).map((s) => s.id);
    for (const id of days) expect(kept.has(id)).toBe(true);
    const weeks = new Map<string, string>();
    const months = new Map<string, string>();
    for (const s of snaps) {
      weeks.set(isoWeek(s.time), s.id);
      months.set(s.time.toISOString().slice(0, 7), s.id);
    }
    const want = new Set([...days, ...[...weeks.values()].slice(-12), ...[...months.values()].slice(-12)]);
    expect([...kept].sort()).toEqual([...want].sort());
  });
});

describe('retention against a real restic repository', { timeout: 600_000 }, () => {
  it('forgets exactly what restic forget would, per service and kind, and removes their rows', async () => {
    const tenantId = newId('tenant');
    await db.db.insertInto('tenants').values({ id: tenantId, slug: 'keepco', company: 'Keep Co' }).execute();
    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const keys = repositoryKeys(db.db, () => Promise.resolve(box), path.join(dir, 'repos'));
    const r = restic();
    const repo = await keys.forTenant(tenantId);
    await r.init(repo);
    const start = Date.parse('2025-03-01T02:00:00Z');
    const jobs: { service: string; kind: string; time: Date }[] = [];
    // Over 400 days, every 6th day (and daily for the last 20): each rule has something to choose.
    for (let i = 0; i < 400; i += i < 380 ? 6 : 1)
      jobs.push({ service: 'notes', kind: 'database', time: new Date(start + i * DAY) });
    // A second group, daily for its last 35 days: kept by its own count, not crowded out by notes'.
    for (let i = 365; i < 400; i++)
      jobs.push({ service: 'crm', kind: 'data', time: new Date(start + i * DAY) });
    const take = async (j: (typeof jobs)[number]) => {
      await r.backupStdin(repo, {
        stdin: Readable.from([`${j.service} ${j.time.toISOString()}\n`]),
        filename: j.kind === 'database' ? 'database.dump' : 'data.tar.gz',
        tags: [`tenant=${tenantId}`, `service=${j.service}`, `kind=${j.kind}`, `run=run_${j.time.getTime()}`],
        host: 'aiqso',
        time: j.time,
      });
    };
    for (let i = 0; i < jobs.length; i += 6) await Promise.all(jobs.slice(i, i + 6).map(take));
    const all = await r.snapshots(repo);
    expect(all).toHaveLength(jobs.length);
    await db.db
      .insertInto('backups')
      .values(
        all.map((s) => ({
          id: newId('backup'),
          tenant_id: tenantId,
          kind: s.tags.includes('kind=data') ? ('data' as const) : ('database' as const),
          status: 'done' as const,
          service: s.tags.find((t) => t.startsWith('service='))!.slice(8),
          snapshot_id: s.id,
          started_at: s.time,
        })),
      )
      .execute();

    // restic's own answer for each group, without changing anything.
    const oracle = async (repoOf: ResticRepository, tag: string) => {
      const out = await r.call(repoOf, [
        'forget',
        '--dry-run',
        '--json',
        '--tag',
        tag,
        '--keep-daily',
        '30',
        '--keep-weekly',
        '12',
        '--keep-monthly',
        '12',
      ]);
      const groups = JSON.parse(out) as { keep: { id: string }[] | null }[];
      return new Set(groups.flatMap((g) => (g.keep ?? []).map((s) => s.id)));
    };
    const notes = all.filter((s) => s.tags.includes('service=notes'));
    const crm = all.filter((s) => s.tags.includes('service=crm'));
    const keepNotes = await oracle(repo, 'service=notes,kind=database');
    const keepCrm = await oracle(repo, 'service=crm,kind=data');
    expect([...selectKept(notes, POLICY)].sort()).toEqual([...keepNotes].sort());
    expect([...selectKept(crm, POLICY)].sort()).toEqual([...keepCrm].sort());
    // crm's 30 newest days are kept by its own daily count, whatever notes holds.
    for (const s of crm.sort((a, b) => b.time.getTime() - a.time.getTime()).slice(0, 30))
      expect(keepCrm.has(s.id)).toBe(true);

    const removed = await applyRetention({ db: db.db, restic: r, keys }, tenantId, POLICY);
    const left = await r.snapshots(repo);
    expect(new Set(left.map((s) => s.id))).toEqual(new Set([...keepNotes, ...keepCrm]));
    expect(removed).toBe(jobs.length - left.length);
    expect(removed).toBeGreaterThan(0);
    const rows = await db.db
      .selectFrom('backups')
      .select('snapshot_id')
      .where('tenant_id', '=', tenantId)
      .execute();
    expect(new Set(rows.map((x) => x.snapshot_id))).toEqual(new Set(left.map((s) => s.id)));
    // Applying it again changes nothing.
    expect(await applyRetention({ db: db.db, restic: r, keys }, tenantId, POLICY)).toBe(0);
  });
});
