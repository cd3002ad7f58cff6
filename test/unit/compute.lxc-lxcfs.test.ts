import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lxcfsDefines, lxcfsHost, onlyLxcfsHooks } from '../../src/compute/lxc/lxcfs.ts';

const LXCFS_CONF = [
  'lxc.hook.mount = /usr/share/lxcfs/lxc.mount.hook',
  'lxc.hook.post-stop = /usr/share/lxcfs/lxc.reboot.hook',
  '',
].join('\n');
const COMMON = ['lxc.cap.drop = sys_module', 'lxc.hook.clone = /usr/share/lxc/hooks/clonehostname', ''].join(
  '\n',
);
const CLEARED = ['-s', 'lxc.hook.mount=', '-s', 'lxc.hook.post-stop='];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-lxcfs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** LXC's config directory as the lxc and lxcfs packages lay it out, with `extra` files in common.conf.d. */
async function configDir(name: string, extra: Record<string, string> = {}): Promise<string> {
  const root = path.join(dir, name);
  await mkdir(path.join(root, 'common.conf.d'), { recursive: true });
  await writeFile(path.join(root, 'common.conf'), COMMON);
  await writeFile(path.join(root, 'common.conf.d', '00-lxcfs.conf'), LXCFS_CONF);
  await writeFile(path.join(root, 'common.conf.d', 'README'), 'lxc.hook.mount = /not/a/conf/file\n');
  for (const [file, text] of Object.entries(extra))
    await writeFile(path.join(root, 'common.conf.d', file), text);
  return root;
}

describe("lxcfs's hooks on containers of the driver's own templates", () => {
  it('counts only mount and post-stop hooks, and only those outside /usr/share/lxcfs', () => {
    expect(onlyLxcfsHooks([COMMON, LXCFS_CONF])).toBe(true);
    // A clone hook is not cleared by these defines, so it does not count; nor does an empty value.
    expect(onlyLxcfsHooks([LXCFS_CONF, 'lxc.hook.clone = /opt/mine', 'lxc.hook.post-stop =  '])).toBe(true);
    // Nothing of lxcfs's: nothing to clear.
    expect(onlyLxcfsHooks([COMMON])).toBe(false);
    expect(onlyLxcfsHooks([LXCFS_CONF, 'lxc.hook.mount = /opt/site/hook'])).toBe(false);
    expect(onlyLxcfsHooks(['  lxc.hook.post-stop=/usr/local/bin/notify'])).toBe(false);
  });

  it('clears both lists where lxcfs does not serve, for the driver’s own templates only', async () => {
    const serves = path.join(dir, 'serving-proc');
    const host = lxcfsHost(await configDir('plain'), serves);
    expect(host.serving()).toBe(false);
    expect(lxcfsDefines(host, true)).toEqual(CLEARED);
    // A container cloned from an operator's template keeps whatever hooks it has.
    expect(lxcfsDefines(host, false)).toEqual([]);
    // lxcfs started later: the next start gets its views.
    await mkdir(serves);
    expect(host.serving()).toBe(true);
    expect(lxcfsDefines(host, true)).toEqual([]);
  });

  it("keeps every hook when the common config has one of an operator's beside lxcfs's", async () => {
    const host = lxcfsHost(
      await configDir('operator', { '10-site.conf': 'lxc.hook.post-stop = /usr/local/sbin/after-stop\n' }),
      path.join(dir, 'absent'),
    );
    expect(host.onlyLxcfsHooks()).toBe(false);
    expect(lxcfsDefines(host, true)).toEqual([]);
  });

  it('clears nothing on a host without lxcfs installed (no common.conf.d)', () => {
    const host = lxcfsHost(path.join(dir, 'no-such-dir'), path.join(dir, 'absent'));
    expect(host.onlyLxcfsHooks()).toBe(false);
    expect(lxcfsDefines(host, true)).toEqual([]);
  });
});
