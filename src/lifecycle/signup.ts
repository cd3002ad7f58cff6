import { emitTenantEvent } from '../events/emit.ts';
import type { BillingPort } from '../core/billing.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { mailboxProblem } from '../core/mailbox.ts';
import { assertValidSlug, validateSlug } from '../core/tenants.ts';
import type { Plan } from '../catalog/plans.ts';
import type { Database } from '../db/database.ts';
import {
  checkPassword,
  hashPassword,
  normaliseEmail,
  passwordProblem,
  verifyPassword,
} from '../identity/passwords.ts';
import { recordMarketingChoice } from '../identity/preferences.ts';
import type { SignupLimiter } from './signup-limit.ts';

export interface SignupInput {
  company: string;
  slug: string;
  email: string;
  password: string;
  plan?: string;
  /** The unticked opt-in to product e-mails; recorded as consent when true. */
  marketingEmails?: boolean;
}

export interface SignupResult {
  tenant: { id: string; slug: string; status: 'pending_payment' };
  ownerId: string;
  checkoutUrl: string;
}

export interface SignupDeps {
  db: Database;
  billing: BillingPort;
  plans: Plan[];
  publicUrl: string;
  /** Decides which email domains are real: only a `localhost` platform accepts `name@localhost`. */
  baseDomain: string;
  /** New tenants per client address and hour; none means no limit. */
  limiter?: SignupLimiter;
}

const fieldError = (
  field: string,
  message: string,
  code: 'validation_failed' | 'conflict' = 'validation_failed',
) => new DomainError(code, `${field}: ${message}`, { details: { field } });

/**
 * A signup with the same slug, email and password as a tenant still waiting
 * for payment is the same customer coming back (a double submit, a closed
 * checkout tab): they get a checkout for that tenant, not an error.
 */
async function resumePending(db: Database, slug: string, email: string, password: string) {
  const row = await db
    .selectFrom('tenants as t')
    .innerJoin('users as u', (j) => j.onRef('u.tenant_id', '=', 't.id').on('u.role', '=', 'tenant_owner'))
    .select(['t.id', 't.status', 't.plan', 'u.id as userId', 'u.email', 'u.password_hash'])
    .where('t.slug', '=', slug)
    .executeTakeFirst();
  if (!row) return undefined;
  const same =
    row.status === 'pending_payment' &&
    row.email === email &&
    row.password_hash !== null &&
    (await verifyPassword(row.password_hash, password));
  return same ? { tenantId: row.id, ownerId: row.userId, plan: row.plan } : undefined;
}

export type SignupField = 'company' | 'slug' | 'email' | 'password' | 'plan';

/**
 * Every problem of a signup's fields at once, each in words that follow the
 * field's name ("is required"), without touching the database: what a form
 * shows next to each field. `signup` checks the same, one at a time.
 */
export function signupProblems(
  deps: Pick<SignupDeps, 'plans' | 'baseDomain'>,
  input: Partial<Record<SignupField, string>>,
): Partial<Record<SignupField, string>> {
  const problems: Partial<Record<SignupField, string>> = {};
  const company = (input.company ?? '').trim();
  if (!company) problems.company = 'is required';
  else if (/[\r\n]/.test(company)) problems.company = 'must be one line';
  else if (company.length > 200) problems.company = 'must be at most 200 characters';
  const slug = (input.slug ?? '').trim();
  const slugProblem = slug ? validateSlug(slug) : 'is required';
  if (slugProblem) problems.slug = slugProblem;
  const email = normaliseEmail(input.email ?? '');
  const emailProblem = email
    ? mailboxProblem(email, { dotlessDomain: deps.baseDomain === 'localhost' })
    : 'is required';
  if (emailProblem) problems.email = emailProblem;
  const password = input.password ?? '';
  const passwordIssue = password ? passwordProblem(password, email) : 'is required';
  if (passwordIssue) problems.password = passwordIssue.replace(/^password /, '');
  if (input.plan !== undefined && input.plan !== '' && !deps.plans.some((p) => p.key === input.plan)) {
    problems.plan = `expected one of ${deps.plans.map((p) => p.key).join(', ')}`;
  }
  return problems;
}

/**
 * Create a tenant waiting for payment and its owner, then a checkout for its
 * plan. Errors name the field: an invalid or reserved slug, a taken slug or
 * email, an email that is not one mailbox, a weak password, an unknown plan.
 * A new tenant counts against its client address's hourly signups.
 */
export async function signup(deps: SignupDeps, input: SignupInput, sourceIp: string): Promise<SignupResult> {
  const company = input.company.trim();
  if (!company) throw fieldError('company', 'is required');
  // It becomes the welcome mail's subject and the dashboard's title: one line.
  if (/[\r\n]/.test(company)) throw fieldError('company', 'must be one line');
  const slug = input.slug.trim();
  assertValidSlug(slug);
  const email = normaliseEmail(input.email);
  const notOne = mailboxProblem(email, { dotlessDomain: deps.baseDomain === 'localhost' });
  if (notOne) throw fieldError('email', notOne);
  checkPassword(input.password, email);
  const plan = input.plan ?? deps.plans[0]!.key;
  if (!deps.plans.some((p) => p.key === plan)) {
    throw fieldError('plan', `expected one of ${deps.plans.map((p) => p.key).join(', ')}`);
  }

  let created = await resumePending(deps.db, slug, email, input.password);
  if (!created) {
    await deps.limiter?.admit(sourceIp);
    const tenantId = newId('tenant');
    const ownerId = newId('user');
    const passwordHash = await hashPassword(input.password);
    try {
      await deps.db.transaction().execute(async (trx) => {
        await trx.insertInto('tenants').values({ id: tenantId, slug, company, plan }).execute();
        await trx
          .insertInto('users')
          .values({
            id: ownerId,
            email,
            role: 'tenant_owner',
            tenant_id: tenantId,
            password_hash: passwordHash,
          })
          .execute();
        if (input.marketingEmails === true) await recordMarketingChoice(trx, ownerId, true, 'signup');
        await emitTenantEvent(trx, 'tenant.created', tenantId);
      });
    } catch (err) {
      const constraint = (err as { constraint?: string }).constraint;
      if (constraint === 'tenants_slug_key') throw fieldError('slug', 'is already taken', 'conflict');
      if (constraint === 'users_email_key') throw fieldError('email', 'already has an account', 'conflict');
      throw err;
    }
    created = { tenantId, ownerId, plan };
  }

  const checkout = await deps.billing.createCheckout({
    tenantId: created.tenantId,
    customerEmail: email,
    plan: created.plan,
    successUrl: `${deps.publicUrl}/signup/welcome?tenant=${encodeURIComponent(slug)}`,
    cancelUrl: `${deps.publicUrl}/signup?cancelled=1`,
  });
  return {
    tenant: { id: created.tenantId, slug, status: 'pending_payment' },
    ownerId: created.ownerId,
    checkoutUrl: checkout.url,
  };
}
