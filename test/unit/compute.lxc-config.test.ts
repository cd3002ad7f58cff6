import { describe, expect, it } from 'vitest';
import {
  convertConfig,
  isUnprivileged,
  macFor,
  MANAGED_MARKER,
  renderConfig,
  renderEnvFile,
  shellQuote,
  type Isolation,
} from '../../src/compute/lxc/config.ts';
import { securityLines, type HostSecurity } from '../../src/compute/lxc/security.ts';
import { firstFree, parseSubnet } from '../../src/compute/shared/subnet.ts';

const noAppArmor: HostSecurity = {
  apparmor: { enabled: false, why: 'off' },
  seccomp: { enabled: true, profile: '/usr/share/lxc/config/common.seccomp', why: 'on' },
};
const isolation: Isolation = {
  idmap: { uid: { start: 100000, size: 65536 }, gid: { start: 200000, size: 65536 } },
  security: noAppArmor,
  vethPair: 'a1b2c3d4e5f6a7b',
};

const managed = {
  name: 'aiqso-x-dashboard',
  bridge: 'aiqsobr0',
  ip: '10.10.10.7',
  prefix: 24,
  gateway: '10.10.10.1',
  resources: { memoryMb: 256, cores: 1.5, diskGb: 4 },
  aiqsoDir: '/var/lib/lxc/aiqso-x-dashboard/aiqso',
  appDir: '/srv/app',
  appModules: '/srv/platform/node_modules',
  cgroup: 'v1' as const,
  isolation,
};

describe('lxc config rendering', () => {
  const cloned = [
    'lxc.rootfs.path = overlay:/var/lib/lxc/aiqsobase1/rootfs:/var/lib/lxc/aiqso-x-dashboard/overlay/delta',
    'lxc.uts.name = aiqsobase1',
    'lxc.net.0.type = empty',
    'lxc.mount.entry = /usr usr none ro,bind 0 0',
  ].join('\n');

  it('replaces the template network and name with the managed block, keeping the rest', () => {
    const text = renderConfig(cloned, managed);
    expect(text).toContain('lxc.rootfs.path = overlay:');
    expect(text).toContain('lxc.mount.entry = /usr usr none ro,bind 0 0');
    expect(text).not.toContain('lxc.net.0.type = empty');
    expect(text).not.toContain('lxc.uts.name = aiqsobase1');
    expect(text).toContain('lxc.net.0.ipv4.address = 10.10.10.7/24');
    expect(text).toContain('lxc.net.0.ipv4.gateway = 10.10.10.1');
    expect(text).toContain('lxc.apparmor.profile = unconfined');
    expect(text).toContain('lxc.idmap = u 0 100000 65536');
    expect(text).toContain('lxc.idmap = g 0 200000 65536');
    expect(text).toContain('lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp');
    // No host pseudo-terminals per container: they ran out at about 660 containers.
    expect(text).toContain('lxc.tty.max = 0\nlxc.console.path = none\n');
    expect(text).toContain('lxc.net.0.type = veth\nlxc.net.0.veth.pair = a1b2c3d4e5f6a7b\n');
    expect(isUnprivileged(text)).toBe(true);
    expect(isUnprivileged(cloned)).toBe(false);
    expect(text).toContain('lxc.cgroup.memory.limit_in_bytes = 268435456');
    expect(text).toContain('lxc.cgroup.cpu.cfs_quota_us = 150000');
    expect(text).toContain('lxc.mount.entry = /srv/app app none ro,bind,create=dir 0 0');
    expect(text).toContain(
      'lxc.mount.entry = /srv/platform/node_modules node_modules none ro,bind,create=dir 0 0',
    );
  });

  it('is stable when rendered again and switches keys on cgroup v2', () => {
    const once = renderConfig(cloned, managed);
    expect(renderConfig(once, managed)).toBe(once);
    const v2 = renderConfig(once, { ...managed, cgroup: 'v2' });
    expect(v2).toContain('lxc.cgroup2.memory.max = 268435456');
    expect(v2).toContain('lxc.cgroup2.cpu.max = 150000 100000');
    expect(v2.split(MANAGED_MARKER)).toHaveLength(2);
  });

  it('confines with AppArmor where the host has it, and without seccomp where it has none', () => {
    expect(securityLines(noAppArmor)).toEqual([
      'lxc.apparmor.profile = unconfined',
      'lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp',
    ]);
    expect(
      securityLines({
        apparmor: { enabled: true, why: 'on' },
        seccomp: { enabled: false, why: 'no filter mode' },
      }),
    ).toEqual(['lxc.apparmor.profile = generated', 'lxc.apparmor.allow_nesting = 0']);
  });

  it('converts a privileged config: id map and walls in the managed block, the rest kept', () => {
    const old = [
      'lxc.rootfs.path = overlay:/var/lib/lxc/aiqsobase1/rootfs:/var/lib/lxc/c/overlay/delta',
      'lxc.include = /usr/share/lxc/config/common.conf',
      'lxc.mount.entry = /usr usr none ro,bind 0 0',
      MANAGED_MARKER,
      'lxc.uts.name = c',
      'lxc.apparmor.profile = unconfined',
      'lxc.net.0.type = veth',
      'lxc.cgroup.memory.limit_in_bytes = 268435456',
      '',
    ].join('\n');
    const text = convertConfig(old, isolation);
    expect(text.split('\n').slice(0, 4)).toEqual([
      'lxc.rootfs.path = overlay:/var/lib/lxc/aiqsobase1/rootfs:/var/lib/lxc/c/overlay/delta',
      'lxc.include = /usr/share/lxc/config/common.conf',
      'lxc.mount.entry = /usr usr none ro,bind 0 0',
      MANAGED_MARKER,
    ]);
    expect(text.match(/apparmor\.profile/g)).toHaveLength(1);
    expect(text).toContain('lxc.idmap = u 0 100000 65536');
    // LXC takes veth.pair only after the interface's type.
    expect(text).toContain('lxc.net.0.type = veth\nlxc.net.0.veth.pair = a1b2c3d4e5f6a7b\n');
    expect(text).toContain('lxc.cgroup.memory.limit_in_bytes = 268435456');
    expect(isUnprivileged(text)).toBe(true);
    // Converting again changes nothing; a later ensure renders the same keys once.
    expect(convertConfig(text, isolation)).toBe(text);
    const rendered = renderConfig(text, managed);
    expect(rendered.match(/lxc\.idmap = u/g)).toHaveLength(1);
    expect(rendered.match(/veth\.pair/g)).toHaveLength(1);
  });

  it('quotes environment values so no value can run a command', () => {
    expect(shellQuote(`it's $(rm -rf /)`)).toBe(`'it'\\''s $(rm -rf /)'`);
    expect(renderEnvFile({ A: 'x y' })).toBe(`export A='x y'\n`);
    expect(() => renderEnvFile({ 'A;B': '1' })).toThrow();
  });

  it('gives each name a stable locally administered MAC', () => {
    expect(macFor('a')).toBe(macFor('a'));
    expect(macFor('a')).not.toBe(macFor('b'));
    expect(macFor('a')).toMatch(/^02(:[0-9a-f]{2}){5}$/);
  });
});

describe('subnets', () => {
  it('keeps .1 for the host and hands out .2 to broadcast−1', () => {
    const s = parseSubnet('10.10.10.77/24');
    expect(s).toMatchObject({ cidr: '10.10.10.0/24', gateway: '10.10.10.1', prefix: 24 });
    expect(firstFree(s, ['10.10.10.2', '10.10.10.3'])).toBe('10.10.10.4');
    expect(firstFree(parseSubnet('10.0.0.0/30'), ['10.0.0.2'])).toBeUndefined();
  });
});
