import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerInfo, ImageWorkload } from '../src/core/compute.ts';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { CLOSED_PORT } from './support/urls.ts';
import { sleep } from '../src/compute/shared/run.ts';
import { createLogger } from '../src/observability/logger.ts';
import { computeContract, specFor, type ContractHarness } from './support/compute-contract.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import {
  registrySkip,
  startRegistry,
  webImage,
  type TestImage,
  type TestRegistry,
} from './support/registry.ts';
import { readIdMap } from '../src/compute/lxc/idmap.ts';
import { runCli } from './support/cli.ts';
import { missingPart } from './support/strict.ts';

/**
 * The lxc driver runs OCI images: pulled with skopeo from a real registry
 * (Debian's docker-registry on 127.0.0.1) into the shared cache, unpacked with
 * umoci into one template per digest, cloned per container. The compute
 * contract holds for image containers as for apps; concurrent first deploys
 * of one image pull it once; init commands run once per deployment; volumes
 * are seeded from the image; and a missing image, a refusing registry, an
 * image for another architecture or an entrypoint that exits say so.
 */
const skip =
  missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root') ||
  registrySkip();
const { bridge, subnet } = privateNetwork('i');
const run = promisify(execFile);
let db: TestDatabase;
let lxcPath: string;
let registry: TestRegistry;
let webRef: string;

beforeAll(async () => {
  if (skip) return;
  db = await createTestDatabase({ max: 10 });
  lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-lxcimg-'));
  registry = await startRegistry();
  webRef = await registry.push('test/web', '1', webImage(3000));
}, 120_000);

afterAll(async () => {
  if (skip) return;
  await removeBridge(bridge);
  await rm(lxcPath, { recursive: true, force: true });
  await registry.stop();
  await db.drop();
});

const open = () =>
  Promise.resolve(
    new LxcDriver({
      db: db.db,
      log: createLogger('silent'),
      lxcPath,
      bridge,
      subnet,
      registriesConf: registry.registriesConf,
    }),
  );

const INIT = [['/bin/sh', '-c', 'echo ran >> /data/init-runs']];
const imageWorkload = (ref = webRef, extra: Partial<ImageWorkload> = {}): ImageWorkload => ({
  kind: 'image',
  image: ref,
  volumes: ['/data'],
  init: INIT,
  ...extra,
});

interface WebAnswer {
  name: string;
  pid: number;
  packages: boolean;
  initRuns: number;
  title: string;
}

async function fetchWeb(info: ContainerInfo, waitMs = 20_000): Promise<WebAnswer> {
  if (!info.endpoint) throw new Error(`${info.name} has no endpoint`);
  const url = `http://${info.endpoint.host}:${info.endpoint.port}/`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return (await res.json()) as WebAnswer;
      throw new Error(`status ${res.status}`);
    } catch (err) {
      if (Date.now() > deadline) {
        const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : '';
        throw new Error(`${url} did not answer: ${(err as Error).message} ${cause}`);
      }
      await sleep(50);
    }
  }
}

computeContract('lxc (image)', {
  skip: () => skip,
  open,
  workload: () => imageWorkload(),
  async crashMidEnsure(spec) {
    await mkdir(path.join(lxcPath, spec.name, 'overlay', 'delta'), { recursive: true });
  },
  http: (info) => fetchWeb(info),
  dataPath: '/root/marker.txt',
  hostProcesses: true,
  exec: true,
  enforces: ['memoryMb', 'cores'],
} satisfies ContractHarness);

describe('lxc driver: OCI images', { timeout: 180_000 }, () => {
  it('pulls an image once for concurrent first deploys, runs init once per deployment, seeds volumes', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const ref = await registry.push('test/shared', '1', webImage(3000));
    const driver = await open();
    const harness = { workload: () => imageWorkload(ref) } as ContractHarness;
    const specs = [0, 1, 2].map((i) => ({
      ...specFor(harness, `shared${i}`),
      env: { APP_NAME: `shared-${i}`, APP_TITLE: "it's `quoted` $HOME" },
    }));
    try {
      expect(await driver.images.cached(ref)).toBe(false);
      await Promise.all(specs.map((s) => driver.ensure(s)));
      // One pull from the registry: the layer was fetched once for three containers.
      expect(driver.images.pulls).toBe(1);
      expect(await registry.requests(/^GET \/v2\/test\/shared\/blobs\//)).toHaveLength(2); // config + layer
      expect(await driver.images.cached(ref)).toBe(true);
      for (const s of specs) {
        const answer = await fetchWeb(await driver.start(s.name));
        expect(answer).toMatchObject({
          name: s.env.APP_NAME,
          packages: true,
          initRuns: 1,
          title: "it's `quoted` $HOME",
        });
      }
      // A restart does not run init again; the volume lives on the container's data directory.
      const again = await fetchWeb(await driver.restart(specs[0]!.name));
      expect(again.initRuns).toBe(1);
      const volumes = path.join(lxcPath, specs[0]!.name, 'volumes');
      const [volume] = await import('node:fs/promises').then((fs) => fs.readdir(volumes));
      expect(await readFile(path.join(volumes, volume!, 'init-runs'), 'utf8')).toBe('ran\n');
      expect(await readFile(path.join(volumes, volume!, 'seed.txt'), 'utf8')).toBe('from the image\n');
      // A later deploy of the same reference does not contact the registry.
      const before = (await registry.requests(/./)).length;
      const later = { ...specFor(harness, 'shared-later'), env: { APP_NAME: 'later' } };
      specs.push(later as (typeof specs)[number]);
      expect((await fetchWeb(await driver.start((await driver.ensure(later)).name))).name).toBe('later');
      expect((await registry.requests(/./)).length).toBe(before);
      expect(driver.images.pulls).toBe(1);
      // `aiqso templates list` shows the cached image, its template and sizes.
      const listed = await runCli(['templates', 'list', '--json'], {
        AIQSO_LXC_PATH: lxcPath,
        AIQSO_DATA_DIR: lxcPath,
      });
      expect(listed.code, listed.stderr).toBe(0);
      const cache = JSON.parse(listed.stdout) as {
        images: { image: string; digest: string; template: string; templateBytes: number }[];
        layoutBytes: number;
      };
      const shared = cache.images.find((i) => i.image === ref);
      expect(shared).toMatchObject({ digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as unknown });
      expect(shared!.template).toBe(`aiqsoimg-${shared!.digest.slice(7, 31)}`);
      expect(shared!.templateBytes).toBeGreaterThan(1_000_000); // busybox is in it
      expect(cache.layoutBytes).toBeGreaterThan(500_000);
      // A backup carries the volumes: restored elsewhere, init's record is there and init does not rerun.
      const archive = path.join(lxcPath, 'shared0.tgz');
      await driver.stop(specs[0]!.name);
      await driver.exportTo(specs[0]!.name, archive);
      const restored = { ...specFor(harness, 'restored'), env: { APP_NAME: 'restored' } };
      specs.push(restored as (typeof specs)[number]);
      await driver.importFrom(restored, archive);
      expect(await fetchWeb(await driver.start(restored.name))).toMatchObject({
        name: 'restored',
        initRuns: 1,
      });
    } finally {
      for (const s of specs) await driver.destroy(s.name);
      await driver.close();
    }
  });

  it('says why an image cannot run, and creates nothing for it', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const driver = await open();
    const closed = CLOSED_PORT;
    const arm = await registry.push('test/arm', '1', webImage(3000, { architecture: 'arm64' }));
    const cases: [string, string, RegExp][] = [
      [
        'ghost',
        `${registry.host}/test/ghost:1`,
        /^image 127\.0\.0\.1:\d+\/test\/ghost:1 does not exist in 127\.0\.0\.1:\d+$/,
      ],
      ['refused', `127.0.0.1:${closed}/test/web:1`, /^registry 127\.0\.0\.1:\d+ refused the connection$/],
      ['arm', arm, /^image .*test\/arm:1 is built for linux\/arm64; this host runs linux\/amd64$/],
    ];
    try {
      for (const [role, ref, reason] of cases) {
        const s = specFor({ workload: () => imageWorkload(ref) } as ContractHarness, role);
        const err = (await driver.ensure(s).catch((e: unknown) => e)) as { code: string; message: string };
        expect(err).toMatchObject({ code: 'deploy_failed' });
        expect(err.message).toMatch(reason);
        expect(existsSync(path.join(lxcPath, s.name))).toBe(false);
        expect(await driver.pool.lookup(s.name)).toBeUndefined();
        expect(await driver.images.cached(ref)).toBe(false);
      }
    } finally {
      await driver.close();
    }
  });

  it('an entrypoint that exits at once, or a failing init command, stops the container with its last output', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const driver = await open();
    const quits = specFor(
      {
        workload: () =>
          imageWorkload(webRef, {
            entrypoint: ['/bin/sh', '-c', 'echo "missing setting: SITE_URL"; exit 3'],
          }),
      } as ContractHarness,
      'quits',
    );
    const badInit = specFor(
      {
        workload: () => imageWorkload(webRef, { init: [['/bin/sh', '-c', 'echo schema locked; exit 4']] }),
      } as ContractHarness,
      'badinit',
    );
    try {
      for (const [s, output] of [
        [quits, /missing setting: SITE_URL/],
        [
          badInit,
          /schema locked \| aiqso: init command failed \(4\): \/bin\/sh -c echo schema locked; exit 4/,
        ],
      ] as const) {
        await driver.ensure(s);
        await driver.start(s.name);
        let info = await driver.status(s.name);
        for (let i = 0; i < 100 && info.state === 'running'; i++) {
          await sleep(100);
          info = await driver.status(s.name);
        }
        expect(info.state).toBe('stopped');
        expect(info.lastOutput).toMatch(output);
      }
    } finally {
      await driver.destroy(quits.name);
      await driver.destroy(badInit.name);
      await driver.close();
    }
  });

  it("runs init and the workload as the image's USER: a name from its /etc/passwd, or uid:gid", async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const driver = await open();
    const userImage = (user: string): TestImage => ({
      files: {
        '/etc/passwd': { text: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n' },
        '/etc/group': { text: 'root:x:0:\napp:x:1000:\nmedia:x:2001:app\n' },
        '/www/cgi-bin/index.cgi': {
          mode: 0o755,
          text: [
            '#!/bin/sh',
            "printf 'Content-Type: application/json\\r\\n\\r\\n'",
            'echo "{\\"uid\\":$(id -u),\\"gid\\":$(id -g),\\"groups\\":\\"$(id -G)\\",\\"home\\":\\"$HOME\\",\\"init\\":\\"$(cat /tmp/init-ids)\\"}"',
            '',
          ].join('\n'),
        },
      },
      entrypoint: ['/bin/busybox', 'httpd'],
      cmd: ['-f', '-p', '3000', '-h', '/www'],
      workdir: '/www',
      user,
    });
    const cases = [
      // No supplementary groups (media lists app): LXC sets them only in privileged containers.
      { role: 'named', user: 'app', uid: 1000, gid: 1000, groups: '1000', home: '/home/app' },
      { role: 'numeric', user: '4321:4322', uid: 4321, gid: 4322, groups: '4322', home: '/' },
    ];
    const specs: ReturnType<typeof specFor>[] = [];
    const map = await readIdMap();
    try {
      for (const c of cases) {
        const ref = await registry.push(`test/user-${c.role}`, '1', userImage(c.user));
        const s = specFor(
          {
            workload: () =>
              imageWorkload(ref, { volumes: [], init: [['/bin/sh', '-c', 'id -u > /tmp/init-ids']] }),
          } as ContractHarness,
          c.role,
        );
        specs.push(s);
        await driver.ensure(s);
        const info = await driver.start(s.name);
        const answer = (await fetchWeb(info)) as unknown as Record<string, unknown>;
        // Inside: the workload (and the init command before it) ran as the USER, with its groups and home.
        expect(answer).toEqual({
          uid: c.uid,
          gid: c.gid,
          groups: c.groups,
          home: c.home,
          init: String(c.uid),
        });
        // On the host: PID 1 and the workload it started are that uid of the container's id range.
        const { stdout } = await run('lxc-info', ['-P', lxcPath, '-n', s.name, '-p', '-H']);
        const pid1 = Number(stdout.trim());
        const children = (await readFile(`/proc/${pid1}/task/${pid1}/children`, 'utf8'))
          .split(/\s+/)
          .filter(Boolean);
        expect(children.length).toBeGreaterThan(0);
        for (const pid of [String(pid1), ...children]) {
          const status = await readFile(`/proc/${pid}/status`, 'utf8');
          expect(status, `pid ${pid}`).toMatch(
            new RegExp(`^Uid:\\t${map!.uid.start + c.uid}\\t${map!.uid.start + c.uid}\\t`, 'm'),
          );
          expect(status, `pid ${pid}`).toMatch(new RegExp(`^Gid:\\t${map!.gid.start + c.gid}\\t`, 'm'));
        }
        // Its env file is the user's own, unreadable to anyone else on the host.
        const env = await stat(path.join(lxcPath, s.name, 'aiqso', 'env'));
        expect([env.uid, env.gid, env.mode & 0o777]).toEqual([
          map!.uid.start + c.uid,
          map!.gid.start + c.gid,
          0o600,
        ]);
        // A restart runs it as the USER again (init does not rerun; the log stays writable).
        expect(await fetchWeb(await driver.restart(s.name))).toMatchObject({ uid: c.uid });
      }
      // A USER the image does not have: refused with the reason, nothing made.
      const ghostRef = await registry.push('test/user-ghost', '1', userImage('ghost'));
      const ghost = specFor(
        { workload: () => imageWorkload(ghostRef, { volumes: [] }) } as ContractHarness,
        'ghost',
      );
      const err = (await driver.ensure(ghost).catch((e: unknown) => e)) as { code: string; message: string };
      expect(err, err.message).toMatchObject({ code: 'deploy_failed' });
      expect(err.message).toMatch(
        /^image 127\.0\.0\.1:\d+\/test\/user-ghost:1 runs as USER ghost, which is not in its \/etc\/passwd or \/etc\/group$/,
      );
      expect(await driver.images.cached(ghostRef)).toBe(false);
      expect(existsSync(path.join(lxcPath, ghost.name))).toBe(false);
    } finally {
      for (const s of specs) await driver.destroy(s.name);
      await driver.close();
    }
  });
});

describe('aiqso templates build', { timeout: 240_000 }, () => {
  const service = (key: string, image: string) =>
    [
      `key: ${key}`,
      `name: ${key}`,
      'description: A test-built image.',
      'kind: image',
      `image: ${image}`,
      'min_memory_mb: 64',
      'resources: { memory_mb: 128, cores: 1, disk_gb: 1 }',
      'port: 3000',
      'health: { path: /healthz, status: 200, timeout_seconds: 30 }',
      `route: { path: /${key}, strip_prefix: true }`,
      'database: { postgres: false }',
      '',
    ].join('\n');

  it("turns a service's image into the template its first deploy uses, with progress, shared with a deploy under way", async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    // Images of their own (a digest no earlier test unpacked).
    const own = (name: string) => webImage(3000, { env: ['IMAGE_DEFAULT=from-image', `BUILT_AS=${name}`] });
    const prebuilt = await registry.push('test/prebuilt', '1', own('prebuilt'));
    const race = await registry.push('test/race', '1', own('race'));
    const catalog = await mkdtemp(path.join(os.tmpdir(), 'aiqso-tplcat-'));
    await writeFile(path.join(catalog, 'prebuilt.yaml'), service('prebuilt', prebuilt));
    await writeFile(path.join(catalog, 'race.yaml'), service('race', race));
    const env = {
      DATABASE_URL: db.url,
      AIQSO_DRIVER: 'lxc',
      AIQSO_LXC_PATH: lxcPath,
      AIQSO_LXC_BRIDGE: bridge,
      AIQSO_LXC_SUBNET: subnet,
      AIQSO_REGISTRIES_CONF: registry.registriesConf,
      AIQSO_CATALOG_DIR: catalog,
      AIQSO_DATA_DIR: lxcPath,
    };
    const driver = await open();
    const harness = (ref: string) => ({ workload: () => imageWorkload(ref) }) as ContractHarness;
    const specs = [specFor(harness(prebuilt), 'prebuilt'), specFor(harness(race), 'race')];
    const blobs = (name: string) => registry.requests(new RegExp(`^GET /v2/test/${name}/blobs/`));
    try {
      // Built ahead: pulled and unpacked, each step shown as it happens.
      const built = await runCli(['templates', 'build', 'prebuilt', '--json'], env, 180_000);
      expect(built.code, built.stderr).toBe(0);
      const result = JSON.parse(built.stdout) as Record<string, unknown>;
      expect(result).toMatchObject({ service: 'prebuilt', image: prebuilt, driver: 'lxc', pulled: true });
      expect(result.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(result.template).toBe(`aiqsoimg-${(result.digest as string).slice(7, 31)}`);
      expect(result.templateBytes).toBeGreaterThan(1_000_000);
      const stages = built.stderr
        .split('\n')
        .filter((l) => l.startsWith('prebuilt: '))
        .map((l) => l.split(' ')[1]);
      expect(stages[0]).toBe('pulling');
      expect(stages).toContain('copying');
      expect(stages.slice(-2)).toEqual(['unpacking', 'ready']);
      expect(built.stderr).toMatch(/^prebuilt: pulling from 127\.0\.0\.1:\d+$/m);
      expect(built.stderr).toMatch(/^prebuilt: copying blob sha256:[0-9a-f]{12}$/m);
      // Its own config, and any layer the shared cache did not hold yet: each fetched once.
      const fetched = await blobs('prebuilt');
      expect(fetched.length).toBeGreaterThanOrEqual(1);
      expect(new Set(fetched).size).toBe(fetched.length);

      // The first deploy uses that template: no pull, no request to the registry.
      const before = (await registry.requests(/./)).length;
      await driver.ensure(specs[0]!);
      expect(driver.images.pulls).toBe(0);
      expect((await registry.requests(/./)).length).toBe(before);
      expect((await fetchWeb(await driver.start(specs[0]!.name))).packages).toBe(true);

      // Built again: it says so and pulls nothing.
      const again = await runCli(['templates', 'build', 'prebuilt'], env, 60_000);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/^prebuilt: cached sha256:[0-9a-f]{64} as aiqsoimg-[0-9a-f]{24}$/m);
      expect(again.stdout).toMatch(/^prebuilt: .*test\/prebuilt:1 was ready already as aiqsoimg-/);
      expect(await blobs('prebuilt')).toHaveLength(fetched.length);

      // A build and a first deploy at the same time: one pull between the two processes.
      const [raced] = await Promise.all([
        runCli(['templates', 'build', 'race', '--json'], env, 180_000),
        driver.ensure(specs[1]!),
      ]);
      expect(raced.code, raced.stderr).toBe(0);
      const racedPulled = (JSON.parse(raced.stdout) as { pulled: boolean }).pulled;
      expect(driver.images.pulls + (racedPulled ? 1 : 0)).toBe(1);
      const raceBlobs = await blobs('race');
      expect(raceBlobs.length).toBeGreaterThanOrEqual(1);
      expect(new Set(raceBlobs).size).toBe(raceBlobs.length);

      const listed = await runCli(['templates', 'list'], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toContain(prebuilt);
      expect(listed.stdout).toContain(race);
    } finally {
      for (const s of specs) await driver.destroy(s.name);
      await driver.close();
      await rm(catalog, { recursive: true, force: true });
    }
  });

  it('refuses a service not in the catalog, one that is not an image, the process driver, and says why a pull failed', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const closed = CLOSED_PORT;
    const catalog = await mkdtemp(path.join(os.tmpdir(), 'aiqso-tplcat-'));
    await writeFile(path.join(catalog, 'ghost.yaml'), service('ghost', `${registry.host}/test/ghost:1`));
    await writeFile(path.join(catalog, 'refused.yaml'), service('refused', `127.0.0.1:${closed}/test/web:1`));
    await writeFile(
      path.join(catalog, 'notes.yaml'),
      await readFile(new URL('../catalog/services/notes.yaml', import.meta.url), 'utf8'),
    );
    const env = {
      DATABASE_URL: db.url,
      AIQSO_DRIVER: 'lxc',
      AIQSO_LXC_PATH: lxcPath,
      AIQSO_LXC_BRIDGE: bridge,
      AIQSO_LXC_SUBNET: subnet,
      AIQSO_REGISTRIES_CONF: registry.registriesConf,
      AIQSO_CATALOG_DIR: catalog,
      AIQSO_DATA_DIR: lxcPath,
    };
    try {
      const cases: [string[], Record<string, string>, number, RegExp][] = [
        [['nope'], {}, 3, /^aiqso: no service "nope" in the catalog \(it has: ghost, notes, refused\)$/],
        [
          ['notes'],
          {},
          2,
          /^aiqso: notes is an app service, not an image: only image services have templates to build$/,
        ],
        [
          ['ghost'],
          { AIQSO_DRIVER: 'process' },
          2,
          /^aiqso: the process driver runs only app services and keeps no templates/,
        ],
        [
          ['ghost'],
          {},
          1,
          /^aiqso: image 127\.0\.0\.1:\d+\/test\/ghost:1 does not exist in 127\.0\.0\.1:\d+$/,
        ],
        [['refused'], {}, 1, /^aiqso: registry 127\.0\.0\.1:\d+ refused the connection$/],
      ];
      for (const [args, extra, code, message] of cases) {
        const out = await runCli(['templates', 'build', ...args], { ...env, ...extra }, 120_000);
        expect(out.code, out.stderr).toBe(code);
        expect(out.stdout).toBe('');
        expect(out.stderr.trim().split('\n').at(-1)).toMatch(message);
      }
      const listed = await runCli(['templates', 'list', '--json'], env);
      const images = (JSON.parse(listed.stdout) as { images: { image: string }[] }).images.map(
        (i) => i.image,
      );
      expect(images.filter((i) => i.includes('/test/ghost:') || i.includes(`:${closed}/`))).toEqual([]);
    } finally {
      await rm(catalog, { recursive: true, force: true });
    }
  });
});
