import { randomBytes } from 'node:crypto';
import type { Database } from '../db/database.ts';
import { newId } from '../core/ids.ts';
import { hashPassword } from './passwords.ts';

export type AdminBootstrap =
  { created: false; email: string } | { created: true; email: string; password: string; generated: boolean };

/**
 * Make sure a first platform admin exists. With no configured password a
 * random one is generated and returned once for the operator to read; only its
 * hash is stored.
 */
export async function ensureFirstAdmin(
  db: Database,
  wanted: { email?: string; password?: string },
  baseDomain: string,
): Promise<AdminBootstrap> {
  const existing = await db
    .selectFrom('users')
    .select('email')
    .where('role', '=', 'platform_admin')
    .orderBy('id')
    .executeTakeFirst();
  if (existing) return { created: false, email: existing.email };
  const email = (wanted.email ?? `admin@${baseDomain}`).trim().toLowerCase();
  const generated = wanted.password === undefined;
  const password = wanted.password ?? randomBytes(15).toString('base64url');
  const inserted = await db
    .insertInto('users')
    .values({
      id: newId('user'),
      email,
      role: 'platform_admin',
      tenant_id: null,
      password_hash: await hashPassword(password),
    })
    .onConflict((oc) => oc.column('email').doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!inserted) return { created: false, email };
  return { created: true, email, password, generated };
}
