import { rm } from 'node:fs/promises';
import path from 'node:path';
import { mailFileName } from '../mail/files.ts';
import type { PurgeTargets } from './purge-data.ts';

/**
 * A purged tenant's files in this machine's data directory: its final dumps
 * (`<data>/backups/<slug>/`, and any recorded backup file under
 * `<data>/backups/`) and the mail the files mailer wrote to it or its people
 * (`<data>/mail/`, named by outbox key). Only paths inside the data directory
 * are touched, whatever a database row says. Idempotent.
 */
export async function removeTenantFiles(dataDir: string, t: PurgeTargets): Promise<number> {
  const backups = path.resolve(dataDir, 'backups');
  const mail = path.resolve(dataDir, 'mail');
  const files = [
    ...t.backupLocations.map((l) => path.resolve(l)).filter((l) => l.startsWith(`${backups}${path.sep}`)),
    ...t.mailKeys.flatMap((key) => {
      const file = path.join(mail, mailFileName(key));
      return [file, `${file}.tmp`];
    }),
  ];
  // A recorded restic repository is a directory, removed with its key (backup/repositories.ts).
  for (const file of files) await rm(file, { force: true }).catch(ignoreDirectory);
  // A slug (a DNS label, checked by the database) is a plain directory name.
  if (/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(t.slug)) {
    await rm(path.join(backups, t.slug), { recursive: true, force: true });
  }
  return files.length;
}

function ignoreDirectory(err: unknown): void {
  if ((err as { code?: string }).code !== 'ERR_FS_EISDIR') throw err;
}
