import pg from 'pg';
import { scramVerifier } from '../db/scram.ts';

/**
 * Each tenant service gets its own PostgreSQL database and role, of one name:
 * the role owns the database, PUBLIC may not connect to it, so the service's
 * credentials reach only its own data and no other role's credentials reach it
 * (the embedded server's pg_hba.conf also lets a role into the database of its
 * own name only, and db/walls.ts closes the platform's and system databases).
 * Each carries a comment naming the platform's database (`serviceDatabaseTag`),
 * so orphan detection lists this platform's service databases and never those
 * of another platform on the same server.
 */
export interface ServiceDatabase {
  name: string;
  role: string;
  password: string;
}

const IDENT = /^[a-z][a-z0-9_]{0,62}$/;

/** The deterministic name of a tenant service's database and role: `s_<tenant ulid>_<service key>`. */
export function serviceDatabaseName(tenantId: string, serviceKey: string): string {
  const name = `s_${tenantId.replace(/^ten_/, '')}_${serviceKey.replace(/-/g, '_')}`
    .toLowerCase()
    .slice(0, 63);
  if (!IDENT.test(name)) throw new Error(`cannot derive a database name from ${tenantId}/${serviceKey}`);
  return name;
}

const quote = (ident: string): string => {
  if (!IDENT.test(ident)) throw new Error(`unsafe identifier ${JSON.stringify(ident)}`);
  return `"${ident}"`;
};

async function exists(admin: pg.Pool, sql: string, name: string): Promise<boolean> {
  const { rowCount } = await admin.query(sql, [name]);
  return (rowCount ?? 0) > 0;
}

/** Create (or repair) the role and database; safe to repeat after a crash at any point. */
export async function ensureServiceDatabase(admin: pg.Pool, db: ServiceDatabase): Promise<void> {
  const role = quote(db.role);
  const name = quote(db.name);
  const verifier = pg.escapeLiteral(scramVerifier(db.password));
  if (await exists(admin, 'SELECT 1 FROM pg_roles WHERE rolname = $1', db.role)) {
    await admin.query(
      `ALTER ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${verifier}`,
    );
  } else {
    try {
      await admin.query(
        `CREATE ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${verifier}`,
      );
    } catch (err) {
      // Another attempt created it between our look and our create.
      if ((err as { code?: string }).code !== '42710') throw err;
      await admin.query(`ALTER ROLE ${role} WITH LOGIN PASSWORD ${verifier}`);
    }
  }
  if (!(await exists(admin, 'SELECT 1 FROM pg_database WHERE datname = $1', db.name))) {
    try {
      await admin.query(`CREATE DATABASE ${name} OWNER ${role} TEMPLATE template0`);
    } catch (err) {
      if ((err as { code?: string }).code !== '42P04') throw err;
    }
  }
  await admin.query(`ALTER DATABASE ${name} OWNER TO ${role}`);
  await admin.query(`REVOKE ALL ON DATABASE ${name} FROM PUBLIC`);
  await admin.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${name} TO ${role}`);
  const { rows } = await admin.query<{ tag: string }>('SELECT current_database() AS tag');
  await admin.query(`COMMENT ON DATABASE ${name} IS ${pg.escapeLiteral(serviceDatabaseTag(rows[0]!.tag))}`);
}

/** The comment on a service database: which platform database made it. */
export function serviceDatabaseTag(platformDatabase: string): string {
  return `aiqso service database of ${platformDatabase}`;
}

/** This platform's service databases: those whose comment names the database `admin` is connected to. */
export async function listServiceDatabases(admin: pg.Pool): Promise<string[]> {
  const { rows } = await admin.query<{ datname: string }>(
    `SELECT datname FROM pg_database
      WHERE shobj_description(oid, 'pg_database') = 'aiqso service database of ' || current_database()
      ORDER BY datname`,
  );
  return rows.map((r) => r.datname).filter((name) => IDENT.test(name));
}

/** Drop the database (closing its connections) and the role. Missing ones are fine. */
export async function dropServiceDatabase(
  admin: pg.Pool,
  db: Pick<ServiceDatabase, 'name' | 'role'>,
): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS ${quote(db.name)} WITH (FORCE)`);
  await admin.query(`DROP ROLE IF EXISTS ${quote(db.role)}`);
}

export async function serviceDatabaseExists(admin: pg.Pool, name: string): Promise<boolean> {
  return exists(admin, 'SELECT 1 FROM pg_database WHERE datname = $1', name);
}
