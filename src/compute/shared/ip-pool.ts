import { sql } from 'kysely';
import type { Database } from '../../db/database.ts';
import { conflict, DomainError } from '../../core/errors.ts';
import { firstFree, inSubnet, parseSubnet, type Subnet } from './subnet.ts';

/**
 * Static container addresses from a platform-managed pool in `ip_allocations`.
 * One owner (container name) holds at most one address (UNIQUE owner) and one
 * address has at most one owner (primary key), so the table itself rules out
 * double allocation; the advisory lock only keeps concurrent allocators from
 * retrying into each other.
 */
export class IpPool {
  readonly subnet: Subnet;

  constructor(
    private readonly db: Database,
    cidr: string,
  ) {
    this.subnet = parseSubnet(cidr);
  }

  /** The owner's address, allocating one (or `wanted`) when it has none. Idempotent. */
  async allocate(owner: string, wanted?: string): Promise<string> {
    if (wanted && !inSubnet(this.subnet, wanted)) {
      throw new DomainError(
        'bad_request',
        `address ${wanted} is not a container address of ${this.subnet.cidr}`,
      );
    }
    return this.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.ip_pool:${this.subnet.cidr}`}))`.execute(trx);
      const rows = await trx
        .selectFrom('ip_allocations')
        .select([sql<string>`host(address)`.as('ip'), 'owner'])
        .where('pool', '=', this.subnet.cidr)
        .execute();
      const mine = rows.find((r) => r.owner === owner);
      if (mine && (!wanted || mine.ip === wanted)) return mine.ip;
      if (mine) throw conflict(`${owner} already holds ${mine.ip}, not ${wanted}`);
      if (wanted && rows.some((r) => r.ip === wanted)) throw conflict(`address ${wanted} is taken`);
      const ip =
        wanted ??
        firstFree(
          this.subnet,
          rows.map((r) => r.ip),
        );
      if (!ip) throw new DomainError('capacity_exhausted', `address pool ${this.subnet.cidr} is full`);
      await trx.insertInto('ip_allocations').values({ pool: this.subnet.cidr, address: ip, owner }).execute();
      return ip;
    });
  }

  async lookup(owner: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('ip_allocations')
      .select(sql<string>`host(address)`.as('ip'))
      .where('pool', '=', this.subnet.cidr)
      .where('owner', '=', owner)
      .executeTakeFirst();
    return row?.ip;
  }

  async release(owner: string): Promise<void> {
    await this.db
      .deleteFrom('ip_allocations')
      .where('pool', '=', this.subnet.cidr)
      .where('owner', '=', owner)
      .execute();
  }

  /** Every address of the pool with its owner; `executor` may be a transaction holding a lock. */
  async entries(executor: Database = this.db): Promise<{ owner: string; ip: string }[]> {
    return executor
      .selectFrom('ip_allocations')
      .select(['owner', sql<string>`host(address)`.as('ip')])
      .where('pool', '=', this.subnet.cidr)
      .orderBy('owner')
      .execute();
  }

  async owners(): Promise<string[]> {
    const rows = await this.db
      .selectFrom('ip_allocations')
      .select('owner')
      .where('pool', '=', this.subnet.cidr)
      .execute();
    return rows.map((r) => r.owner);
  }
}
