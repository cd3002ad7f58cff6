/** Choosing the Proxmox node for a new container. Pure. */

export interface NodeLoad {
  node: string;
  online: boolean;
  maxmem: number;
  mem: number;
  maxcpu: number;
  /** CPU utilisation 0…1 of the whole node. */
  cpu: number;
  /** Containers the platform already runs there. */
  containers: number;
}

export interface NodePolicy {
  maxContainers: number | null;
  draining: boolean;
}

/**
 * The online node with the most free memory and CPU (memory weighs more: it is
 * what runs out), among those not draining, under their container cap and with
 * room for `needMemBytes`. Undefined when none qualifies.
 */
export function pickNode(
  nodes: NodeLoad[],
  policies: ReadonlyMap<string, NodePolicy>,
  needMemBytes: number,
): string | undefined {
  const score = (n: NodeLoad) => 0.6 * ((n.maxmem - n.mem) / n.maxmem) + 0.4 * (1 - n.cpu);
  return nodes
    .filter((n) => {
      const p = policies.get(n.node);
      if (!n.online || p?.draining) return false;
      if (p?.maxContainers != null && n.containers >= p.maxContainers) return false;
      return n.maxmem - n.mem >= needMemBytes;
    })
    .sort((a, b) => score(b) - score(a) || a.node.localeCompare(b.node))[0]?.node;
}
