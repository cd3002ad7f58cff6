import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { MAP_SIZE } from './idmap.ts';

/**
 * The user an image's workload runs as, from its config's `User` (Docker's
 * `USER`): `name`, `uid`, `name:group` or `uid:gid`, names looked up in the
 * image's own /etc/passwd and /etc/group as runc does. A numeric uid without
 * a passwd entry runs with gid 0 and HOME /; a name that is not there is an
 * error. Supplementary groups are not resolved: LXC applies `lxc.init.groups`
 * only to privileged containers, and these are unprivileged, so the workload
 * runs with none (docs/services.md).
 */
export interface ImageUser {
  uid: number;
  gid: number;
  home: string;
}

export const ROOT_USER: ImageUser = { uid: 0, gid: 0, home: '/root' };

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
}

const NUMERIC = /^\d+$/;

function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || !NUMERIC.test(f[2]!) || !NUMERIC.test(f[3]!)) continue;
    out.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' });
  }
  return out;
}

function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !NUMERIC.test(f[2]!)) continue;
    out.push({ name: f[0]!, gid: Number(f[2]) });
  }
  return out;
}

/** Resolve `user` against the image's passwd and group files (their text; empty when absent). Pure. */
export function resolveImageUser(user: string, files: { passwd: string; group: string }): ImageUser {
  const spec = user.trim();
  if (spec === '') return ROOT_USER;
  const [who = '', grp, extra] = spec.split(':');
  if (extra !== undefined || who === '' || grp === '')
    throw new Error(`USER ${JSON.stringify(user)} is not name, uid, name:group or uid:gid`);
  const passwd = parsePasswd(files.passwd);
  const groups = parseGroup(files.group);
  const entry = NUMERIC.test(who)
    ? passwd.find((p) => p.uid === Number(who))
    : passwd.find((p) => p.name === who);
  if (!entry && !NUMERIC.test(who)) throw new Error(`USER ${who} is not in the image's /etc/passwd`);
  const uid = entry?.uid ?? Number(who);
  let gid = entry?.gid ?? 0;
  if (grp !== undefined) {
    const g = NUMERIC.test(grp) ? { gid: Number(grp) } : groups.find((x) => x.name === grp);
    if (!g) throw new Error(`group ${grp} of USER ${spec} is not in the image's /etc/group`);
    gid = g.gid;
  }
  for (const [what, id] of [
    ['uid', uid],
    ['gid', gid],
  ] as const) {
    if (id >= MAP_SIZE)
      throw new Error(`USER ${spec}: ${what} ${id} is outside the container's id map (0-${MAP_SIZE - 1})`);
  }
  return { uid, gid, home: entry?.home ?? '/' };
}

/**
 * An image's /etc/passwd or /etc/group as its rootfs holds it: read only when
 * /etc is a directory and the file a regular file of that rootfs (a symlink
 * could point out of it, at the host's own files); '' otherwise.
 */
async function rootfsFile(rootfs: string, name: string): Promise<string> {
  const etc = await lstat(path.join(rootfs, 'etc')).catch(() => undefined);
  if (!etc?.isDirectory()) return '';
  const file = path.join(rootfs, 'etc', name);
  const st = await lstat(file).catch(() => undefined);
  if (!st?.isFile()) return '';
  return readFile(file, 'utf8');
}

/** The user the image's workload runs as, read from its unpacked rootfs. */
export async function readImageUser(rootfs: string, user: string): Promise<ImageUser> {
  if (user.trim() === '') return ROOT_USER;
  return resolveImageUser(user, {
    passwd: await rootfsFile(rootfs, 'passwd'),
    group: await rootfsFile(rootfs, 'group'),
  });
}
