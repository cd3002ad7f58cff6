import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { chmod, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { idmapLines, shiftTree, type IdMap } from './idmap.ts';
import { securityLines, type HostSecurity } from './security.ts';

/**
 * The base template every app container is cloned from. Instead of
 * debootstrapping a distribution (74 s from Debian's mirror on the development host),
 * the rootfs is a skeleton whose /usr is the host's, bind-mounted read-only:
 * the host's Node, libc and sh, no network needed, built in milliseconds.
 * Bump BASE_VERSION when the layout changes; a new version builds beside the old.
 * Version 2: owned by the unprivileged id range (version 1 was root's).
 * Version 3: /etc/localtime. Without it, the first date an app formatted made
 * ICU search every file of /usr/share/zoneinfo for the zone (about 5,500
 * opens, a third of a dashboard's start in a container).
 */
export const BASE_VERSION = 3;
export const BASE_NAME = `aiqsobase${BASE_VERSION}`;

export interface BaseTemplate {
  name: string;
  /** Path of `node` inside the container. */
  node: string;
  /** The rootfs clones overlay. */
  rootfs: string;
  /** Host directory holding Node when it lives outside /usr (bind-mounted too). */
  nodeMount?: string;
}

const COMMON_CONF = '/usr/share/lxc/config/common.conf';

/** Where the host's Node appears inside containers. */
function nodeInside(): { node: string; mount?: string } {
  const exe = process.execPath;
  if (exe.startsWith('/usr/')) return { node: exe };
  // Node installed outside /usr (nvm, /opt): mount its prefix too.
  const prefix = path.dirname(path.dirname(exe));
  return { node: `/opt/aiqso-node/bin/${path.basename(exe)}`, mount: prefix };
}

export function renderBaseConfig(
  lxcPath: string,
  nodeMount: string | undefined,
  idmap: IdMap,
  security: HostSecurity,
): string {
  return [
    `lxc.rootfs.path = dir:${path.join(lxcPath, BASE_NAME, 'rootfs')}`,
    `lxc.uts.name = ${BASE_NAME}`,
    ...(existsSync(COMMON_CONF) ? [`lxc.include = ${COMMON_CONF}`] : []),
    ...idmapLines(idmap),
    ...securityLines(security),
    'lxc.mount.auto = proc:mixed sys:ro cgroup:mixed',
    'lxc.mount.entry = /usr usr none ro,bind 0 0',
    ...(nodeMount ? [`lxc.mount.entry = ${nodeMount} opt/aiqso-node none ro,bind,create=dir 0 0`] : []),
    'lxc.init.cmd = /bin/sh /aiqso/init.sh',
    'lxc.net.0.type = empty',
    '',
  ].join('\n');
}

async function buildRootfs(rootfs: string): Promise<void> {
  for (const dir of [
    'usr',
    'etc',
    'proc',
    'sys',
    'dev',
    'tmp',
    'run',
    'root',
    'app',
    'aiqso',
    'opt',
    // Where the app's init writes its log (it makes it itself in a base built before it was here).
    'var/log/aiqso',
  ]) {
    await mkdir(path.join(rootfs, dir), { recursive: true });
  }
  await chmod(path.join(rootfs, 'tmp'), 0o1777);
  // Merged-/usr layout, so /bin/sh and the loader resolve through the bind-mounted /usr.
  for (const [link, target] of [
    ['bin', 'usr/bin'],
    ['sbin', 'usr/sbin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
  ] as const) {
    await symlink(target, path.join(rootfs, link));
  }
  const etc = path.join(rootfs, 'etc');
  await writeFile(
    path.join(etc, 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  );
  await writeFile(path.join(etc, 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  await writeFile(path.join(etc, 'hosts'), '127.0.0.1 localhost\n');
  await writeFile(path.join(etc, 'nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n');
  const zone = hostZoneFile();
  if (zone) await symlink(zone, path.join(etc, 'localtime'));
}

/**
 * The host's time zone as containers reach it, through the bind-mounted /usr
 * (a host whose zone file lies elsewhere gives UTC), or none without tzdata.
 */
function hostZoneFile(): string | undefined {
  // existsSync follows the link: false for a missing or dangling /etc/localtime.
  const own = existsSync('/etc/localtime') ? realpathSync('/etc/localtime') : undefined;
  if (own?.startsWith('/usr/share/zoneinfo/')) return own;
  return existsSync('/usr/share/zoneinfo/Etc/UTC') ? '/usr/share/zoneinfo/Etc/UTC' : undefined;
}

/**
 * Build the base template in `lxcPath` unless it is there; safe to race
 * (atomic rename). Its rootfs belongs to the mapped range: root inside owns it.
 */
export async function ensureBaseTemplate(
  lxcPath: string,
  idmap: IdMap,
  security: HostSecurity,
): Promise<BaseTemplate> {
  const { node, mount } = nodeInside();
  const final = path.join(lxcPath, BASE_NAME);
  const base = { name: BASE_NAME, node, rootfs: path.join(final, 'rootfs'), nodeMount: mount };
  if (existsSync(path.join(final, 'config'))) return base;
  await mkdir(lxcPath, { recursive: true });
  const tmp = path.join(lxcPath, `.${BASE_NAME}.${randomBytes(4).toString('hex')}`);
  try {
    await buildRootfs(path.join(tmp, 'rootfs'));
    await shiftTree(path.join(tmp, 'rootfs'), idmap);
    await writeFile(path.join(tmp, 'config'), renderBaseConfig(lxcPath, mount, idmap, security));
    // A directory without config is a crashed build; a complete one (another builder's) is kept.
    if (existsSync(final) && !existsSync(path.join(final, 'config')))
      await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
  } catch (err) {
    if (!existsSync(path.join(final, 'config'))) throw err;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return base;
}
