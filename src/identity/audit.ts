import { createHash, randomBytes } from 'node:crypto';
import { sql, type QueryCreator, type Transaction } from 'kysely';
import type { Database } from '../db/database.ts';
import type { AuditLogTable, DB } from '../db/tables.ts';

/**
 * The audit log: append-only (a trigger refuses UPDATE, DELETE and TRUNCATE)
 * and hash-chained. Each row's hash covers its content and the previous row's
 * hash. The chain's head (`audit_head`: newest id and hash) moves in the
 * trigger that accepts each append, and an append must link to it, so
 * concurrent writers still form one chain. Editing a row breaks its hash;
 * deleting one breaks the next row's link; deleting the newest rows leaves
 * the chain short of the head. `verifyAuditChain` (audit-verify.ts) finds
 * each; what it cannot see is written down in migration 0007.
 */
export interface AuditEntry {
  actorType: AuditLogTable['actor_type'];
  actorId: string | null;
  tenantId: string | null;
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  sourceIp?: string | null;
  result: AuditLogTable['result'];
  details?: Record<string, unknown>;
}

export const GENESIS = '0'.repeat(64);

function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

interface HashedFields {
  at: Date;
  actor_type: string;
  actor_id: string | null;
  tenant_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  source_ip: string | null;
  result: string;
  details: unknown;
  prev_hash: string;
  source_ip_commit?: string | null;
}

export function rowHash(row: HashedFields): string {
  const fields = [
    row.prev_hash,
    row.at.toISOString(),
    row.actor_type,
    row.actor_id,
    row.tenant_id,
    row.action,
    row.target_type,
    row.target_id,
    row.source_ip,
    row.result,
    row.details,
  ];
  // Rows from before migration 0010 have no commitment: their hashes stay what they were.
  if (row.source_ip_commit) fields.push(row.source_ip_commit);
  return createHash('sha256').update(canonical(fields)).digest('hex');
}

/** The commitment a row's hash covers instead of its source address (kept apart, deletable). */
export const addressCommit = (salt: string, address: string) =>
  createHash('sha256').update(`${salt}:${address}`).digest('hex');

export async function appendAudit(db: Database, entry: AuditEntry): Promise<void> {
  await db.transaction().execute((trx) => appendAuditIn(trx, entry));
}

/**
 * Append within the caller's transaction, so the entry commits exactly when
 * the change it records does. Holds the chain's lock until that commit: keep
 * the transaction short.
 */
export async function appendAuditIn(trx: Transaction<DB>, entry: AuditEntry): Promise<void> {
  // The chain's head, locked until the caller commits: every audited change waits here, so it is
  // one statement. Locking the row (rather than another lock, then a read) also reads it afresh:
  // after waiting for a writer that moved the head, PostgreSQL returns the head it committed.
  // Link to the head, not to the newest row still present: after the newest rows were deleted,
  // the next append then names the missing row and the gap stays visible for good.
  // The address as PostgreSQL prints it back, so verification hashes the same text.
  const head = await sql<{ prev: string; ip: string | null }>`
    SELECT last_hash AS prev, ${entry.sourceIp ?? null}::inet::text AS ip
      FROM audit_head WHERE singleton FOR UPDATE`.execute(trx);
  if (!head.rows[0]) throw new Error('audit_head is missing: the chain head row was removed');
  // The address is personal data: the chain holds a salted commitment, the address lives apart.
  const address = head.rows[0].ip;
  const salt = address === null ? null : randomBytes(16).toString('hex');
  const fields: HashedFields = {
    at: new Date(),
    actor_type: entry.actorType,
    actor_id: entry.actorId,
    tenant_id: entry.tenantId,
    action: entry.action,
    target_type: entry.targetType ?? null,
    target_id: entry.targetId ?? null,
    source_ip: null,
    result: entry.result,
    details: JSON.parse(JSON.stringify(entry.details ?? {})) as unknown,
    prev_hash: head.rows[0].prev,
    source_ip_commit: address === null ? null : addressCommit(salt!, address),
  };
  const insertRow = (db: QueryCreator<DB>) =>
    db.insertInto('audit_log').values({
      ...fields,
      actor_type: entry.actorType,
      result: entry.result,
      details: JSON.stringify(fields.details),
      hash: rowHash(fields),
    });
  if (address === null) {
    await insertRow(trx).execute();
    return;
  }
  // The row and its address in one statement (the head stays locked for every round trip).
  await trx
    .with('appended', (db) => insertRow(db).returning('id'))
    .insertInto('audit_addresses')
    .columns(['audit_id', 'tenant_id', 'address', 'salt'])
    .expression((eb) =>
      eb
        .selectFrom('appended')
        .select((s) => [
          'appended.id',
          sql<string | null>`${entry.tenantId}::text`.as('tenant_id'),
          s.val(address).as('address'),
          s.val(salt!).as('salt'),
        ]),
    )
    .execute();
}

export interface AuditQuery {
  tenantId?: string;
  actorId?: string;
  from?: Date;
  to?: Date;
  /** Only rows older than this id (the previous page's last). */
  beforeId?: string;
  limit: number;
}

export async function queryAudit(db: Database, q: AuditQuery) {
  let query = db
    .selectFrom('audit_log')
    .leftJoin('audit_addresses', 'audit_addresses.audit_id', 'audit_log.id')
    .selectAll('audit_log')
    .select(sql<string | null>`host(coalesce(audit_log.source_ip, audit_addresses.address))`.as('source_ip'));
  if (q.tenantId) query = query.where('audit_log.tenant_id', '=', q.tenantId);
  if (q.actorId) query = query.where('audit_log.actor_id', '=', q.actorId);
  if (q.from) query = query.where('audit_log.at', '>=', q.from);
  if (q.to) query = query.where('audit_log.at', '<', q.to);
  if (q.beforeId) query = query.where('audit_log.id', '<', q.beforeId);
  return query.orderBy('audit_log.id', 'desc').limit(q.limit).execute();
}
