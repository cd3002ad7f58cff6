import { describe, expect, it } from 'vitest';
import {
  macFor,
  MANAGED_MARKER,
  renderConfig,
  renderEnvFile,
  shellQuote,
} from '../src/compute/lxc/config.ts';
import { firstFree, parseSubnet } from '../src/compute/shared/subnet.ts';

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
