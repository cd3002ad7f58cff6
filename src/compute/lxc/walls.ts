import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import type { IpPool } from '../shared/ip-pool.ts';
import { ensureBridge, ensureNeighbourRoom } from './bridge.ts';
import type { Isolation } from './config.ts';
import { backfillHostPorts, convertContainer, oldContainers } from './convert.ts';
import { admitToNetworkPolicy, applyNetworkPolicy, Coalesced } from './firewall.ts';
import { ensureIdMap, grantTraversal, type IdMap } from './idmap.ts';
import { vethName, type Egress, type PolicyMember } from './netpolicy.ts';
import { probeHostSecurity, type HostSecurity } from './security.ts';
import { ensureBaseTemplate, type BaseTemplate } from './template.ts';
import type { LxcTools } from './tools.ts';

/** What ensure records beside the LXC config (`<dir>/aiqso/meta.json`). */
export interface Meta {
  tenantId: string;
  role: string;
  port: number;
  /** TCP ports on the bridge address the container may open (the network policy reads them). */
  hostPorts?: number[];
  /** `configDigest` of the spec ensured: what the next start runs with (applied.ts). */
  digest?: string;
  /** What it was made from: the driver's own templates (app, image) or an operator's (clone). */
  workload?: 'app' | 'image' | 'clone';
}

export async function readMeta(lxcPath: string, name: string): Promise<Partial<Meta>> {
  const text = await readFile(path.join(lxcPath, name, 'aiqso', 'meta.json'), 'utf8').catch(() => '{}');
  return JSON.parse(text) as Partial<Meta>;
}

/** What a driver sets up once: bridge, id map, confinement, base template. */
export interface Ready {
  base: BaseTemplate;
  idmap: IdMap;
  security: HostSecurity;
}

export interface WallsOptions {
  db: Database;
  log: Logger;
  lxcPath: string;
  bridge: string;
  pool: IpPool;
  tools: LxcTools;
  egress?: Egress;
}

/**
 * The lxc driver's walls: the id map and confinement every container gets,
 * the bridge's network policy (re-applied when the driver starts and whenever
 * a container appears, goes or changes its host ports), and the conversion of
 * containers an older version left privileged.
 */
export class LxcWalls {
  readonly policy = new Coalesced(() => this.applyPolicy());
  private readonly admissions = new Coalesced<PolicyMember>((members) => this.admitMembers(members));

  constructor(private readonly o: WallsOptions) {}

  /** Bridge, id map, base template (cached on disk across runs), walls applied, old containers converted. */
  async prepare(): Promise<Ready> {
    const adopted = await this.o.pool.adoptNarrower();
    if (adopted.length)
      this.o.log.info({ adopted, network: this.o.pool.subnet.cidr }, 'container network widened');
    await ensureBridge(this.o.bridge, this.o.pool.subnet, await this.o.pool.formerGateways());
    const neighbours = await ensureNeighbourRoom(this.o.pool.subnet);
    if (neighbours.refused)
      this.o.log.warn(
        { network: this.o.pool.subnet.cidr, error: neighbours.refused },
        "could not make room for every container in the host's ARP table; past about 1,000 containers new ones are unreachable from the host",
      );
    else if (Object.keys(neighbours.raised).length)
      this.o.log.info(
        { ...neighbours.raised, network: this.o.pool.subnet.cidr },
        "host's ARP table limits raised",
      );
    const idmap = await ensureIdMap();
    const security = probeHostSecurity();
    const base = await ensureBaseTemplate(this.o.lxcPath, idmap, security);
    await grantTraversal(base.rootfs, idmap.uid.start);
    if (base.nodeMount) await grantTraversal(base.nodeMount, idmap.uid.start);
    const ready = { base, idmap, security };
    await this.convertOld(ready);
    return ready;
  }

  isolation(ready: Ready, name: string): Isolation {
    return { idmap: ready.idmap, security: ready.security, vethPair: vethName(this.o.bridge, name) };
  }

  /**
   * The policy applied, and containers of an older version converted, one
   * converter at a time per container directory across every process sharing
   * it. Their host ports are recorded and the policy drawn before they
   * restart, so they come back walled and reaching what they reached before.
   */
  private async convertOld(ready: Ready): Promise<void> {
    await this.o.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.lxc_convert:${this.o.lxcPath}`}))`.execute(
        trx,
      );
      const old = await oldContainers(this.o.lxcPath);
      for (const name of old) await backfillHostPorts(this.o.lxcPath, name, this.o.pool.subnet.gateway);
      await this.policy.request();
      const ctx = {
        lxcPath: this.o.lxcPath,
        tools: this.o.tools,
        isolation: (name: string) => this.isolation(ready, name),
        log: this.o.log,
      };
      for (const name of old) await convertContainer(ctx, name);
      if (old.length) this.o.log.info({ containers: old.length }, 'containers of an older version converted');
    });
  }

  /**
   * A container new to the bridge (its address allocated just now, its
   * meta.json written) into the policy: its elements added to the sets in
   * place, with those of every other container admitted meanwhile, instead
   * of the whole policy drawn again from every container's meta.json. Under
   * the same lock as a whole drawing, so whichever runs second sees the
   * other's work. Where there is no policy to add to (its tables were
   * removed), the whole policy is drawn, this container included.
   */
  admit(member: PolicyMember): Promise<void> {
    return this.admissions.request(member).catch((err: unknown) => {
      this.o.log.warn(
        { bridge: this.o.bridge, err: err instanceof Error ? err.message : String(err) },
        'could not add containers to the network policy in place; drawing it whole',
      );
      return this.policy.request();
    });
  }

  private async admitMembers(members: PolicyMember[]): Promise<void> {
    await this.o.db.transaction().execute(async (trx) => {
      await this.lockPolicy(trx);
      await admitToNetworkPolicy(this.o.bridge, members);
    });
  }

  /** The lock every change of this bridge's policy is made under, across processes. */
  private async lockPolicy(trx: Database): Promise<void> {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.nft:${this.o.bridge}`}))`.execute(trx);
  }

  /**
   * The bridge's whole policy from the address pool and each container's host
   * ports, applied under a lock so the last apply always saw the newest state.
   */
  private async applyPolicy(): Promise<void> {
    await this.o.db.transaction().execute(async (trx) => {
      await this.lockPolicy(trx);
      const entries = await this.o.pool.entries(trx);
      const members = await Promise.all(
        entries.map(async (e) => ({
          name: e.owner,
          ip: e.ip,
          hostPorts: (await readMeta(this.o.lxcPath, e.owner)).hostPorts ?? [],
        })),
      );
      await applyNetworkPolicy({
        bridge: this.o.bridge,
        subnet: this.o.pool.subnet,
        formerGateways: (await this.o.pool.formerGateways(trx)).map((a) => a.split('/')[0]!),
        egress: this.o.egress ?? 'none',
        members,
      });
    });
  }
}
