import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { inspectNetworkPolicy, removeNetworkPolicy } from '../src/compute/lxc/firewall.ts';
import { probeHostSecurity } from '../src/compute/lxc/security.ts';
import { containerName, type ContainerInfo, type ContainerSpec } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { appWorkload, fetchApp } from './support/compute-app.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { missingPart } from './support/strict.ts';

/**
 * Containers as walls, on real LXC: two tenants with a dashboard and a service
 * each, on a bridge and subnet of this file's own. From tenant B's containers
 * (the driver's exec), tenant A's are out of reach by every path tried; of the
 * host only the ports each container was given answer; root inside is not
 * root outside; and nothing leaves the bridge unless egress is `nat`.
 */
const tools = (() => {
  try {
    for (const bin of ['nft', 'ping', 'setfacl']) execFileSync('which', [bin], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip =
  missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root') ||
  missingPart('nft, ping and setfacl', tools, 'apt-get install nftables iputils-ping acl');

const { bridge, subnet } = privateNetwork('w');
const tag = randomBytes(3).toString('hex');
// A network outside the bridge, in a namespace of its own: "the internet" for egress.
const outside = {
  ns: `aiqsow${tag}`,
  hostIf: `aqo${tag}`,
  nsIf: `aqi${tag}`,
  net: 64 + (randomBytes(1)[0]! % 64),
};
const outsideHost = `198.18.${outside.net}.1`;
const outsideAddr = `198.18.${outside.net}.2`;

let db: TestDatabase;
let lxcPath: string;
let driver: LxcDriver;
let forwardBefore: string;
const servers: net.Server[] = [];
let outsideServer: ChildProcess | undefined;
const ports = { api: 0, database: 0, other: 0, outside: 0 };
const made: ContainerSpec[] = [];
const c: Record<'aDash' | 'aSvc' | 'bDash' | 'bSvc', ContainerInfo> = {} as never;

const open = (egress: 'none' | 'nat') =>
  new LxcDriver({ db: db.db, log: createLogger('silent'), lxcPath, bridge, subnet, egress });

/** A TCP listener answering with its name: the API, the database and some other host port. */
async function listen(host: string, name: string): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(`${name}\n`);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, host, r));
  return (server.address() as net.AddressInfo).port;
}

function spec(tenantId: string, role: string, port: number, hostPorts: number[]): ContainerSpec {
  const s: ContainerSpec = {
    name: containerName(tenantId, role),
    tenantId,
    role,
    workload: appWorkload(),
    resources: { memoryMb: 128, cores: 1, diskGb: 1 },
    port,
    env: { APP_NAME: `${tenantId}-${role}` },
    hostPorts,
  };
  made.push(s);
  return s;
}

/** TCP connects from inside a container, in parallel: `open`, or why not (an errno, or `timeout`). */
const PROBE = `
const net = require('node:net');
const targets = JSON.parse(process.argv[1]);
Promise.all(targets.map(([host, port, local]) => new Promise((done) => {
  const s = net.connect({ host, port, timeout: 2500, ...(local ? { localAddress: local } : {}) });
  s.on('connect', () => { s.destroy(); done('open'); });
  s.on('timeout', () => { s.destroy(); done('timeout'); });
  s.on('error', (e) => done(e.code));
}))).then((r) => process.stdout.write(JSON.stringify(r)));
`;

async function probe(from: ContainerInfo, targets: [string, number, string?][]): Promise<string[]> {
  const out = await driver.exec(from.name, ['node', '-e', PROBE, JSON.stringify(targets)], {
    timeoutMs: 20_000,
  });
  expect(out.exitCode, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as string[];
}

const sh = (from: ContainerInfo, script: string) =>
  driver.exec(from.name, ['sh', '-c', script], { timeoutMs: 20_000 });

/** An IPv4 address of this host outside the bridge (its uplink). */
function hostUplinkAddress(): string {
  const all = Object.values(os.networkInterfaces()).flat();
  const found = all.find((a) => a && a.family === 'IPv4' && !a.internal && !a.address.startsWith('10.'));
  return found?.address ?? all.find((a) => a && a.family === 'IPv4' && !a.internal)!.address;
}

beforeAll(async () => {
  if (skip) return;
  db = await createTestDatabase({ max: 10 });
  lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-walls-'));
  forwardBefore = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  driver = open('none');
  const gateway = await driver.hostAddress();
  ports.api = await listen(gateway, 'api');
  ports.database = await listen(gateway, 'database');
  ports.other = await listen('0.0.0.0', 'other');

  execFileSync('ip', ['netns', 'add', outside.ns]);
  execFileSync('ip', ['link', 'add', outside.hostIf, 'type', 'veth', 'peer', 'name', outside.nsIf]);
  execFileSync('ip', ['link', 'set', outside.nsIf, 'netns', outside.ns]);
  execFileSync('ip', ['addr', 'add', `${outsideHost}/30`, 'dev', outside.hostIf]);
  execFileSync('ip', ['link', 'set', outside.hostIf, 'up']);
  const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', outside.ns, ...args]);
  inNs('ip', 'addr', 'add', `${outsideAddr}/30`, 'dev', outside.nsIf);
  inNs('ip', 'link', 'set', outside.nsIf, 'up');
  inNs('ip', 'link', 'set', 'lo', 'up');
  ports.outside = 20_000 + (randomBytes(2).readUInt16BE() % 20_000);
  outsideServer = spawn(
    'ip',
    [
      'netns',
      'exec',
      outside.ns,
      process.execPath,
      '-e',
      `require('node:net').createServer((s) => s.on('error', () => {}).end('outside\\n')).listen(${ports.outside}, '0.0.0.0', () => console.log('ready'))`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((r) => outsideServer!.stdout!.once('data', () => r()));

  const a = newId('tenant');
  const b = newId('tenant');
  const specs = {
    aDash: spec(a, 'dashboard', 3000, [ports.api]),
    aSvc: spec(a, 'notes', 8000, [ports.database]),
    bDash: spec(b, 'dashboard', 3000, [ports.api]),
    bSvc: spec(b, 'notes', 8000, [ports.database]),
  };
  for (const [key, s] of Object.entries(specs)) {
    await driver.ensure(s);
    c[key as keyof typeof c] = await driver.start(s.name);
  }
  // Every workload answers the host (the edge's path), so what fails below fails for the walls.
  for (const info of Object.values(c)) await fetchApp(info);
}, 180_000);

afterAll(async () => {
  if (skip) return;
  for (const s of made) await driver.destroy(s.name);
  await driver.close();
  outsideServer?.kill('SIGKILL');
  execFileSync('ip', ['netns', 'del', outside.ns]);
  for (const server of servers) server.close();
  await removeBridge(bridge);
  await writeFile('/proc/sys/net/ipv4/ip_forward', forwardBefore);
  await rm(lxcPath, { recursive: true, force: true });
  await db.drop();
}, 120_000);

describe('lxc containers as walls', { timeout: 120_000 }, () => {
  it("keeps tenant A's containers out of tenant B's reach: TCP, ping, IPv6 link-local, a spoofed address", async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    for (const from of [c.bDash, c.bSvc]) {
      const tcp = await probe(from, [
        [c.aDash.ip!, 3000],
        [c.aSvc.ip!, 8000],
      ]);
      expect(tcp).not.toContain('open');
      expect((await sh(from, `ping -c 1 -W 1 ${c.aSvc.ip}`)).exitCode).not.toBe(0);
    }
    // The host pings A: what fails from B fails because of the walls.
    execFileSync('ping', ['-c', '1', '-W', '2', c.aSvc.ip!], { stdio: 'ignore' });

    // A's IPv6 link-local address (the host's awk is a link into /etc, which containers lack).
    const linkLocal = (await sh(c.aSvc, 'ip -6 -o addr show dev eth0 scope link')).stdout;
    expect(linkLocal).not.toContain('tentative');
    const a6 = /inet6 (fe80:[0-9a-f:]+)\//.exec(linkLocal)?.[1];
    expect(a6).toMatch(/^fe80:/);
    expect((await sh(c.bDash, `ping -6 -c 1 -W 1 ${a6}%eth0`)).exitCode).not.toBe(0);

    // B's dashboard takes A's service's address to reach the database port A's service may open.
    expect((await sh(c.bDash, `ip addr add ${c.aSvc.ip}/32 dev eth0`)).exitCode).toBe(0);
    expect(
      await probe(c.bDash, [[c.bDash.ip!.replace(/\d+$/, '1'), ports.database, c.aSvc.ip!]]),
    ).not.toEqual(['open']);
    await sh(c.bDash, `ip addr del ${c.aSvc.ip}/32 dev eth0`);
    // A's service still answers as itself.
    expect((await fetchApp(c.aSvc)).name).toBe(made.find((m) => m.name === c.aSvc.name)!.env.APP_NAME);
  });

  it('opens only the host ports each container was given', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const gw = await driver.hostAddress();
    const uplink = hostUplinkAddress();
    const targets: [string, number][] = [
      [gw, ports.api],
      [gw, ports.database],
      [gw, ports.other],
      [uplink, ports.other],
    ];
    expect(await probe(c.bDash, targets)).toEqual(['open', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
    expect(await probe(c.bSvc, targets)).toEqual(['ECONNREFUSED', 'open', 'ECONNREFUSED', 'ECONNREFUSED']);
    const answer = await sh(
      c.bSvc,
      `node -e "require('net').connect(${ports.database}, '${gw}').pipe(process.stdout)"`,
    );
    expect(answer.stdout).toBe('database\n');
  });

  it('runs root inside as an unprivileged id range outside, under seccomp where the host has it', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const map = (await sh(c.bSvc, 'cat /proc/self/uid_map')).stdout.trim().split(/\s+/).map(Number);
    expect(map[0]).toBe(0);
    expect(map[1]).toBeGreaterThanOrEqual(100_000);
    expect(map[2]).toBe(65_536);
    // On the host, the container's init runs as that uid, and its files belong to it.
    const pid = execFileSync('lxc-info', ['-P', lxcPath, '-n', c.bSvc.name, '-p', '-H']).toString().trim();
    expect((await stat(`/proc/${pid}`)).uid).toBe(map[1]);
    expect((await stat(path.join(lxcPath, c.bSvc.name, 'aiqso', 'env'))).uid).toBe(map[1]);
    const seccomp = (await sh(c.bSvc, 'grep ^Seccomp: /proc/self/status')).stdout;
    expect(seccomp.trim()).toBe(probeHostSecurity().seccomp.enabled ? 'Seccomp:\t2' : 'Seccomp:\t0');
  });

  it('walls containers made at once, and a new one made after the walls were removed', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const t = newId('tenant');
    const extra = [
      spec(t, 'dashboard', 3000, [ports.api]),
      spec(t, 'notes', 8000, [ports.database]),
      spec(t, 'files', 8000, []),
    ];
    const ips = (await Promise.all(extra.map((s) => driver.ensure(s)))).map((info) => info.ip!);
    let policy = await inspectNetworkPolicy(bridge);
    expect(policy?.containers).toBe(7);
    expect(policy?.reach).toEqual(
      expect.arrayContaining([`${ips[0]} . ${ports.api}`, `${ips[1]} . ${ports.database}`]),
    );
    expect(policy?.reach.filter((r) => r.startsWith(`${ips[2]} `))).toEqual([]);

    // Its tables gone (flushed by hand, say): the next new container has the whole policy drawn again.
    await removeNetworkPolicy(bridge);
    const late = spec(t, 'late', 8000, [ports.database]);
    await driver.ensure(late);
    policy = await inspectNetworkPolicy(bridge);
    expect(policy?.containers).toBe(8);
    const gw = await driver.hostAddress();
    const started = await driver.start(late.name);
    await fetchApp(started);
    const [database, api, otherTenant] = await probe(started, [
      [gw, ports.database],
      [gw, ports.api],
      [c.aSvc.ip!, 8000],
    ]);
    expect([database, api]).toEqual(['open', 'ECONNREFUSED']);
    expect(otherTenant).not.toBe('open');
  });

  it('has no route out with AIQSO_EGRESS=none, and reaches a host outside with nat', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    expect(await probe(c.bDash, [[outsideAddr, ports.outside]])).not.toEqual(['open']);

    // A driver started with egress nat redraws the walls on the same bridge.
    const nat = open('nat');
    await nat.hostAddress();
    const prev = driver;
    driver = nat;
    try {
      expect(await probe(c.bDash, [[outsideAddr, ports.outside]])).toEqual(['open']);
      // Still no other container, even routed through the host, and no host port by its other addresses.
      await sh(c.bDash, `ip route add ${c.aSvc.ip}/32 via ${await nat.hostAddress()}`);
      expect(
        await probe(c.bDash, [
          [c.aSvc.ip!, 8000],
          [outsideHost, ports.other],
        ]),
      ).not.toContain('open');
      await sh(c.bDash, `ip route del ${c.aSvc.ip}/32`);
    } finally {
      driver = prev;
      await nat.close();
    }
  });
});
