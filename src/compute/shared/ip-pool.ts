import { sql } from 'kysely';
import type { Database } from '../../db/database.ts';
import { conflict, DomainError } from '../../core/errors.ts';
import { firstFree, inSubnet, parseSubnet, type Subnet } from './subnet.ts';

/** The owner of a reserved former gateway address: `gateway:<network>`. */
const GATEWAY_OWNER = 'gateway:';

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
    return (await this.claim(owner, wanted)).ip;
  }

  /** `allocate`, saying whether the owner held the address already (`existed`) or got it now. */
  async claim(owner: string, wanted?: string): Promise<{ ip: string; existed: boolean }> {
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
      if (mine && (!wanted || mine.ip === wanted)) return { ip: mine.ip, existed: true };
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
      return { ip, existed: false };
    });
  }

  /** The pool's size (container addresses) and how many of them are free. */
  async room(): Promise<{ network: string; size: number; free: number }> {
    const row = await this.db
      .selectFrom('ip_allocations')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('pool', '=', this.subnet.cidr)
      .executeTakeFirstOrThrow();
    const size = this.subnet.last - this.subnet.first + 1;
    return { network: this.subnet.cidr, size, free: Math.max(0, size - Number(row.n)) };
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

  /** Every container address of the pool with its owner; `executor` may be a transaction holding a lock. */
  async entries(executor: Database = this.db): Promise<{ owner: string; ip: string }[]> {
    return executor
      .selectFrom('ip_allocations')
      .select(['owner', sql<string>`host(address)`.as('ip')])
      .where('pool', '=', this.subnet.cidr)
      .where('owner', 'not like', `${GATEWAY_OWNER}%`)
      .orderBy('owner')
      .execute();
  }

  /**
   * Upgrade from a narrower network inside this one (the former default
   * `10.10.10.0/24` inside `10.10.0.0/20`): its allocations move into this
   * pool, keeping every container's address, and its gateway address is
   * reserved here (owner `gateway:<old network>`), so containers still
   * configured with it keep reaching the host until they are rewritten and
   * restarted, and no container is ever given it. Idempotent; returns the
   * networks adopted now.
   */
  async adoptNarrower(): Promise<string[]> {
    return this.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.ip_pool:${this.subnet.cidr}`}))`.execute(trx);
      const { rows } = await sql<{ pool: string }>`
        SELECT DISTINCT pool::text AS pool FROM ip_allocations
         WHERE pool <> ${this.subnet.cidr}::cidr AND pool << ${this.subnet.cidr}::cidr`.execute(trx);
      for (const { pool } of rows) {
        const old = parseSubnet(pool);
        await trx
          .insertInto('ip_allocations')
          .values({ pool: this.subnet.cidr, address: old.gateway, owner: `${GATEWAY_OWNER}${old.cidr}` })
          .onConflict((oc) => oc.doNothing())
          .execute();
        await trx
          .updateTable('ip_allocations')
          .set({ pool: this.subnet.cidr })
          .where('pool', '=', pool)
          .execute();
      }
      return rows.map((r) => r.pool);
    });
  }

  /**
   * Gateways of adopted narrower networks (see adoptNarrower), as `address/prefix` for the bridge.
   * Inside a transaction, pass it: a second connection from the pool while one is held can wait forever.
   */
  async formerGateways(executor: Database = this.db): Promise<string[]> {
    const rows = await executor
      .selectFrom('ip_allocations')
      .select(['owner', sql<string>`host(address)`.as('ip')])
      .where('pool', '=', this.subnet.cidr)
      .where('owner', 'like', `${GATEWAY_OWNER}%`)
      .orderBy('address')
      .execute();
    return rows.map((r) => `${r.ip}/${r.owner.split('/')[1]}`);
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
