import { Readable } from 'node:stream';
import { newId } from '../../src/core/ids.ts';
import { backupEngine } from '../../src/platform/backups.ts';
import type { Harness } from './identity.ts';

/**
 * A real snapshot of a tenant's notes database in its restic repository (the
 * repository made if missing), recorded in `backups` as a backup run would:
 * for the tests of the routes that list and restore snapshots.
 */
export async function recordSnapshot(
  h: Harness,
  s: { tenantId: string; tenantServiceId: string; runId: string; content: string; rowCounts?: object },
): Promise<string> {
  const { restic, keys } = backupEngine(h.config, h.db.db);
  const repo = await keys.forTenant(s.tenantId);
  if (!(await restic.exists(repo))) await restic.init(repo);
  const tags = [`tenant=${s.tenantId}`, 'service=notes', 'kind=database', `run=${s.runId}`];
  await restic.backupStdin(repo, {
    stdin: Readable.from([s.content]),
    filename: 'database.dump',
    tags,
    host: 'aiqso',
  });
  const [snap] = await restic.snapshots(repo, tags);
  await h.db.db
    .insertInto('backups')
    .values({
      id: newId('backup'),
      tenant_id: s.tenantId,
      tenant_service_id: s.tenantServiceId,
      kind: 'database',
      status: 'done',
      service: 'notes',
      snapshot_id: snap!.id,
      run_id: s.runId,
      ...(s.rowCounts ? { row_counts: JSON.stringify(s.rowCounts) } : {}),
    })
    .execute();
  return snap!.id;
}
