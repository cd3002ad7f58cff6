import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloneOverlay } from '../../src/compute/lxc/clone.ts';

let lxcPath: string;
const owner = [process.getuid!(), process.getgid!()] as const;

beforeAll(async () => {
  lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-clone-'));
});
afterAll(async () => {
  await rm(lxcPath, { recursive: true, force: true });
});

async function template(name: string, rootfsLine: string): Promise<void> {
  await mkdir(path.join(lxcPath, name, 'rootfs', 'etc'), { recursive: true });
  const config = [
    rootfsLine,
    `lxc.uts.name = ${name}`,
    'lxc.include = /usr/share/lxc/config/common.conf',
    'lxc.init.cmd = /bin/sh /aiqso/init.sh',
    '',
  ].join('\n');
  await writeFile(path.join(lxcPath, name, 'config'), config);
}

describe('overlay clones made without lxc-copy', () => {
  it('lays a clone out as lxc-copy -s -B overlayfs does, over a template whose rootfs is a directory', async () => {
    await template('base', `lxc.rootfs.path = dir:${path.join(lxcPath, 'base', 'rootfs')}`);
    expect(await cloneOverlay(lxcPath, 'base', 'c1', owner)).toBe(true);
    const config = await readFile(path.join(lxcPath, 'c1', 'config'), 'utf8');
    const upper = path.join(lxcPath, 'c1', 'overlay', 'delta');
    expect(config).toContain(`lxc.rootfs.path = overlay:${path.join(lxcPath, 'base', 'rootfs')}:${upper}\n`);
    // Everything else of the template's config is kept, in its place.
    expect(config.split('\n').slice(1)).toEqual(
      (await readFile(path.join(lxcPath, 'base', 'config'), 'utf8')).split('\n').slice(1),
    );
    expect((await readdir(path.join(lxcPath, 'c1'))).sort()).toEqual(['config', 'overlay', 'rootfs']);
    expect(await readdir(upper)).toEqual([]);
    expect((await readdir(path.join(lxcPath, 'c1', 'overlay'))).sort()).toEqual(['delta', 'work']);
    for (const dir of ['.', 'rootfs', 'overlay', 'overlay/delta', 'overlay/work']) {
      const st = await stat(path.join(lxcPath, 'c1', dir));
      expect([st.uid, st.gid], dir).toEqual([...owner]);
    }
    expect((await stat(path.join(lxcPath, 'c1', 'config'))).mode & 0o777).toBe(0o640);
    // Nothing is written in the template: clones of it are made side by side.
    expect((await readdir(path.join(lxcPath, 'base'))).sort()).toEqual(['config', 'rootfs']);
    const many = await Promise.all(
      Array.from({ length: 10 }, (_, i) => cloneOverlay(lxcPath, 'base', `m${i}`, owner)),
    );
    expect(many.every(Boolean)).toBe(true);
  });

  it('leaves any other template to lxc-copy, and refuses to clone over an existing directory', async () => {
    await template('layered', `lxc.rootfs.path = overlay:${path.join(lxcPath, 'base', 'rootfs')}:/x/delta`);
    expect(await cloneOverlay(lxcPath, 'layered', 'c2', owner)).toBe(false);
    await template('lvm', 'lxc.rootfs.path = lvm:/dev/vg/base');
    expect(await cloneOverlay(lxcPath, 'lvm', 'c3', owner)).toBe(false);
    await template('gone', `lxc.rootfs.path = dir:${path.join(lxcPath, 'nowhere')}`);
    expect(await cloneOverlay(lxcPath, 'gone', 'c4', owner)).toBe(false);
    expect(await cloneOverlay(lxcPath, 'missing', 'c5', owner)).toBe(false);
    for (const name of ['c2', 'c3', 'c4', 'c5'])
      await expect(stat(path.join(lxcPath, name))).rejects.toThrow(/ENOENT/);
    // A crash mid-clone leaves a directory without config; the driver removes it before cloning again.
    await expect(cloneOverlay(lxcPath, 'base', 'c1', owner)).rejects.toThrow(/EEXIST/);
  });
});
