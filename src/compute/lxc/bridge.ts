import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run, runOk } from '../shared/run.ts';
import type { Subnet } from '../shared/subnet.ts';
import { removeNetworkPolicy } from './firewall.ts';

/**
 * The driver owns its bridge (there is no systemd or lxc-net here): created on
 * first use with the host at the subnet's .1, idempotently, with `ip` argv.
 * `former` (`address/prefix`) are gateways of narrower networks the pool
 * adopted on an upgrade: kept on the bridge for containers still configured
 * with them. An address the bridge has is never removed here.
 */
export async function ensureBridge(bridge: string, subnet: Subnet, former: string[] = []): Promise<void> {
  const exists = (await run('ip', ['link', 'show', 'dev', bridge])).exitCode === 0;
  if (!exists) {
    const made = await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
    // Another driver instance may have created it a moment ago.
    if (made.exitCode !== 0 && !/exists/i.test(made.stderr)) {
      throw new Error(`cannot create bridge ${bridge}: ${made.stderr.trim()}`);
    }
  }
  await runOk('ip', ['addr', 'replace', `${subnet.gateway}/${subnet.prefix}`, 'dev', bridge]);
  for (const address of former) await runOk('ip', ['addr', 'replace', address, 'dev', bridge]);
  await runOk('ip', ['link', 'set', 'dev', bridge, 'up']);
}

/** Where Linux keeps the IPv4 neighbour (ARP) table's limits. */
export const NEIGHBOUR_SYSCTL_DIR = '/proc/sys/net/ipv4/neigh/default';

/**
 * Room in the host's ARP table for every container on the bridge. The host
 * keeps one entry per container it talks to (the edge reaches each
 * dashboard), and Linux's default hard limit (`gc_thresh3`, 1024) is below
 * what the default /20 holds: past it the kernel drops new entries ("neighbor
 * table overflow") and the edge's connections to further containers wait for
 * SYN retransmits — a p99 of 3.4 s across 1,000 dashboards. The soft limit
 * (`gc_thresh2`, above which stale entries are collected) is raised to the
 * subnet's size plus 1024 for the host's other neighbours, the hard limit to
 * twice that; a limit already higher is kept. Says what it raised, or why it
 * could not (a read-only /proc/sys, as inside a container): the bridge works
 * without, up to about a thousand containers.
 */
export async function ensureNeighbourRoom(
  subnet: Subnet,
  dir = NEIGHBOUR_SYSCTL_DIR,
): Promise<{ raised: Record<string, number>; refused?: string }> {
  const soft = subnet.last - subnet.first + 1 + 1024;
  const raised: Record<string, number> = {};
  for (const [key, want] of [
    ['gc_thresh3', 2 * soft],
    ['gc_thresh2', soft],
  ] as const) {
    const file = path.join(dir, key);
    try {
      const now = Number((await readFile(file, 'utf8')).trim());
      if (Number.isFinite(now) && now >= want) continue;
      await writeFile(file, `${want}\n`);
      raised[key] = want;
    } catch (err) {
      return { raised, refused: `${file}: ${(err as Error).message}` };
    }
  }
  return { raised };
}

/** Remove the bridge and its network policy (tests and `aiqso` teardown); missing ones are fine. */
export async function removeBridge(bridge: string): Promise<void> {
  await run('ip', ['link', 'del', 'dev', bridge]);
  await removeNetworkPolicy(bridge);
}

/** Interfaces attached to the bridge (container veths). */
export async function bridgePorts(bridge: string): Promise<string[]> {
  return readdir(`/sys/class/net/${bridge}/brif`).catch(() => []);
}

/** Forget the host's ARP entry for an address, so the next owner of a reused IP is reachable at once. */
export async function forgetNeighbour(bridge: string, ip: string): Promise<void> {
  await run('ip', ['neigh', 'del', ip, 'dev', bridge]);
}
