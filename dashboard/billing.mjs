// The tenant dashboard's Billing page (owners): the plan with its price and what it includes, the
// subscription's state, and changing the plan through a confirmation that says what changes and
// the price. The platform's API decides (GET and POST /api/v1/tenants/{tenant}/billing…); the
// change is asked of the billing as a new price on the subscription and the plan follows when
// the subscription update is processed, moments later. "Payment methods and invoices" asks the
// API for a portal session (Stripe's Customer Portal, or local billing mode's page on the
// platform) and sends the browser there. server.mjs registers the page and its forms.
/** @import { IncomingMessage, ServerResponse } from 'node:http' */
/** @import { Answer, Session } from './server.mjs' */
import { badge, confirmDialog, escape, hidden, notice, readForm, send } from './web.mjs';

/**
 * A plan as GET /api/v1/tenants/{tenant}/billing lists it.
 * @typedef {{ key: string, name: string, monthlyCents: number, currency: string, services: number, includes: { storage_gb?: number, requests?: number } }} BillingPlan
 */
/**
 * GET /api/v1/tenants/{tenant}/billing. `pendingPlan`: the plan the subscription is priced at
 * while the tenant's plan has not followed it yet.
 * @typedef {object} BillingOverview
 * @property {'stripe' | 'local'} mode
 * @property {string} status
 * @property {BillingPlan} plan
 * @property {{ status: string, currentPeriodEnd: string | null, cancelAtPeriodEnd: boolean, pendingPlan: string | null } | null} subscription
 * @property {number} servicesInUse
 * @property {BillingPlan[]} plans
 */
/**
 * POST /api/v1/tenants/{tenant}/billing/plan.
 * @typedef {{ from: string, plan: string, state: 'requested' | 'already_requested' }} PlanChange
 */
/**
 * POST /api/v1/tenants/{tenant}/billing/portal: where the signed-in owner manages payment methods
 * and sees invoices.
 * @typedef {{ url: string }} PortalSession
 */
/**
 * What the page needs of server.mjs: the signed-in user's calls, the frame and the form plumbing.
 * @typedef {object} BillingDeps
 * @property {<T>(session: Session, path: string, init?: { method?: string, body?: string }) => Promise<Answer<T>>} asUser
 * @property {(session: Session, current: string, title: string, body: string) => string} frame
 * @property {(session: Session) => string} csrfOf
 * @property {(session: Session, token: string | undefined) => boolean} csrfOk
 * @property {(res: ServerResponse, where: string, message: string, error?: boolean) => void} back
 * @property {(res: ServerResponse) => void} forbidden
 * @property {(answer: Answer<unknown>) => string} refusedWith
 * @property {(url: URL) => string} messageOf
 * @property {string} tenant this tenant's id, URL-encoded
 */

/** "$149.00" (the plan's currency when it is not US dollars: "149.00 EUR"). */
const price = (/** @type {BillingPlan} */ p) =>
  p.currency === 'usd'
    ? `$${(p.monthlyCents / 100).toFixed(2)}`
    : `${(p.monthlyCents / 100).toFixed(2)} ${p.currency.toUpperCase()}`;

/** "12,000" */
const count = (/** @type {number} */ n) => n.toLocaleString('en-US');

/** What a plan gives, in words, one line each. */
function gives(/** @type {BillingPlan} */ p) {
  const lines = [`Up to ${p.services} service${p.services === 1 ? '' : 's'}`];
  if (p.includes.storage_gb !== undefined)
    lines.push(`${count(p.includes.storage_gb)} GB of storage included`);
  if (p.includes.requests !== undefined)
    lines.push(`${count(p.includes.requests)} requests a month included`);
  return lines;
}

/** "2026-12-06" */
const day = (/** @type {string} */ t) => new Date(t).toISOString().slice(0, 10);

/** The subscription's state in words, with its badge. */
function subscriptionState(/** @type {BillingOverview} */ b) {
  const s = b.subscription;
  if (!s)
    return `<p>${badge('off', 'No subscription')} This workspace was not signed up through checkout.</p>`;
  const tone =
    s.status === 'active' || s.status === 'trialing' ? 'ok' : s.status === 'past_due' ? 'warn' : 'bad';
  const words = s.status.replace(/_/g, ' ');
  const end = s.currentPeriodEnd
    ? s.cancelAtPeriodEnd
      ? ` Ends on ${day(s.currentPeriodEnd)}.`
      : ` Renews on ${day(s.currentPeriodEnd)}.`
    : '';
  return `<p>Subscription: ${badge(tone, words[0]?.toUpperCase() + words.slice(1))}${escape(end)}</p>`;
}

/**
 * The confirmation for moving to `to`: what changes, and the price.
 * @param {BillingOverview} b
 * @param {BillingPlan} to
 */
function confirmText(b, to) {
  const from = b.plan;
  const upgrade = to.monthlyCents >= from.monthlyCents;
  const billing =
    b.mode === 'local'
      ? 'Local billing mode: nothing is charged.'
      : `The difference is prorated for the rest of this period on your next invoice${upgrade ? '' : ' (a credit)'}.`;
  const lower = (/** @type {string} */ l) => `${l.charAt(0).toLowerCase()}${l.slice(1)}`;
  const now = gives(from).map(lower).join(', ');
  const then = gives(to).map(lower).join(', ');
  return `Your plan changes from ${from.name} (${price(from)} a month) to ${to.name} (${price(to)} a month): ${then}, instead of ${now}. ${billing}`;
}

/**
 * @param {BillingDeps} deps
 */
export function billingPages(deps) {
  /**
   * @param {Session} session
   * @param {URL} url
   */
  async function page(session, url) {
    /** @type {Answer<BillingOverview>} */
    const answer = await deps
      .asUser(session, `/api/v1/tenants/${deps.tenant}/billing`)
      .catch(() => ({ status: 503, body: {} }));
    if (answer.status !== 200) {
      const why =
        answer.status === 403 ? 'Only owners can see and change billing.' : deps.refusedWith(answer);
      return deps.frame(session, 'billing', 'Billing', `<h1>Billing</h1>${notice(why, 'error')}`);
    }
    const b = /** @type {BillingOverview} */ (answer.body);
    const current = b.plan;
    const pending = b.subscription?.pendingPlan
      ? b.plans.find((p) => p.key === b.subscription?.pendingPlan)
      : undefined;
    const cards = b.plans
      .map((p) => {
        const mine = p.key === current.key;
        const over = b.servicesInUse - p.services;
        const action = mine
          ? `<p>${badge('info', 'Your plan')}</p>`
          : b.status !== 'active'
            ? `<p class="muted">Plans can change while the workspace is active.</p>`
            : over > 0
              ? `<p class="muted">${escape(`Unsubscribe ${over} service${over === 1 ? '' : 's'} first: ${p.name} allows ${p.services} and you have ${b.servicesInUse}.`)}</p>`
              : `<p><a class="button${p.monthlyCents < current.monthlyCents ? ' secondary' : ''}" href="#plan-${escape(p.key)}">Change to ${escape(p.name)}…</a></p>`;
        return `<li class="card"${mine ? ' aria-current="true"' : ''}><h3>${escape(p.name)}</h3>
<p class="price">${escape(price(p))} <span class="muted">a month</span></p>
<ul>${gives(p)
          .map((l) => `<li>${escape(l)}</li>`)
          .join('')}</ul>${action}</li>`;
      })
      .join('\n');
    const dialogs = b.plans
      .filter((p) => p.key !== current.key && b.status === 'active' && b.servicesInUse <= p.services)
      .map((p) =>
        confirmDialog({
          id: `plan-${p.key}`,
          title: `Change to ${p.name}?`,
          text: confirmText(b, p),
          action: 'billing-plan',
          fields: `${deps.csrfOf(session)}${hidden('plan', p.key)}`,
          confirm: `Change to ${p.name} for ${price(p)} a month`,
          tone: '',
        }),
      )
      .join('\n');
    const body = `<h1>Billing</h1>${deps.messageOf(url)}
${b.mode === 'local' ? notice('Local billing mode: payments are simulated and nothing is charged.') : ''}
<div class="card"><h2>${escape(current.name)} plan</h2>
<p class="price">${escape(price(current))} <span class="muted">a month</span></p>
<ul>${gives(current)
      .map((l) => `<li>${escape(l)}</li>`)
      .join(
        '',
      )}<li>${escape(`${b.servicesInUse} service${b.servicesInUse === 1 ? '' : 's'} in use`)}</li></ul>
${subscriptionState(b)}
${pending ? `<p>${escape(`Changing to ${pending.name}: it takes effect once the payment provider confirms it.`)}</p>` : ''}</div>
<h2>Payment methods and invoices</h2>
<p>${
      b.mode === 'local'
        ? 'Local billing mode keeps no card and issues no invoices; its page shows your subscription and the payments it recorded.'
        : 'Your card, billing details and invoices are kept by Stripe: change them and download invoices in its customer portal, which brings you back here.'
    }</p>
<form method="post" action="billing-portal">${deps.csrfOf(session)}<button type="submit" class="secondary">Payment methods and invoices</button></form>
<h2>Plans</h2>
<p class="muted">A plan change takes effect as soon as the payment provider confirms it, usually within moments; the services limit and what usage is measured against follow.</p>
<ul class="grid">${cards}</ul>
${dialogs}`;
    return deps.frame(session, 'billing', 'Billing', body);
  }

  /**
   * The confirmation's form: change the plan as the signed-in user; the answer on the page.
   * @param {IncomingMessage} req
   * @param {ServerResponse} res
   * @param {Session} session
   */
  async function change(req, res, session) {
    const form = await readForm(req);
    if (!deps.csrfOk(session, form.csrf)) return deps.forbidden(res);
    const plan = String(form.plan ?? '');
    /** @type {Answer<PlanChange>} */
    const answer = await deps
      .asUser(session, `/api/v1/tenants/${deps.tenant}/billing/plan`, {
        method: 'POST',
        body: JSON.stringify({ plan }),
      })
      .catch(() => ({ status: 503, body: {} }));
    if (answer.status !== 202) return deps.back(res, 'billing', deps.refusedWith(answer), true);
    const done = /** @type {PlanChange} */ (answer.body);
    return deps.back(
      res,
      'billing',
      done.state === 'already_requested'
        ? `The change to ${done.plan} is already on its way; this page shows it once confirmed.`
        : `Your plan is changing from ${done.from} to ${done.plan}; this page shows it once the payment provider confirms it.`,
    );
  }

  /**
   * "Payment methods and invoices": a portal session as the signed-in user, then on to it (a
   * refusal is shown on the page, in words).
   * @param {IncomingMessage} req
   * @param {ServerResponse} res
   * @param {Session} session
   */
  async function portal(req, res, session) {
    const form = await readForm(req);
    if (!deps.csrfOk(session, form.csrf)) return deps.forbidden(res);
    /** @type {Answer<PortalSession>} */
    const answer = await deps
      .asUser(session, `/api/v1/tenants/${deps.tenant}/billing/portal`, { method: 'POST' })
      .catch(() => ({ status: 503, body: {} }));
    const url = answer.status === 201 ? /** @type {PortalSession} */ (answer.body).url : '';
    if (!/^https?:\/\//.test(url)) return deps.back(res, 'billing', deps.refusedWith(answer), true);
    return send(res, 303, '', { location: url });
  }

  return { page, change, portal };
}
