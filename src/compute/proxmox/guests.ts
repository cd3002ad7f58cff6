import { sql } from 'kysely';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';

/**
 * VMIDs the platform owns (`proxmox_guests`), allocated from a configured range
 * under an advisory lock, skipping ids the cluster already uses for anything
 * else. One name holds one VMID until it is released after the guest is gone.
 */
export class GuestRegistry {
  constructor(
    private readonly db: Database,
    private readonly range: [number, number],
  ) {}

  async allocate(name: string, port: number, usedInCluster: ReadonlySet<number>): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext('aiqso.proxmox_vmids'))`.execute(trx);
      const mine = await trx
        .selectFrom('proxmox_guests')
        .select('vmid')
        .where('name', '=', name)
        .executeTakeFirst();
      if (mine) {
        await trx.updateTable('proxmox_guests').set({ port }).where('name', '=', name).execute();
        return mine.vmid;
      }
      const rows = await trx.selectFrom('proxmox_guests').select('vmid').execute();
      const taken = new Set([...usedInCluster, ...rows.map((r) => r.vmid)]);
      let vmid = this.range[0];
      while (taken.has(vmid) && vmid <= this.range[1]) vmid++;
      if (vmid > this.range[1]) {
        throw new DomainError('capacity_exhausted', `no free VMID in ${this.range[0]}-${this.range[1]}`);
      }
      await trx.insertInto('proxmox_guests').values({ vmid, name, port }).execute();
      return vmid;
    });
  }

  async lookup(name: string): Promise<{ vmid: number; port: number } | undefined> {
    return this.db
      .selectFrom('proxmox_guests')
      .select(['vmid', 'port'])
      .where('name', '=', name)
      .executeTakeFirst();
  }

  async release(name: string): Promise<void> {
    await this.db.deleteFrom('proxmox_guests').where('name', '=', name).execute();
  }
}
