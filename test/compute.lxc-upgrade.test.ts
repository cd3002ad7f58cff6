import { execFileSync } from 'node:child_process';
import { chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgePorts, removeBridge } from '../src/compute/lxc/bridge.ts';
import { renderConfig, renderEnvFile, renderInit } from '../src/compute/lxc/config.ts';
import { inspectNetworkPolicy } from '../src/compute/lxc/firewall.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { readIdMap } from '../src/compute/lxc/idmap.ts';
import { vethName } from '../src/compute/lxc/netpolicy.ts';
import { probeHostSecurity } from '../src/compute/lxc/security.ts';
import { BASE_NAME, ensureBaseTemplate } from '../src/compute/lxc/template.ts';
import { containerName } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { APP_DIR, fetchApp } from './support/compute-app.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { missingPart } from './support/strict.ts';

/**
 * A container an older version made privileged (on base template 1, owned by
 * host root, config without an id map), running with data written as root,
 * is converted when a driver of this version starts: restarted unprivileged,
 * its data kept and owned by root inside.
 */
const skip = missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root');
const { bridge, subnet } = privateNetwork('u');
let db: TestDatabase;
let lxcPath: string;
const log = createLogger('silent');
const open = () => new LxcDriver({ db: db.db, log, lxcPath, bridge, subnet });
const made: string[] = [];

beforeAll(async () => {
  if (skip) return;
  db = await createTestDatabase({ max: 5 });
  lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-upgrade-'));
});

afterAll(async () => {
  if (skip) return;
  const driver = open();
  for (const name of made) await driver.destroy(name);
  await driver.close();
  await removeBridge(bridge);
  await rm(lxcPath, { recursive: true, force: true });
  await db.drop();
});

/** What version 1 of the driver left: base `aiqsobase1` owned by root, a clone of it, a privileged config. */
async function privilegedContainer(driver: LxcDriver, name: string): Promise<void> {
  const idmap = (await readIdMap())!;
  const base = await ensureBaseTemplate(lxcPath, idmap, probeHostSecurity());
  const old = path.join(lxcPath, 'aiqsobase1');
  execFileSync('cp', ['-a', path.join(lxcPath, BASE_NAME), old]);
  execFileSync('chown', ['-R', '-h', '0:0', path.join(old, 'rootfs')]);
  const baseConfig = (await readFile(path.join(old, 'config'), 'utf8'))
    .replaceAll(BASE_NAME, 'aiqsobase1')
    .replace(/^lxc\.idmap.*\n/gm, '');
  await writeFile(path.join(old, 'config'), baseConfig);
  execFileSync('lxc-copy', ['-P', lxcPath, '-n', 'aiqsobase1', '-N', name, '-s', '-B', 'overlayfs']);

  const ip = await driver.pool.allocate(name);
  const aiqsoDir = path.join(lxcPath, name, 'aiqso');
  await mkdir(aiqsoDir, { recursive: true, mode: 0o700 });
  const env = {
    PATH: `${path.dirname(base.node)}:/usr/bin:/bin`,
    HOME: '/root',
    APP_NAME: 'old',
    PORT: '3000',
    // What a dashboard of version 1 was given: the API at the bridge address.
    AIQSO_API_URL: `http://${driver.pool.subnet.gateway}:8080`,
  };
  await writeFile(path.join(aiqsoDir, 'env'), renderEnvFile({ ...env, HOST: '0.0.0.0' }), { mode: 0o600 });
  await writeFile(path.join(aiqsoDir, 'init.sh'), renderInit(base.node, 'server.mjs', 128), { mode: 0o700 });
  await writeFile(
    path.join(aiqsoDir, 'meta.json'),
    JSON.stringify({ tenantId: 't', role: 'old', port: 3000 }),
  );
  const configFile = path.join(lxcPath, name, 'config');
  const config = renderConfig(await readFile(configFile, 'utf8'), {
    name,
    bridge,
    ip,
    prefix: driver.pool.subnet.prefix,
    gateway: driver.pool.subnet.gateway,
    resources: { memoryMb: 128, cores: 1, diskGb: 1 },
    aiqsoDir,
    appDir: APP_DIR,
    appModules: path.resolve(APP_DIR, '../../../node_modules'),
    cgroup: 'v1',
    isolation: { idmap, security: probeHostSecurity(), vethPair: 'unused' },
  });
  // Version 1 had no id map, no seccomp key of its own and a veth named by LXC.
  await writeFile(configFile, config.replace(/^lxc\.(idmap|seccomp\.profile|net\.0\.veth\.pair) .*\n/gm, ''));
  await chown(path.join(lxcPath, name, 'overlay', 'delta'), 0, 0);
}

describe('containers of an older version', { timeout: 120_000 }, () => {
  it('are converted in place when the driver starts: restarted unprivileged, their data kept', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const first = open();
    await first.hostAddress();
    const name = containerName(newId('tenant'), 'old');
    made.push(name);
    await privilegedContainer(first, name);
    await first.start(name);
    const before = await first.exec(name, ['sh', '-c', 'cat /proc/self/uid_map; echo kept > /root/marker']);
    expect(before.stdout.trim().split(/\s+/)).toEqual(['0', '0', '4294967295']);
    expect((await stat(path.join(lxcPath, name, 'overlay', 'delta', 'root', 'marker'))).uid).toBe(0);

    // The next version's driver starts (a control-plane upgrade).
    const driver = open();
    await driver.hostAddress();
    const info = await driver.status(name);
    expect(info.state).toBe('running');
    const after = await driver.exec(name, [
      'sh',
      '-c',
      'cat /proc/self/uid_map; stat -c %u /root/marker; cat /root/marker',
    ]);
    const [inside, start, size, owner, marker] = after.stdout.trim().split(/\s+/);
    expect([inside, size, owner, marker]).toEqual(['0', '65536', '0', 'kept']);
    expect(Number(start)).toBeGreaterThanOrEqual(100_000);
    expect((await stat(path.join(lxcPath, name, 'overlay', 'delta', 'root', 'marker'))).uid).toBe(
      Number(start),
    );
    // Its lower layer, the old base, now belongs to the range too (copied-up files keep their origin).
    expect((await stat(path.join(lxcPath, 'aiqsobase1', 'rootfs', 'etc', 'passwd'))).uid).toBe(Number(start));
    // Its port now carries the name the network policy binds it by, and it keeps the host port its environment names.
    expect(await bridgePorts(bridge)).toEqual([vethName(bridge, name)]);
    expect((await inspectNetworkPolicy(bridge))?.reach).toEqual([`${info.ip} . 8080`]);
    expect((await fetchApp(info)).name).toBe('old');

    // A second start of a driver finds nothing left to convert and leaves it running.
    const again = open();
    await again.hostAddress();
    expect((await again.status(name)).state).toBe('running');
    await driver.destroy(name);
    for (const d of [first, driver, again]) await d.close();
  });
});
