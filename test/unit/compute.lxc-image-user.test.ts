import { describe, expect, it } from 'vitest';
import { imageRun, initUserLines, renderConfig } from '../../src/compute/lxc/config.ts';
import { resolveImageUser, ROOT_USER } from '../../src/compute/lxc/image-user.ts';

/** An image's USER as the lxc driver resolves it and writes it into the container's config, by value. */
const files = {
  passwd: [
    'root:x:0:0:root:/root:/bin/sh',
    'app:x:1000:1000:App:/home/app:/bin/sh',
    'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin',
    'broken line',
    '',
  ].join('\n'),
  group: ['root:x:0:', 'app:x:1000:', 'media:x:2001:app,www-data', 'video:x:44:app', 'staff:x:50:'].join(
    '\n',
  ),
};

describe("an image's USER", () => {
  it('is root when the image names none', () => {
    expect(resolveImageUser('', files)).toEqual(ROOT_USER);
  });

  it('resolves a name from /etc/passwd, and a group from /etc/group', () => {
    expect(resolveImageUser('app', files)).toEqual({
      uid: 1000,
      gid: 1000,
      home: '/home/app',
    });
    expect(resolveImageUser('www-data:staff', files)).toEqual({
      uid: 33,
      gid: 50,
      home: '/var/www',
    });
  });

  it('takes numbers as they are: a uid without an entry runs with gid 0 and HOME /', () => {
    expect(resolveImageUser('4321', files)).toEqual({ uid: 4321, gid: 0, home: '/' });
    expect(resolveImageUser('4321:4322', files)).toEqual({ uid: 4321, gid: 4322, home: '/' });
    // A uid that has an entry gets its group and home, as runc does.
    expect(resolveImageUser('1000', files)).toEqual({
      uid: 1000,
      gid: 1000,
      home: '/home/app',
    });
  });

  it('refuses a user or group the image does not have, an id outside the map, and nonsense', () => {
    expect(() => resolveImageUser('ghost', files)).toThrow("USER ghost is not in the image's /etc/passwd");
    expect(() => resolveImageUser('app:ghosts', files)).toThrow(
      "group ghosts of USER app:ghosts is not in the image's /etc/group",
    );
    expect(() => resolveImageUser('70000', files)).toThrow(
      "USER 70000: uid 70000 is outside the container's id map (0-65535)",
    );
    expect(() => resolveImageUser('a:b:c', files)).toThrow('is not name, uid, name:group or uid:gid');
    expect(() => resolveImageUser('app', { passwd: '', group: '' })).toThrow('not in the image');
  });

  it('becomes lxc.init.uid/gid in the managed block, and nothing for root', () => {
    expect(initUserLines({ uid: 1000, gid: 1000 })).toEqual(['lxc.init.uid = 1000', 'lxc.init.gid = 1000']);
    expect(initUserLines({ uid: 0, gid: 0 })).toEqual([]);
    expect(initUserLines(undefined)).toEqual([]);
    const common = {
      name: 'c1',
      bridge: 'br0',
      ip: '10.0.0.2',
      prefix: 24,
      gateway: '10.0.0.1',
      resources: { memoryMb: 64, cores: 1, diskGb: 1 },
      aiqsoDir: '/var/lib/lxc/c1/aiqso',
      cgroup: 'v2' as const,
      isolation: {
        idmap: { uid: { start: 100000, size: 65536 }, gid: { start: 100000, size: 65536 } },
        security: { apparmor: { enabled: false, why: 'test' }, seccomp: { enabled: false, why: 'test' } },
        vethPair: 'vethc1',
      },
    } as unknown as Parameters<typeof renderConfig>[1];
    const once = renderConfig('lxc.rootfs.path = dir:/x\n', {
      ...common,
      initUser: { uid: 7, gid: 8 },
    });
    expect(once).toContain('lxc.init.uid = 7\nlxc.init.gid = 8\n');
    // Rendered again without a USER (a new image), the old keys are gone, not kept above the block.
    const again = renderConfig(once, common);
    expect(again).not.toMatch(/lxc\.init\.(uid|gid)/);
  });

  it("gives the workload the user's HOME unless the image or the service sets one", () => {
    const image = { entrypoint: ['/bin/app'], cmd: [], env: [], workdir: '/' };
    expect(imageRun(image, {}, {}, { home: '/home/app' }).env.HOME).toBe('/home/app');
    expect(imageRun({ ...image, env: ['HOME=/data'] }, {}, {}, { home: '/home/app' }).env.HOME).toBe('/data');
    expect(imageRun(image, {}, { HOME: '/srv' }, { home: '/home/app' }).env.HOME).toBe('/srv');
    expect(imageRun(image, {}, {}).env.HOME).toBeUndefined();
  });
});
