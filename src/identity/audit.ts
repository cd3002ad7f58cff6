import { createHash, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
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

/** What a row's hash covers, in order: the previous hash first, the address's commitment last (when any). */
function hashedValues(row: HashedFields): unknown[] {
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
  return fields;
}

export function rowHash(row: HashedFields): string {
  return createHash('sha256')
    .update(canonical(hashedValues(row)))
    .digest('hex');
}

/** The commitment a row's hash covers instead of its source address (kept apart, deletable). */
export const addressCommit = (salt: string, address: string) =>
  createHash('sha256').update(`${salt}:${address}`).digest('hex');

/**
 * Append on its own: one statement that commits by itself, so the chain's
 * lock is held only while PostgreSQL runs it (in a transaction it is held
 * until the commit, a round trip later).
 */
export async function appendAudit(db: Database, entry: AuditEntry): Promise<void> {
  await appendAuditIn(db, entry);
}

/**
 * Append within the caller's transaction, so the entry commits exactly when
 * the change it records does. Holds the chain's lock until that commit: keep
 * the transaction short, and append last.
 *
 * One statement locks the head, links to it and inserts the row (and its
 * address): every audited change in the platform waits for that lock, so the
 * time it is held is one round trip and the commit, not three. PostgreSQL
 * hashes the row, since only it knows the head once it holds the lock: the
 * text hashed is `rowHash`'s, built here around the two values it supplies
 * (the previous hash, and the address's commitment). The hash it returns is
 * checked against `rowHash`: in a transaction, before the caller commits (an
 * append `verifyAuditChain` would not accept is never written); on its own,
 * just after, with an error naming the row.
 */
export async function appendAuditIn(trx: Kysely<DB>, entry: AuditEntry): Promise<void> {
  const fields = {
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
  };
  // What `rowHash` hashes between the previous hash and the commitment; PostgreSQL adds those two.
  const middle = canonical(hashedValues({ ...fields, prev_hash: '' }).slice(1)).slice(1, -1);
  // The address is personal data: the chain holds a salted commitment, the address lives apart.
  // It is committed to as PostgreSQL prints it back, so verification hashes the same text.
  const salt = entry.sourceIp ? randomBytes(16).toString('hex') : null;
  // Link to the head, not to the newest row still present: after the newest rows were deleted,
  // the next append then names the missing row and the gap stays visible for good. Locking the
  // head row also reads it afresh: after waiting for a writer that moved it, PostgreSQL returns
  // the head that writer committed.
  const { rows } = await sql<{
    id: string;
    prev_hash: string;
    hash: string;
    source_ip_commit: string | null;
  }>`
    WITH head AS (
      SELECT last_hash AS prev, ${entry.sourceIp ?? null}::inet::text AS ip
        FROM audit_head WHERE singleton FOR UPDATE
    ), linked AS (
      SELECT prev, ip, encode(sha256(convert_to(${salt}::text || ':' || ip, 'UTF8')), 'hex') AS commit FROM head
    ), appended AS (
      INSERT INTO audit_log (at, actor_type, actor_id, tenant_id, action, target_type, target_id,
                             source_ip, result, details, prev_hash, source_ip_commit, hash)
      SELECT ${fields.at}, ${fields.actor_type}, ${fields.actor_id}, ${fields.tenant_id}, ${fields.action},
             ${fields.target_type}, ${fields.target_id}, NULL, ${fields.result},
             ${JSON.stringify(fields.details)}::jsonb, prev, commit,
             encode(sha256(convert_to(
               '["' || prev || '",' || ${middle}::text || coalesce(',"' || commit || '"', '') || ']', 'UTF8')), 'hex')
        FROM linked
      RETURNING id, prev_hash, hash, source_ip_commit
    ), address AS (
      INSERT INTO audit_addresses (audit_id, tenant_id, address, salt)
      SELECT appended.id, ${fields.tenant_id}::text, linked.ip::inet, ${salt}::text
        FROM appended, linked WHERE linked.ip IS NOT NULL
    )
    SELECT id, prev_hash, hash, source_ip_commit FROM appended`.execute(trx);
  const row = rows[0];
  if (!row) throw new Error('audit_head is missing: the chain head row was removed');
  const expected = rowHash({ ...fields, prev_hash: row.prev_hash, source_ip_commit: row.source_ip_commit });
  if (row.hash !== expected)
    throw new Error(
      `audit append ${row.id}: the database hashed it as ${row.hash}, the chain expects ${expected}`,
    );
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
