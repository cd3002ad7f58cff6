import { ConfigError } from '../config/load.ts';
import type { Database } from '../db/database.ts';
import { discardNextKey, nextKeyFile, promoteNextKey, writeKeyFile } from './master-key.ts';
import { createSecretBox, generateMasterKey, parseMasterKey, type SecretBox } from './secrets.ts';

/**
 * Every column that holds a sealed secret, with the context it is bound to.
 * A new sealed column must be added here, or rotation leaves it unreadable.
 */
export const SEALED_COLUMNS = [
  { table: 'signing_keys', key: 'kid', column: 'private_enc' },
  { table: 'user_totp', key: 'user_id', column: 'secret_enc' },
  { table: 'tenant_services', key: 'id', column: 'db_password_enc' },
  { table: 'tenant_secrets', key: 'id', column: 'value_enc' },
  { table: 'backup_repositories', key: 'id', column: 'password_enc' },
  { table: 'webhook_endpoints', key: 'id', column: 'secret_enc' },
] as const;

export const sealedContext = (table: string, id: string) => `${table}:${id}`;

/** Re-seal every secret with `next`, in one transaction; returns how many values moved. */
export async function resealAll(db: Database, from: SecretBox, next: SecretBox): Promise<number> {
  return db.transaction().execute(async (trx) => {
    let moved = 0;
    for (const { table, key, column } of SEALED_COLUMNS) {
      const rows = await trx
        .selectFrom(table)
        .select([`${key} as id`, `${column} as sealed`])
        .where(column, 'is not', null)
        .forUpdate()
        .execute();
      for (const row of rows as { id: string; sealed: string | null }[]) {
        if (!row.sealed || from.keyIdOf(row.sealed) === next.keyId) continue;
        const context = sealedContext(table, row.id);
        const value = next.seal(from.open(row.sealed, context), context);
        await trx
          .updateTable(table)
          .set({ [column]: value })
          .where(key, '=', row.id)
          .execute();
        moved++;
      }
    }
    return moved;
  });
}

/**
 * Rotate the master key. File mode (no AIQSO_MASTER_KEY): the new key is
 * written to `master.key.next` first, the database re-sealed, then the file
 * renamed over `master.key` — a crash at any point leaves every secret
 * readable. Configured mode: the new key comes from the operator (stdin) and
 * they set AIQSO_MASTER_KEY to it afterwards.
 */
export async function rotateMasterKey(
  db: Database,
  options: { dataDir: string; configured?: string; currentFileKey?: string; newKey?: string },
): Promise<{ keyId: string; resealed: number; mode: 'file' | 'configured' }> {
  const currentB64 = options.configured ?? options.currentFileKey;
  if (!currentB64) throw new Error('no current master key');
  const current = createSecretBox(parseMasterKey(currentB64));
  const newB64 = options.newKey ?? generateMasterKey();
  const nextKey = parseMasterKey(newB64);
  const next = createSecretBox(nextKey, [parseMasterKey(currentB64)]);
  if (options.configured) {
    const resealed = await resealAll(db, current, next);
    return { keyId: next.keyId, resealed, mode: 'configured' };
  }
  await writeKeyFile(nextKeyFile(options.dataDir), newB64);
  try {
    const resealed = await resealAll(db, current, next);
    await promoteNextKey(options.dataDir);
    return { keyId: next.keyId, resealed, mode: 'file' };
  } catch (err) {
    await discardNextKey(options.dataDir);
    throw err;
  }
}

/**
 * Start-up check: the master key must open the secrets this database holds.
 * A platform started with another key (a new data dir, a mistyped
 * AIQSO_MASTER_KEY) would otherwise fail later, request by request. Opens one
 * sealed value per column; an empty database passes.
 */
export async function assertMasterKeyOpens(db: Database, box: SecretBox): Promise<void> {
  for (const { table, key, column } of SEALED_COLUMNS) {
    const row = await db
      .selectFrom(table)
      .select([`${key} as id`, `${column} as sealed`])
      .where(column, 'is not', null)
      .limit(1)
      .executeTakeFirst();
    if (!row?.sealed) continue;
    try {
      box.open(row.sealed, sealedContext(table, row.id));
    } catch {
      throw new ConfigError(
        `AIQSO_MASTER_KEY: the master key (${box.keyId}) does not open the secrets in this database ` +
          `(${table}.${column} is sealed with key ${box.keyIdOf(row.sealed)}); start with the key the ` +
          'database was set up with (AIQSO_MASTER_KEY, or the data dir holding its master.key)',
      );
    }
  }
}
