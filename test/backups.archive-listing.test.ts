import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listArchiveFile } from '../src/backup/archive.ts';

/**
 * The streamed tar listing a data snapshot is recorded and verified with,
 * against GNU tar's own `tar -tv` of the same archives: gzip or not, GNU
 * and pax formats, names longer than 100 characters, links, directories,
 * an empty file. Input that is no tar archive (random bytes, a damaged gzip
 * stream) is refused with its reason.
 */
let dir: string;
const tree = () => path.join(dir, 'tree');

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-archive-listing-'));
  const deep = path.join(tree(), 'a'.repeat(60), 'b'.repeat(60));
  await mkdir(deep, { recursive: true });
  await writeFile(path.join(deep, `${'c'.repeat(90)}.bin`), randomBytes(123_457));
  await writeFile(path.join(tree(), 'empty'), '');
  await writeFile(path.join(tree(), 'small.txt'), 'hello\n');
  await symlink('small.txt', path.join(tree(), 'link'));
  await link(path.join(tree(), 'small.txt'), path.join(tree(), 'hard'));
  await mkdir(path.join(tree(), 'empty-dir'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function tar(args: string[]): string {
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** What GNU tar lists: every entry, and the sizes of regular files (lines starting with `-`). */
function tarListing(file: string): { files: number; bytes: number } {
  const lines = tar(['-tvf', file]).split('\n').filter(Boolean);
  const bytes = lines.filter((l) => l.startsWith('-')).reduce((sum, l) => sum + Number(l.split(/\s+/)[2]), 0);
  return { files: lines.length, bytes };
}

describe('tar listing of a data archive', () => {
  for (const [format, gzip] of [
    ['gnu', true],
    ['gnu', false],
    ['pax', true],
    ['pax', false],
    ['ustar', false],
  ] as const) {
    it(`agrees with tar -tv for a ${format} archive${gzip ? ', gzipped' : ''}`, async () => {
      if (format === 'ustar') {
        // ustar cannot hold the long names: an archive of the short ones.
        await writeFile(path.join(dir, 'short'), 'x'.repeat(1000));
      }
      const file = path.join(dir, `${format}${gzip ? '.tar.gz' : '.tar'}`);
      const args = [`--format=${format}`, gzip ? '-czf' : '-cf', file, '-C'];
      if (format === 'ustar') tar([...args, dir, 'short']);
      else tar([...args, tree(), '.']);
      const expected = tarListing(file);
      expect(expected.files).toBeGreaterThan(0);
      expect(await listArchiveFile(file)).toEqual(expected);
    });
  }

  it('refuses what is not a tar archive, naming why', async () => {
    const random = path.join(dir, 'random.bin');
    await writeFile(random, randomBytes(4096));
    await expect(listArchiveFile(random)).rejects.toThrow(/not a tar archive/);
    const damaged = path.join(dir, 'damaged.tar.gz');
    tar(['-czf', damaged, '-C', tree(), '.']);
    const data = await readFile(damaged);
    data.fill(0x55, 20, 200);
    await writeFile(damaged, data);
    await expect(listArchiveFile(damaged)).rejects.toThrow(/gzip|not a tar archive/);
    const empty = path.join(dir, 'empty.bin');
    await writeFile(empty, '');
    await expect(listArchiveFile(empty)).rejects.toThrow(/empty or not a tar archive/);
  });
});
