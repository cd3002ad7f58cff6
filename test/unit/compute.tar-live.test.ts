import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, tarLive } from '../../src/compute/shared/run.ts';

/**
 * Archiving a live container's files: a log the workload keeps writing while
 * tar reads it is taken as it was read (plain tar exits 1, "file changed as we
 * read it", which failed exports and backups of busy services); any other
 * problem still fails with tar's reason.
 */
describe('tarLive', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-tar-live-'));
    await mkdir(path.join(dir, 'data'));
    await writeFile(path.join(dir, 'data', 'app.log'), 'line\n'.repeat(400_000));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('archives files that change while they are read; plain tar fails on the same', async () => {
    const log = path.join(dir, 'data', 'app.log');
    const writer = spawn('sh', ['-c', `while true; do echo more >> '${log}'; done`], { stdio: 'ignore' });
    try {
      const plain = await run('tar', [
        '-C',
        path.join(dir, 'data'),
        '-czf',
        path.join(dir, 'plain.tgz'),
        '.',
      ]);
      expect(plain.exitCode, plain.stderr).toBe(1);
      expect(plain.stderr).toContain('file changed as we read it');
      const file = path.join(dir, 'live.tgz');
      await tarLive(['-C', path.join(dir, 'data'), '-czf', file, '.']);
      const listed = await run('tar', ['-tzf', file]);
      expect(listed.stdout.split('\n')).toContain('./app.log');
    } finally {
      writer.kill('SIGKILL');
    }
  });

  it('fails with the reason on anything else', async () => {
    const err = (await tarLive(['-C', path.join(dir, 'missing'), '-czf', path.join(dir, 'x.tgz'), '.']).catch(
      (e: unknown) => e,
    )) as { code: string; message: string };
    expect(err.code).toBe('dependency_failed');
    expect(err.message).toMatch(/^tar failed \(2\): .*missing/);
  });
});
