import { sql } from 'kysely';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import type { ServiceTemplate } from './schema.ts';

/**
 * Bring the `services` table in line with the catalog files: insert new
 * templates, update changed ones, and mark removed ones inactive (never
 * deleted: tenants may still run them).
 */
export async function syncCatalog(db: Database, templates: ServiceTemplate[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    for (const t of templates) {
      await trx
        .insertInto('services')
        .values({
          id: newId('service'),
          key: t.key,
          name: t.name,
          description: t.description,
          kind: t.kind,
          template: JSON.stringify(t),
          stripe_price_id: t.stripe_price_id,
        })
        .onConflict((oc) =>
          oc.column('key').doUpdateSet({
            name: t.name,
            description: t.description,
            kind: t.kind,
            template: JSON.stringify(t),
            stripe_price_id: t.stripe_price_id,
            active: true,
            updated_at: sql`now()`,
          }),
        )
        .execute();
    }
    const keys = templates.map((t) => t.key);
    let stale = trx
      .updateTable('services')
      .set({ active: false, updated_at: sql`now()` })
      .where('active', '=', true);
    if (keys.length) stale = stale.where('key', 'not in', keys);
    await stale.execute();
  });
}
