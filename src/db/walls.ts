import pg from 'pg';
import type { Logger } from '../observability/logger.ts';

/**
 * Database walls: a service role reaches only its own database. PostgreSQL
 * lets PUBLIC connect to every database unless told otherwise; each service
 * database is closed to PUBLIC when it is made (services/databases.ts), and
 * this closes the platform's own database and the system ones (`postgres`,
 * `template1`), on the embedded server and on an external one alike. The
 * platform's role keeps its way in: a superuser passes any check, and an
 * owner keeps its own grant. Idempotent; run by `aiqso migrate` and at every
 * worker start (services' databases are made on this server).
 *
 * A role that owns neither a system database nor the right to change it
 * cannot close it: that is reported, with the statement a superuser must run.
 */
export const SYSTEM_DATABASES = ['postgres', 'template1'] as const;

export interface WallReport {
  /** Databases closed to PUBLIC now (or already). */
  closed: string[];
  /** Databases PUBLIC may still connect to because this role could not change them. */
  open: string[];
}

export async function wallDatabases(pool: pg.Pool, log: Logger): Promise<WallReport> {
  const { rows: me } = await pool.query<{ db: string; superuser: boolean }>(
    `SELECT current_database() AS db,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser`,
  );
  const { db, superuser } = me[0]!;
  const targets = [db, ...SYSTEM_DATABASES.filter((name) => name !== db)];
  const { rows } = await pool.query<{ datname: string; owned: boolean }>(
    `SELECT datname, pg_has_role(current_user, datdba, 'USAGE') AS owned
       FROM pg_database WHERE datname = ANY($1::text[]) ORDER BY datname`,
    [targets],
  );
  for (const row of rows) {
    if (!superuser && !row.owned) continue;
    await pool.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${pg.escapeIdentifier(row.datname)} FROM PUBLIC`);
  }
  const open = await openToPublic(
    pool,
    rows.map((r) => r.datname),
  );
  if (open.length > 0) {
    log.warn(
      {
        databases: open,
        fix: open
          .map((name) => `REVOKE CONNECT ON DATABASE ${pg.escapeIdentifier(name)} FROM PUBLIC;`)
          .join(' '),
      },
      'service roles may still connect to these databases: run the fix as a superuser of the database server',
    );
  }
  return { closed: rows.map((r) => r.datname).filter((name) => !open.includes(name)), open };
}

/** Which of `names` PUBLIC may connect to (a NULL acl is the default, which lets it). */
export async function openToPublic(pool: pg.Pool, names: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ datname: string }>(
    `SELECT datname FROM pg_database d
      WHERE datname = ANY($1::text[])
        AND (datacl IS NULL OR EXISTS (
              SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT'))
      ORDER BY datname`,
    [names],
  );
  return rows.map((r) => r.datname);
}
