import { randomBytes } from 'node:crypto';
import type { Database } from '../db/database.ts';
import { newId } from '../core/ids.ts';
import { hashPassword, normaliseEmail } from './passwords.ts';
import { totpEnabled } from './totp.ts';

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
  const email = normaliseEmail(wanted.email ?? `admin@${baseDomain}`);
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

/**
 * The banner lines that say how the admin really logs in: platform admins
 * must enrol TOTP first, and the login route hands out the enrolment token.
 */
export async function adminLoginHelp(db: Database, email: string, publicUrl: string): Promise<string[]> {
  const user = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
  if (user && (await totpEnabled(db, user.id))) {
    return [
      `  Two-factor       enrolled: sign in at ${publicUrl}/admin with email, password and the authenticator code (or a recovery code)`,
    ];
  }
  return [
    '  Two-factor       required for admins, not yet enrolled: the first sign-in at',
    `                   ${publicUrl}/admin sets it up (a QR code for an authenticator app, then recovery codes).`,
    '                   Over the API: POST /api/v1/auth/login {"email","password"} → 403 with an enrolmentToken;',
    '                   with it as bearer POST /api/v1/auth/totp/enrol (add otpauthUrl to an authenticator app),',
    '                   then /api/v1/auth/totp/confirm {"code"} (keep the recovery codes); then log in with "totp".',
  ];
}
