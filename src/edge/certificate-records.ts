import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import type { CertificatesTable } from '../db/tables.ts';

/**
 * The `certificates` table: what the platform ordered over ACME, so the
 * renewal schedule knows what to order again. Keyed by the first name (the
 * one the files are named after).
 */
export interface CertificateRecord {
  name: string;
  names: string[];
  fileBase: string;
  challenge: CertificatesTable['challenge'];
  notAfter: Date;
  orderedAt: Date;
  lastAttemptAt: Date;
  lastError: string | null;
}

type Row = Pick<
  CertificatesTable,
  'name' | 'names' | 'file_base' | 'challenge' | 'not_after' | 'ordered_at' | 'last_attempt_at' | 'last_error'
>;

const COLUMNS = [
  'name',
  'names',
  'file_base',
  'challenge',
  'not_after',
  'ordered_at',
  'last_attempt_at',
  'last_error',
] as const;

const toRecord = (r: Row): CertificateRecord => ({
  name: r.name,
  names: r.names,
  fileBase: r.file_base,
  challenge: r.challenge,
  notAfter: r.not_after,
  orderedAt: r.ordered_at,
  lastAttemptAt: r.last_attempt_at,
  lastError: r.last_error,
});

export async function listCertificates(db: Database): Promise<CertificateRecord[]> {
  const rows = await db.selectFrom('certificates').select(COLUMNS).orderBy('name').execute();
  return rows.map(toRecord);
}

export async function findCertificate(db: Database, name: string): Promise<CertificateRecord | undefined> {
  const row = await db.selectFrom('certificates').select(COLUMNS).where('name', '=', name).executeTakeFirst();
  return row && toRecord(row);
}

/** A successful order: insert, or update the row of the same first name (its names may have changed). */
export async function recordIssued(
  db: Database,
  issued: { names: string[]; fileBase: string; challenge: CertificateRecord['challenge']; notAfter: Date },
): Promise<void> {
  const now = new Date();
  const values = {
    names: issued.names,
    file_base: issued.fileBase,
    challenge: issued.challenge,
    not_after: issued.notAfter,
    ordered_at: now,
    last_attempt_at: now,
    last_error: null,
    updated_at: now,
  };
  await db
    .insertInto('certificates')
    .values({ name: issued.names[0]!, ...values })
    .onConflict((oc) => oc.column('name').doUpdateSet(values))
    .execute();
}

/** A failed order of a recorded certificate: the row (and the files) stay, with the reason. */
export async function recordFailure(db: Database, name: string, error: string): Promise<void> {
  await db
    .updateTable('certificates')
    .set({ last_error: error, last_attempt_at: sql`now()`, updated_at: sql`now()` })
    .where('name', '=', name)
    .execute();
}
