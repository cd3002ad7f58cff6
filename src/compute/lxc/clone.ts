import { chown, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { rootfsLayers } from './convert.ts';

/**
 * An overlay snapshot clone of `source`, laid out as `lxc-copy -s -B overlayfs`
 * lays it out: `<name>/rootfs` (the mount point), `<name>/overlay/{delta,work}`
 * (the clone's own layer, empty), all owned by container root, and the
 * source's config with `lxc.rootfs.path = overlay:<source rootfs>:<delta>`
 * written last (a directory without config is an interrupted clone).
 *
 * `lxc-copy` does the same in an exec of its own, runs the `clonehostname`
 * hook (which mounts the new rootfs to rewrite /etc/hostname and /etc/hosts,
 * copying both up although the template names no hostname there; the
 * container's hostname is `lxc.uts.name`), and records the clone in the
 * source's `lxc_snapshots` (a read-modify-write of one file, so clones of one
 * template had to be made one at a time). None of it is needed for a template
 * the driver made itself, and fifty signups at once made fifty clones in a row.
 *
 * Only for a source whose rootfs is a plain directory (the base and image
 * templates); returns false for any other, which `lxc-copy` clones instead.
 */
export async function cloneOverlay(
  lxcPath: string,
  source: string,
  name: string,
  owner: readonly [number, number],
): Promise<boolean> {
  const config = await readFile(path.join(lxcPath, source, 'config'), 'utf8').catch(() => undefined);
  if (config === undefined) return false;
  // A plain directory: `dir:/…` or `/…` (rootfsLayers strips `dir:`; `lvm:`, `zfs:` and the like stay).
  const layers = rootfsLayers(config);
  if (!layers || layers.lower !== undefined || !layers.upper.startsWith('/')) return false;
  if (!(await stat(layers.upper).catch(() => undefined))?.isDirectory()) return false;
  const dir = path.join(lxcPath, name);
  // The clone's own layer and overlayfs's work directory, where lxc-copy -s puts them.
  const upper = path.join(dir, 'overlay', 'delta');
  const overlay = path.dirname(upper);
  await mkdir(dir, { mode: 0o770 });
  await Promise.all([mkdir(path.join(dir, 'rootfs'), { mode: 0o755 }), mkdir(overlay, { mode: 0o755 })]);
  await Promise.all([mkdir(upper, { mode: 0o755 }), mkdir(path.join(overlay, 'work'), { mode: 0o755 })]);
  const made = [dir, path.join(dir, 'rootfs'), overlay, upper, path.join(overlay, 'work')];
  await Promise.all(made.map((d) => chown(d, ...owner)));
  const rootfs = `lxc.rootfs.path = overlay:${layers.upper}:${upper}`;
  const text = config.replace(/^\s*lxc\.rootfs\.path\s*=.*$/m, rootfs);
  const file = path.join(dir, 'config');
  await writeFile(`${file}.tmp`, text, { mode: 0o640 });
  await rename(`${file}.tmp`, file);
  return true;
}
