import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  killSeed,
  markerIn,
  notesTenant,
  reachStep,
  resticCheck,
  seededRandom,
  snapshotFile,
  stepUnderWay,
  type NotesTenant,
} from './support/backup-kills.ts';
import { sleep, startKilledPlatform, type KilledPlatform } from './support/killed-platform.ts';
import { startBackupRuns, waitForResources } from '../src/backup/requests.ts';
import { BACKUP_RUN_KIND } from '../src/backup/run.ts';

/**
 * Backup runs under kill -9 (issue #22's crash safety): a real `aiqso up`
 * (process driver, one tenant with Notes) is killed at a random point of a
 * backup run, 20 times; half the kills take the restic, pg_dump and tar it
 * runs along (a crash of the whole service), half kill the platform alone,
 * and those tools end by its own guard (they are started to die with it, so
 * none finishes a partial stream or holds a lock beside the resumed run;
 * a killed restic's lock is removed once init has reaped it). Each time the platform starts
 * again, and the killed run resumes and completes: exactly one database and
 * one data snapshot recorded for it, holding that run's note and file (not a
 * partial stream), and `restic check` finds the repository clean. In the end
 * every snapshot in the repository is a recorded one, no archive is left in
 * the staging directory, and `aiqso backups verify` passes. The kill points
 * come from a seeded random: the seed is printed, AIQSO_KILL_SEED replays it.
 */
const RUNS = 20;
const STEPS = ['repository', 'stale locks', 'databases', 'data', 'completed event'];
/** The steps that act in a run on an existing repository (the first two find nothing to do). */
const ANCHORS = ['databases', 'data', 'completed event'];

let testDb: TestDatabase;
let platform: KilledPlatform;
let tenant: NotesTenant | undefined;

beforeAll(async () => {
  testDb = await createTestDatabase({ max: 4 });
  platform = await startKilledPlatform(testDb, { AIQSO_SIGNUP_RATE_IP: '0' });
}, 180_000);
afterAll(async () => {
  await tenant?.close();
  await platform?.close();
  await testDb?.drop();
}, 120_000);

const log = (line: string) => process.stderr.write(`backup kill test: ${line}\n`);

describe('backup runs killed with kill -9 at random points', () => {
  it(`each resumes and completes with a clean repository, ${RUNS} times`, { timeout: 900_000 }, async () => {
    const seed = killSeed();
    log(`seed ${seed} (AIQSO_KILL_SEED=${seed} replays these kill points)`);
    const random = seededRandom(seed);
    const t = (tenant = await notesTenant(platform, testDb, 'acme'));
    // Queued and awaited as `aiqso backups run` does (the same calls), without a command's start-up
    // time in each of the runs.
    const queue = async () =>
      (await startBackupRuns(testDb.db, [{ id: t.tenantId }], { purpose: 'manual' }))[0]!;
    const settle = (id: string) => waitForResources(testDb.db, BACKUP_RUN_KIND, [id], 600_000);

    // One run untouched: how long a run takes from queued to done is the window kills are drawn in.
    await t.addNote('note <0>');
    await t.writeMarker('file <0>');
    const started = Date.now();
    expect(await settle(await queue())).toMatchObject([{ phase: 'ready' }]);
    log(`an unkilled run took ${Date.now() - started} ms`);

    let midRun = 0;
    for (let run = 1; run <= RUNS; run++) {
      await t.addNote(`note <${run}>`);
      await t.writeMarker(`file <${run}>`);
      const runId = await queue();
      const running = settle(runId);
      // A random step of the run, then a random offset into it (most steps take well under a second).
      const anchor = ANCHORS[Math.floor(random() * ANCHORS.length)]!;
      const delay = Math.floor(random() * 600);
      const tools = random() < 0.5;
      await reachStep(testDb, BACKUP_RUN_KIND, runId, STEPS, anchor);
      await sleep(delay);
      const at = await stepUnderWay(testDb, 'backup-run', runId);
      if (at !== 'finished') midRun++;
      await platform.killAndRestart({ tools });
      log(`run ${run}: killed ${delay} ms into ${anchor}, ${tools ? 'with' : 'without'} its tools, in ${at}`);

      expect(await running).toEqual([{ id: runId, phase: 'ready', error: null }]);
      // Nothing of the killed attempt holds the repository: no lock outlives the run.
      expect([run, await t.restic.locks(await t.repo())]).toEqual([run, []]);
      // Exactly one snapshot of each kind recorded for the run, holding this run's note and file.
      const rows = await testDb.db
        .selectFrom('backups')
        .select(['kind', 'snapshot_id', 'row_counts'])
        .where('run_id', '=', runId)
        .orderBy('kind')
        .execute();
      expect(rows.map((r) => r.kind)).toEqual(['data', 'database']);
      const dump = await snapshotFile(t, rows[1]!.snapshot_id!, '/database.dump');
      // An uncompressed custom-format dump (-Z0) holds the rows as text.
      expect(dump.subarray(0, 5).toString()).toBe('PGDMP');
      expect([run, dump.includes(`note <${run}>`)]).toEqual([run, true]);
      expect(rows[1]!.row_counts).toMatchObject({ 'public.drafts': run + 1 });
      const archive = await snapshotFile(t, rows[0]!.snapshot_id!, '/data.tar.gz');
      expect([run, await markerIn(archive)]).toEqual([run, `file <${run}>`]);
      await resticCheck(t);
    }
    log(`${midRun} of ${RUNS} kills landed before the run had finished`);
    expect(midRun).toBeGreaterThanOrEqual(RUNS / 4);

    // Every snapshot the repository holds is a recorded one: what killed attempts stored was forgotten.
    const recorded = await testDb.db.selectFrom('backups').select('snapshot_id').execute();
    const inRepo = await t.restic.snapshots(await t.repo());
    expect(inRepo.map((s) => s.id).sort()).toEqual(recorded.map((r) => r.snapshot_id).sort());
    expect(inRepo).toHaveLength(2 * (RUNS + 1));
    // No tenant data left behind in plaintext.
    const staging = path.join(platform.dataDir, 'backups-staging');
    expect(await readdir(staging).catch(() => [])).toEqual([]);
    // And the latest snapshots restore and count right.
    const verified = await runCli(['backups', 'verify', '--tenant', 'acme', '--json'], platform.env, 300_000);
    expect(verified.code, verified.stderr + verified.stdout).toBe(0);
  });
});
