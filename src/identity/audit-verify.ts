import { sql } from 'kysely';
import { DomainError } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import { addressCommit, GENESIS, rowHash } from './audit.ts';

/**
 * Verifying the audit chain. Walking it in id order finds an edited row (its
 * hash no longer matches its content) and a deleted or replaced one (the next
 * row's link is broken). Comparing where the walk ends with `audit_head`
 * finds deleted newest rows, which leave no broken link behind. An anchor —
 * a head printed by an earlier verify and kept outside the database — finds
 * a rewrite by someone who bypassed the triggers on both tables and
 * recomputed every later hash and the head.
 *
 * What each attacker can hide (migration 0007 has the mechanics):
 * - plain DML on both tables (the app's connection, SQL injection): nothing —
 *   UPDATE, DELETE and TRUNCATE are refused and an INSERT must link to the
 *   head, after which it is part of the chain. The chain is not a signature:
 *   a row appended through SQL looks like any other.
 * - triggers bypassed on audit_log only: edits, deletions anywhere, and
 *   deleted newest rows are all reported.
 * - triggers bypassed on both tables, every later hash and the head rewritten:
 *   only `--expect` with a head kept outside the database catches it, and only
 *   for rows up to that head.
 */
export interface ChainHead {
  /** The newest row's id; null while the log is empty. */
  id: string | null;
  hash: string;
  rows: number;
}

export interface Anchor {
  id: string;
  hash: string;
}

export type TamperReason =
  'content_changed' | 'address_changed' | 'link_broken' | 'truncated' | 'head_mismatch' | 'anchor_mismatch';

export type ChainReport =
  | { ok: true; rows: number; head: ChainHead }
  | {
      ok: false;
      rows: number;
      /** The first row found wrong; for `truncated`, the newest row the head records (now missing). */
      firstBadId: string;
      reason: TamperReason;
      head: ChainHead;
      /** Where the walk ended: the newest row whose chain holds. */
      chainEnd: { id: string | null; hash: string };
    };

/** `<id>:<hash>` as `aiqso audit verify` prints it. */
export function parseAnchor(text: string): Anchor {
  const match = /^(\d{1,19}):([0-9a-f]{64})$/.exec(text.trim());
  if (!match) {
    throw new DomainError('bad_request', `--expect: expected <row id>:<64 hex digits>, got "${text}"`);
  }
  return { id: match[1]!, hash: match[2]! };
}

async function readHead(db: Database): Promise<ChainHead> {
  const row = await db.selectFrom('audit_head').select(['last_id', 'last_hash', 'rows']).executeTakeFirst();
  if (!row) throw new DomainError('internal', 'audit_head is missing: the chain head row was removed');
  return { id: row.last_id, hash: row.last_hash, rows: Number(row.rows) };
}

function pageAfter(db: Database, lastId: string, batch: number) {
  return db
    .selectFrom('audit_log as l')
    .leftJoin('audit_addresses as a', 'a.audit_id', 'l.id')
    .select([
      'l.id',
      'l.at',
      'l.actor_type',
      'l.actor_id',
      'l.tenant_id',
      'l.action',
      'l.target_type',
      'l.target_id',
      sql<string | null>`l.source_ip::text`.as('source_ip'),
      'l.source_ip_commit',
      'l.result',
      'l.details',
      'l.prev_hash',
      'l.hash',
      sql<string | null>`a.address::text`.as('address'),
      'a.salt',
    ])
    .where('l.id', '>', lastId)
    .orderBy('l.id')
    .limit(batch)
    .execute();
}

/**
 * Walk the chain in id order, report the first row whose hash or link does
 * not hold, then check that the chain ends at the head and passes `anchor`.
 * The head is read first, in a snapshot of its own: rows appended during the
 * walk come after it and are not checked against it.
 */
export async function verifyAuditChain(
  db: Database,
  options: { anchor?: Anchor; batch?: number } = {},
): Promise<ChainReport> {
  const head = await readHead(db);
  const batch = options.batch ?? 1000;
  const anchor = options.anchor;
  let prev = GENESIS;
  let lastId: string | null = null;
  let rows = 0;
  let anchorSeen = false;
  const fail = (firstBadId: string, reason: TamperReason): ChainReport => ({
    ok: false,
    rows,
    firstBadId,
    reason,
    head,
    chainEnd: { id: lastId, hash: prev },
  });
  const beyondHead = (id: string) => head.id === null || BigInt(id) > BigInt(head.id);
  walk: for (;;) {
    const page = await pageAfter(db, lastId ?? '0', batch);
    for (const row of page) {
      // Appended after the head was read: not part of what this run checks.
      if (beyondHead(row.id)) break walk;
      rows++;
      if (row.prev_hash !== prev) return fail(row.id, 'link_broken');
      if (rowHash(row) !== row.hash) return fail(row.id, 'content_changed');
      // A kept address must be the one committed to (a purge may delete it, nobody may change it).
      if (row.address !== null && addressCommit(row.salt ?? '', row.address) !== row.source_ip_commit) {
        return fail(row.id, 'address_changed');
      }
      if (anchor && row.id === anchor.id) {
        if (row.hash !== anchor.hash) return fail(row.id, 'anchor_mismatch');
        anchorSeen = true;
      }
      prev = row.hash;
      lastId = row.id;
    }
    if (page.length < batch) break;
  }
  if (lastId !== head.id) return fail(head.id ?? lastId ?? '0', 'truncated');
  if (prev !== head.hash) return fail(lastId ?? '0', 'head_mismatch');
  if (anchor && !anchorSeen) return fail(anchor.id, 'anchor_mismatch');
  return { ok: true, rows, head };
}

/** One line for people: what the report means. */
export function describeReport(report: ChainReport): string {
  if (report.ok) {
    const at = report.head.id ? `${report.head.id}:${report.head.hash}` : 'empty';
    return `audit log intact: ${report.rows} rows, chain verified up to its head ${at}`;
  }
  const end = report.chainEnd.id ?? 'the start';
  const why: Record<TamperReason, string> = {
    content_changed: 'its content was changed',
    address_changed: 'its source address is not the one its hash committed to',
    link_broken: 'the row before it was deleted or replaced',
    truncated: `the newest rows were deleted: the chain ends at ${end} but its head records row ${report.head.id ?? '(none)'} (${report.head.rows - report.rows} rows missing)`,
    head_mismatch: 'its hash is not the one the chain head records: the log was rewritten',
    anchor_mismatch: 'it is not the row recorded by --expect: the log was rewritten',
  };
  return `audit log TAMPERED: first bad row id ${report.firstBadId} (${why[report.reason]})`;
}
