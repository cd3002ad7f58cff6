import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit, rowHash } from '../src/identity/audit.ts';
import { verifyAuditChain, type ChainReport } from '../src/identity/audit-verify.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Tampering `aiqso audit verify` must reveal, each on a chain of its own:
 * an edited row, a deleted middle row, deleted newest rows (which leave no
 * broken link behind, only a chain that stops short of its head), and a
 * consistent rewrite of chain and head, which only a head kept outside the
 * database (`--expect`) reveals.
 */
let dataDir: string;
const open: TestDatabase[] = [];
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-audit-'));
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((db) => db.drop()));
});
afterAll(() => rm(dataDir, { recursive: true, force: true }));

async function chainOf(rows: number): Promise<{ db: TestDatabase; ids: string[] }> {
  const db = await createTestDatabase({ max: 2 });
  open.push(db);
  for (let i = 0; i < rows; i++) {
    await appendAudit(db.db, {
      actorType: 'system',
      actorId: null,
      tenantId: null,
      action: 'test.tamper',
      sourceIp: i % 2 ? '198.51.100.4' : null,
      result: 'success',
      details: { i },
    });
  }
  const ids = (await db.db.selectFrom('audit_log').select('id').orderBy('id').execute()).map((r) => r.id);
  return { db, ids };
}

/** As a superuser who switches triggers off: the tampering the chain must reveal. */
async function asIntruder(db: TestDatabase, ...statements: ReturnType<typeof sql>[]) {
  await db.db.transaction().execute(async (trx) => {
    await sql`SET LOCAL session_replication_role = replica`.execute(trx);
    for (const s of statements) await s.execute(trx);
  });
}

const verifyCli = (db: TestDatabase, ...extra: string[]) =>
  runCli(['audit', 'verify', ...extra], { DATABASE_URL: db.url, AIQSO_DATA_DIR: dataDir });

describe('audit chain head', () => {
  it('verifies a clean chain up to its head, and prints the head to keep', async () => {
    const { db, ids } = await chainOf(6);
    const report = await verifyAuditChain(db.db, { batch: 4 });
    expect(report).toMatchObject({ ok: true, rows: 6, head: { id: ids[5], rows: 6 } });
    const cli = await verifyCli(db);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain(`6 rows, chain verified up to its head ${ids[5]}:${report.head.hash}`);
  });

  it('detects an edited row', async () => {
    const { db, ids } = await chainOf(6);
    await asIntruder(db, sql`UPDATE audit_log SET result = 'failure' WHERE id = ${ids[2]}`);
    expect(await verifyAuditChain(db.db)).toMatchObject({
      ok: false,
      firstBadId: ids[2],
      reason: 'content_changed',
    });
  });

  it('keeps source addresses beside the chain: deleting one (a purge) verifies, changing one does not', async () => {
    const { db, ids } = await chainOf(6);
    // Odd rows have an address: the chain holds only its salted commitment.
    const row = await db.db
      .selectFrom('audit_log')
      .selectAll()
      .where('id', '=', ids[1]!)
      .executeTakeFirstOrThrow();
    expect(row.source_ip).toBeNull();
    expect(row.source_ip_commit).toMatch(/^[0-9a-f]{64}$/);
    await expect(
      sql`UPDATE audit_addresses SET address = '203.0.113.9' WHERE audit_id = ${ids[1]}`.execute(db.db),
    ).rejects.toThrow(/append-only/);
    await sql`DELETE FROM audit_addresses WHERE audit_id = ${ids[1]}`.execute(db.db);
    expect(await verifyAuditChain(db.db)).toMatchObject({ ok: true, rows: 6 });
    await asIntruder(db, sql`UPDATE audit_addresses SET address = '203.0.113.9' WHERE audit_id = ${ids[3]}`);
    expect(await verifyAuditChain(db.db)).toMatchObject({
      ok: false,
      firstBadId: ids[3],
      reason: 'address_changed',
    });
  });

  it('detects a deleted middle row', async () => {
    const { db, ids } = await chainOf(6);
    await asIntruder(db, sql`DELETE FROM audit_log WHERE id = ${ids[3]}`);
    expect(await verifyAuditChain(db.db)).toMatchObject({
      ok: false,
      firstBadId: ids[4],
      reason: 'link_broken',
    });
  });

  it('detects the deleted newest row (exit 1, the head names it)', async () => {
    const { db, ids } = await chainOf(6);
    await asIntruder(db, sql`DELETE FROM audit_log WHERE id = ${ids[5]}`);
    const cli = await verifyCli(db, '--json');
    expect(cli.code, cli.stderr).toBe(1);
    expect(JSON.parse(cli.stdout)).toMatchObject({
      ok: false,
      reason: 'truncated',
      firstBadId: ids[5],
      rows: 5,
      head: { id: ids[5], rows: 6 },
      chainEnd: { id: ids[4] },
    });
  });

  it('detects the newest N rows deleted, and every row deleted', async () => {
    const { db, ids } = await chainOf(8);
    await asIntruder(db, sql`DELETE FROM audit_log WHERE id > ${ids[2]}`);
    const cli = await verifyCli(db);
    expect(cli.code).toBe(1);
    expect(cli.stdout).toContain(`first bad row id ${ids[7]}`);
    expect(cli.stdout).toContain(`the chain ends at ${ids[2]}`);
    expect(cli.stdout).toContain('(5 rows missing)');
    await asIntruder(db, sql`DELETE FROM audit_log`);
    expect(await verifyAuditChain(db.db)).toMatchObject({ ok: false, reason: 'truncated', rows: 0 });
  });

  it('keeps a truncation visible after later appends', async () => {
    const { db, ids } = await chainOf(5);
    await asIntruder(db, sql`DELETE FROM audit_log WHERE id >= ${ids[3]}`);
    await appendAudit(db.db, {
      actorType: 'system',
      actorId: null,
      tenantId: null,
      action: 'test.after',
      result: 'success',
    });
    const report = await verifyAuditChain(db.db);
    expect(report).toMatchObject({ ok: false, reason: 'link_broken' });
    expect(BigInt((report as Extract<ChainReport, { ok: false }>).firstBadId)).toBeGreaterThan(
      BigInt(ids[4]!),
    );
  });

  it('lets nobody move the head or append off the head through SQL', async () => {
    const { db } = await chainOf(2);
    await expect(sql`UPDATE audit_head SET rows = 0`.execute(db.db)).rejects.toThrow(/moves only/);
    await expect(sql`DELETE FROM audit_head`.execute(db.db)).rejects.toThrow(/moves only/);
    await expect(sql`TRUNCATE audit_head`.execute(db.db)).rejects.toThrow(/moves only/);
    await expect(
      sql`INSERT INTO audit_head (singleton, last_hash, rows) VALUES (false, 'x', 0)`.execute(db.db),
    ).rejects.toThrow(/moves only/);
    await expect(
      sql`INSERT INTO audit_log (actor_type, action, result, prev_hash, hash)
          VALUES ('system', 'forged', 'success', ${'0'.repeat(64)}, 'forged')`.execute(db.db),
    ).rejects.toThrow(/does not link to the chain head/);
    expect(await verifyAuditChain(db.db)).toMatchObject({ ok: true, rows: 2 });
  });

  it('reveals a consistent rewrite of chain and head only against a head kept elsewhere (--expect)', async () => {
    const { db, ids } = await chainOf(5);
    const kept = await verifyAuditChain(db.db);
    const anchor = `${kept.head.id}:${kept.head.hash}`;
    expect((await verifyCli(db, '--expect', anchor)).code).toBe(0);

    // The intruder deletes the newest two rows and points the head at what is left.
    const survivor = await db.db
      .selectFrom('audit_log')
      .selectAll()
      .where('id', '=', ids[2]!)
      .executeTakeFirstOrThrow();
    await asIntruder(
      db,
      sql`DELETE FROM audit_log WHERE id > ${ids[2]}`,
      sql`UPDATE audit_head SET last_id = ${survivor.id}, last_hash = ${survivor.hash}, rows = 3`,
    );
    expect(await verifyAuditChain(db.db)).toMatchObject({ ok: true, rows: 3 });
    const caught = await verifyCli(db, '--expect', anchor, '--json');
    expect(caught.code).toBe(1);
    expect(JSON.parse(caught.stdout)).toMatchObject({
      ok: false,
      reason: 'anchor_mismatch',
      firstBadId: ids[4],
    });

    // Editing a row and recomputing every later hash is caught the same way.
    const { db: db2, ids: ids2 } = await chainOf(3);
    const kept2 = await verifyAuditChain(db2.db);
    const rows = await db2.db
      .selectFrom('audit_log')
      .selectAll()
      .select(sql<string | null>`source_ip::text`.as('source_ip'))
      .orderBy('id')
      .execute();
    let prev = '0'.repeat(64);
    const rewrites: ReturnType<typeof sql>[] = [];
    for (const row of rows) {
      const fields = {
        ...row,
        result: row.id === ids2[0] ? ('failure' as const) : row.result,
        prev_hash: prev,
      };
      const hash = rowHash(fields);
      rewrites.push(
        sql`UPDATE audit_log SET result = ${fields.result}, prev_hash = ${prev}, hash = ${hash} WHERE id = ${row.id}`,
      );
      prev = hash;
    }
    rewrites.push(sql`UPDATE audit_head SET last_hash = ${prev}`);
    await asIntruder(db2, ...rewrites);
    expect(await verifyAuditChain(db2.db)).toMatchObject({ ok: true });
    expect(
      await verifyAuditChain(db2.db, { anchor: { id: kept2.head.id!, hash: kept2.head.hash } }),
    ).toMatchObject({ ok: false, reason: 'anchor_mismatch', firstBadId: ids2[2] });
  });

  it('reports a head that no longer matches the newest row', async () => {
    const { db, ids } = await chainOf(3);
    await asIntruder(db, sql`UPDATE audit_head SET last_hash = ${'f'.repeat(64)}`);
    expect(await verifyAuditChain(db.db)).toMatchObject({
      ok: false,
      reason: 'head_mismatch',
      firstBadId: ids[2],
    });
  });

  it('documents its exit codes in --help', async () => {
    const help = await runCli(['audit', 'verify', '--help'], {});
    expect(help.stdout).toContain('Exit codes: 0 the chain is intact');
    expect(help.stdout).toContain('--expect <id:hash>');
  });

  it('refuses a malformed --expect with exit code 2', async () => {
    const { db } = await chainOf(1);
    const cli = await verifyCli(db, '--expect', 'seven:abc');
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('--expect: expected <row id>:<64 hex digits>');
  });
});
