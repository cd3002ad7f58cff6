import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { z } from 'zod';
import type { ApiServer } from '../server.ts';
import { conflict, DomainError, notFound } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { tenantUrl } from '../../core/services.ts';
import type { Database } from '../../db/database.ts';
import { writeOutbox } from '../../orchestrator/outbox.ts';
import { checkPassword, hashPassword, normaliseEmail } from '../../identity/passwords.ts';
import { revokeUserSessions } from '../../identity/sessions.ts';
import { requireOpenTenant, type TenantAccess, type TenantTx } from '../../identity/tenant-access.ts';
import { principalOf } from './authenticate.ts';

/** How long an invitation link works. */
export const INVITATION_HOURS = 72;

const TenantParams = z.object({ tenant: z.string().min(1).max(80) });
const TeamRole = z.enum(['tenant_owner', 'tenant_member']);
const InvitationOut = z.object({
  id: z.string(),
  email: z.string(),
  role: z.string(),
  createdAt: z.string(),
  expiresAt: z.string(),
});
const UserOut = z.object({ id: z.string(), email: z.string(), role: z.string(), createdAt: z.string() });

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

const invitationOut = (r: {
  id: string;
  email: string;
  role: string;
  created_at: Date;
  expires_at: Date;
}) => ({
  id: r.id,
  email: r.email,
  role: r.role,
  createdAt: r.created_at.toISOString(),
  expiresAt: r.expires_at.toISOString(),
});

/**
 * A tenant's team: invite by e-mail link (owners; the link works once, for
 * INVITATION_HOURS), list and withdraw open invitations, change a member's
 * role and remove a member (owners; never the tenant's last owner). Accepting
 * an invitation is public: the token is the credential, and the tenant named
 * with it must be the invitation's.
 */
export function teamRoutes(
  app: ApiServer,
  deps: { db: Database; access: TenantAccess; publicUrl: string },
): void {
  const { db, access } = deps;

  app.get(
    '/api/v1/tenants/:tenant/invitations',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['tenants'],
        summary: "The tenant's open invitations (not accepted, withdrawn or expired)",
        params: TenantParams,
        response: { 200: z.object({ invitations: z.array(InvitationOut) }) },
      },
    },
    async (request) =>
      access.forTenant(principalOf(request), request.params.tenant, 'tenant_owner', async ({ trx }) => {
        const rows = await trx
          .selectFrom('invitations')
          .select(['id', 'email', 'role', 'created_at', 'expires_at'])
          .where('accepted_at', 'is', null)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', sql<Date>`now()`)
          .orderBy('id')
          .execute();
        return { invitations: rows.map(invitationOut) };
      }),
  );

  app.post(
    '/api/v1/tenants/:tenant/invitations',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.invitation.create' },
      schema: {
        tags: ['tenants'],
        summary: `Invite someone by e-mail: a link that works once, for ${INVITATION_HOURS} hours, lets them set a password and sign in (not to a suspended or cancelled tenant)`,
        params: TenantParams,
        body: z.object({ email: z.email(), role: TeamRole.default('tenant_member') }).strict(),
        response: { 201: InvitationOut },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const email = normaliseEmail(request.body.email);
      const { tenantId, slug, company } = await access.forTenant(
        principal,
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId };
          await requireOpenTenant(trx, tenantId, 'users');
          const t = await trx
            .selectFrom('tenants')
            .select(['slug', 'company'])
            .where('id', '=', tenantId)
            .executeTakeFirstOrThrow();
          return { tenantId, slug: t.slug, company: t.company };
        },
      );
      const token = randomBytes(32).toString('base64url');
      const row = await db.transaction().execute(async (trx) => {
        const taken = await trx
          .selectFrom('users')
          .select('id')
          .where('email', '=', email)
          .executeTakeFirst();
        if (taken) throw conflict(`a user with email ${email} already exists`, { field: 'email' });
        // A new invitation for the same address replaces the open one.
        await trx
          .updateTable('invitations')
          .set({ revoked_at: new Date() })
          .where('tenant_id', '=', tenantId)
          .where('email', '=', email)
          .where('accepted_at', 'is', null)
          .where('revoked_at', 'is', null)
          .execute();
        const created = await trx
          .insertInto('invitations')
          .values({
            id: newId('invitation'),
            tenant_id: tenantId,
            email,
            role: request.body.role,
            token_hash: hashToken(token),
            invited_by: principal.id,
            expires_at: new Date(Date.now() + INVITATION_HOURS * 3_600_000),
          })
          .returning(['id', 'email', 'role', 'created_at', 'expires_at'])
          .executeTakeFirstOrThrow();
        const link = `${tenantUrl(deps.publicUrl, slug)}/invite?token=${token}`;
        const name = company ?? slug;
        await writeOutbox(trx, {
          key: `invitation:${created.id}`,
          kind: 'email',
          payload: {
            to: email,
            subject: `You are invited to ${name}`,
            text: [
              `You are invited to join ${name} (${slug}) as ${request.body.role === 'tenant_owner' ? 'an owner' : 'a member'}.`,
              '',
              `Set your password and sign in: ${link}`,
              '',
              `The link works once, until ${created.expires_at.toISOString().slice(0, 16).replace('T', ' ')} UTC. If you did not expect this, ignore this mail.`,
            ].join('\n'),
            template: 'invitation',
            tenantId,
          },
        });
        return created;
      });
      request.audit = { tenantId, targetType: 'invitation', targetId: row.id };
      return reply.status(201).send(invitationOut(row));
    },
  );

  app.delete(
    '/api/v1/tenants/:tenant/invitations/:invitationId',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.invitation.revoke' },
      schema: {
        tags: ['tenants'],
        summary: 'Withdraw an open invitation: its link stops working at once',
        params: TenantParams.extend({ invitationId: z.string().min(1).max(80) }),
        response: { 200: InvitationOut },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId, targetType: 'invitation', targetId: request.params.invitationId };
          const row = await trx
            .updateTable('invitations')
            .set({ revoked_at: new Date() })
            .where('id', '=', request.params.invitationId)
            .where('accepted_at', 'is', null)
            .where('revoked_at', 'is', null)
            .returning(['id', 'email', 'role', 'created_at', 'expires_at'])
            .executeTakeFirst();
          if (!row) throw notFound(`open invitation ${request.params.invitationId}`);
          return invitationOut(row);
        },
      ),
  );

  app.post(
    '/api/v1/invitations/accept',
    {
      config: { public: true, auditAction: 'tenant.invitation.accept' },
      schema: {
        tags: ['tenants'],
        summary:
          "Accept an invitation: its token (from the mailed link) and the tenant it is for, and the new user's password; the link works once",
        body: z
          .object({
            token: z.string().min(20).max(100),
            tenant: z.string().min(1).max(80),
            password: z.string().max(1024),
          })
          .strict(),
        response: { 201: UserOut.extend({ tenantId: z.string() }) },
      },
    },
    async (request, reply) => {
      const { token, tenant, password } = request.body;
      const invalid = () =>
        new DomainError('not_found', 'this invitation link is not valid: it was used, withdrawn or expired', {
          details: { field: 'token' },
        });
      const invitation = await db
        .selectFrom('invitations as i')
        .innerJoin('tenants as t', 't.id', 'i.tenant_id')
        .select(['i.id', 'i.email', 'i.tenant_id', 't.slug'])
        .where('i.token_hash', '=', hashToken(token))
        .where('i.accepted_at', 'is', null)
        .where('i.revoked_at', 'is', null)
        .where('i.expires_at', '>', sql<Date>`now()`)
        .executeTakeFirst();
      if (!invitation || (tenant !== invitation.tenant_id && tenant !== invitation.slug)) throw invalid();
      checkPassword(password, invitation.email);
      const passwordHash = await hashPassword(password);
      const user = await db.transaction().execute(async (trx) => {
        // Single use: the first request to mark it accepted wins.
        const claimed = await trx
          .updateTable('invitations')
          .set({ accepted_at: new Date() })
          .where('id', '=', invitation.id)
          .where('accepted_at', 'is', null)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', sql<Date>`now()`)
          .returning(['role', 'tenant_id', 'email'])
          .executeTakeFirst();
        if (!claimed) throw invalid();
        await requireOpenTenant(trx, claimed.tenant_id, 'users');
        const row = await trx
          .insertInto('users')
          .values({
            id: newId('user'),
            email: claimed.email,
            role: claimed.role,
            tenant_id: claimed.tenant_id,
            password_hash: passwordHash,
          })
          .onConflict((oc) => oc.column('email').doNothing())
          .returning(['id', 'email', 'role', 'created_at', 'tenant_id'])
          .executeTakeFirst();
        if (!row) throw conflict(`a user with email ${claimed.email} already exists`, { field: 'token' });
        return row;
      });
      request.audit = {
        tenantId: invitation.tenant_id,
        actorId: user.id,
        targetType: 'invitation',
        targetId: invitation.id,
      };
      return reply.status(201).send({
        id: user.id,
        email: user.email,
        role: user.role,
        createdAt: user.created_at.toISOString(),
        tenantId: user.tenant_id!,
      });
    },
  );

  /** Refuse a change that would leave the tenant without an owner. */
  /** A member of the tenant (the transaction's row scope), locked until it ends; 404 when there is none. */
  async function lockMember(trx: TenantTx, userId: string) {
    const member = await trx
      .selectFrom('users')
      .select(['id', 'role'])
      .where('id', '=', userId)
      .forUpdate()
      .executeTakeFirst();
    if (!member) throw notFound(`user ${userId}`);
    return member;
  }

  async function keepAnOwner(trx: TenantTx, userId: string) {
    const owners = await trx
      .selectFrom('users')
      .select('id')
      .where('role', '=', 'tenant_owner')
      .where('id', '!=', userId)
      .execute();
    if (owners.length === 0)
      throw conflict('the workspace needs at least one owner: make someone else an owner first', {
        field: 'role',
      });
  }

  app.patch(
    '/api/v1/tenants/:tenant/users/:userId',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.user.role' },
      schema: {
        tags: ['tenants'],
        summary: "Change a team member's role (owners); the tenant always keeps at least one owner",
        params: TenantParams.extend({ userId: z.string().min(1).max(80) }),
        body: z.object({ role: TeamRole }).strict(),
        response: { 200: UserOut },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId, targetType: 'user', targetId: request.params.userId };
          const current = await lockMember(trx, request.params.userId);
          if (current.role === 'tenant_owner' && request.body.role !== 'tenant_owner')
            await keepAnOwner(trx, current.id);
          const row = await trx
            .updateTable('users')
            .set({ role: request.body.role, updated_at: new Date() })
            .where('id', '=', current.id)
            .returning(['id', 'email', 'role', 'created_at'])
            .executeTakeFirstOrThrow();
          return { id: row.id, email: row.email, role: row.role, createdAt: row.created_at.toISOString() };
        },
      ),
  );

  app.delete(
    '/api/v1/tenants/:tenant/users/:userId',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.user.remove' },
      schema: {
        tags: ['tenants'],
        summary:
          'Remove a team member (owners): their account, sessions and access end at once; never the last owner',
        params: TenantParams.extend({ userId: z.string().min(1).max(80) }),
        response: { 200: UserOut },
      },
    },
    async (request) => {
      const removed = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId, targetType: 'user', targetId: request.params.userId };
          const current = await lockMember(trx, request.params.userId);
          if (current.role === 'tenant_owner') await keepAnOwner(trx, current.id);
          const row = await trx
            .deleteFrom('users')
            .where('id', '=', current.id)
            .returning(['id', 'email', 'role', 'created_at'])
            .executeTakeFirstOrThrow();
          return { id: row.id, email: row.email, role: row.role, createdAt: row.created_at.toISOString() };
        },
      );
      // Their sessions went with the row (ON DELETE CASCADE); this covers none being left behind.
      await revokeUserSessions(db, removed.id);
      return removed;
    },
  );
}
