import { readdir } from 'node:fs/promises';
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
