import { appendFile, lchown, lstat, opendir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DomainError } from '../../core/errors.ts';
import { run } from '../shared/run.ts';

/**
 * Unprivileged containers: root inside is an unprivileged id range on the
 * host (`lxc.idmap`), taken from root's subordinate ranges in /etc/subuid and
 * /etc/subgid. Invariant: every file a container owns (its rootfs layers and
 * its /aiqso directory) belongs to the mapped range, so container root is
 * root there and nobody anywhere else.
 */

/** Ids mapped into a container: 0…size-1 inside are uid/gid start…start+size-1 on the host. */
export interface IdRange {
  start: number;
  size: number;
}

export interface IdMap {
  uid: IdRange;
  gid: IdRange;
}

/** 65536 ids: every uid and gid a Debian userland uses, nobody (65534) included. */
export const MAP_SIZE = 65_536;
const FIRST_START = 100_000;

export const SUBUID_FILE = '/etc/subuid';
export const SUBGID_FILE = '/etc/subgid';

interface Entry {
  user: string;
  start: number;
  count: number;
}

function parseEntries(text: string): Entry[] {
  const out: Entry[] = [];
  for (const line of text.split('\n')) {
    const m = /^([^:#\s]+):(\d+):(\d+)\s*$/.exec(line);
    if (m) out.push({ user: m[1]!, start: Number(m[2]), count: Number(m[3]) });
  }
  return out;
}

/**
 * Root's subordinate range in a subuid/subgid file, and the line to append when
 * it has none big enough: the first free block of `size` ids at 100000 +
 * k·size, overlapping no one's entry. Pure; other entries are never rewritten.
 */
export function planSubordinateRange(
  text: string,
  user = 'root',
  size = MAP_SIZE,
): { range: IdRange; append?: string } {
  const entries = parseEntries(text);
  const mine = entries.find((e) => e.user === user && e.count >= size);
  if (mine) return { range: { start: mine.start, size } };
  let start = FIRST_START;
  for (;;) {
    const clash = entries.find((e) => start < e.start + e.count && e.start < start + size);
    if (!clash) break;
    // Blocks of `size` from 100000 on, as useradd hands them out: the first past the clash.
    start = FIRST_START + Math.ceil((clash.start + clash.count - FIRST_START) / size) * size;
  }
  const sep = text === '' || text.endsWith('\n') ? '' : '\n';
  return { range: { start, size }, append: `${sep}${user}:${start}:${size}\n` };
}

async function ensureRange(file: string): Promise<IdRange> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const plan = planSubordinateRange(text);
  // Appending one short line is atomic (O_APPEND); nothing else in the file is touched.
  if (plan.append) await appendFile(file, plan.append, { mode: 0o644 });
  return plan.range;
}

/** Root's ranges, with entries added to /etc/subuid and /etc/subgid when missing. Idempotent. */
export async function ensureIdMap(): Promise<IdMap> {
  return { uid: await ensureRange(SUBUID_FILE), gid: await ensureRange(SUBGID_FILE) };
}

/** Root's ranges as the files state them now, without changing anything (for `aiqso doctor`). */
export async function readIdMap(): Promise<IdMap | undefined> {
  const read = async (file: string) => {
    const plan = planSubordinateRange(await readFile(file, 'utf8').catch(() => ''));
    return plan.append ? undefined : plan.range;
  };
  const [uid, gid] = [await read(SUBUID_FILE), await read(SUBGID_FILE)];
  return uid && gid ? { uid, gid } : undefined;
}

/** `lxc.idmap` lines for a container config. */
export function idmapLines(map: IdMap): string[] {
  return [
    `lxc.idmap = u 0 ${map.uid.start} ${map.uid.size}`,
    `lxc.idmap = g 0 ${map.gid.start} ${map.gid.size}`,
  ];
}

/** A host id moved into the range; ids already in it (or beyond the map) stay. */
export function shiftId(id: number, range: IdRange): number {
  return id < range.size ? id + range.start : id;
}

/**
 * Give a tree to the mapped range: every id below the map's size moves up by
 * its start. Idempotent (shifted ids are left alone), so a conversion a crash
 * interrupted is completed by running it again. Symlinks are changed, never
 * followed; other file systems below `root` are not entered.
 */
export async function shiftTree(root: string, map: IdMap): Promise<number> {
  const top = await lstat(root).catch(() => undefined);
  if (!top) return 0;
  let changed = 0;
  const visit = async (p: string, st: Awaited<ReturnType<typeof lstat>>) => {
    const uid = shiftId(Number(st.uid), map.uid);
    const gid = shiftId(Number(st.gid), map.gid);
    if (uid !== Number(st.uid) || gid !== Number(st.gid)) {
      await lchown(p, uid, gid);
      changed++;
    }
    if (!st.isDirectory() || st.dev !== top.dev) return;
    for await (const entry of await opendir(p)) {
      const child = path.join(p, entry.name);
      await visit(child, await lstat(child));
    }
  };
  await visit(root, top);
  return changed;
}

/** Whether a directory already belongs to the mapped range (its owner is in it). */
export async function ownedByRange(dir: string, map: IdMap): Promise<boolean> {
  const st = await stat(dir);
  return st.uid >= map.uid.start && st.uid < map.uid.start + map.uid.size;
}

/**
 * Let the container's root (an unprivileged host uid) reach `target` by path:
 * LXC mounts the rootfs and bind mounts as that uid. A directory on the way
 * that others may not search gets an ACL entry for that uid only (search, not
 * read), so modes such as a 0700 data directory stay as they are. The
 * directories on the way are looked at side by side, each once per process.
 */
export async function grantTraversal(target: string, uid: number): Promise<void> {
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  const dirs = Array.from({ length: parts.length + 1 }, (_, i) => `/${parts.slice(0, i).join('/')}`);
  await Promise.all(
    dirs.filter((dir) => !reachable.has(`${uid}:${dir}`)).map((dir) => grantSearch(dir, uid, target)),
  );
}

async function grantSearch(dir: string, uid: number, target: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  // Not a directory (yet): looked at again next time.
  if (!st?.isDirectory()) return;
  // Searchable by others, or by the container root as the owner: nothing to add.
  if (st.mode & 0o001 || (st.uid === uid && st.mode & 0o100)) {
    reachable.add(`${uid}:${dir}`);
    return;
  }
  const acl = await run('getfacl', ['--omit-header', '--numeric', '--absolute-names', dir]).catch(
    () => undefined,
  );
  if (!acl?.stdout.split('\n').some((l) => new RegExp(`^user:${uid}:..x`).test(l))) {
    const set = await run('setfacl', ['-m', `u:${uid}:x`, dir]).catch(() => undefined);
    if (set?.exitCode !== 0) {
      throw new DomainError(
        'dependency_failed',
        `container root (host uid ${uid}) cannot reach ${target}: ${dir} is closed to others and ` +
          `setfacl failed (${set?.stderr.trim() || 'not installed'}); apt-get install acl, or chmod o+x ${dir}`,
      );
    }
  }
  reachable.add(`${uid}:${dir}`);
}

/** Directories this process has seen the container root able to search (`uid:dir`), by mode or by its ACL. */
const reachable = new Set<string>();
