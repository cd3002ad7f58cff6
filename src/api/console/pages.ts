import { escapeHtml } from '../../web/html.ts';
import { badge, confirmDialog, designPage, emptyState, field, notice, table } from '../../web/design.ts';
import { TENANT_STATUSES } from '../../core/tenants.ts';

/** The operator console's pages: pure functions of what the API answered. Every value is escaped. */

const csrfField = (csrf: string) => `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">`;

function signedInNav(csrf: string): string {
  return `<a href="/admin/tenants">Tenants</a><a href="/admin/users">Users</a><a href="/admin/jobs">Jobs</a><a href="/admin/hosts">Hosts</a><a href="/admin/backups">Backups</a><a href="/admin/usage">Usage</a><a href="/admin/certificates">Certificates</a><a href="/admin/audit">Audit</a><a href="/admin/catalog">Catalog</a><a href="/admin/webhooks">Webhooks</a><a href="/admin/config">Configuration</a><a href="/api/docs">API reference</a>
<form method="post" action="/admin/logout">${csrfField(csrf)}<button type="submit" class="link-button">Sign out</button></form>`;
}

export function consolePage(title: string, body: string, csrf: string): string {
  return designPage({ title, body, nav: signedInNav(csrf), brandHref: '/admin/tenants' });
}

function signInPage(title: string, body: string): string {
  return designPage({ title, body, narrow: true, brandHref: '/admin' });
}

export function loginPage(options: { csrf: string; email?: string; error?: string; info?: string }): string {
  return signInPage(
    'Operator sign-in',
    `<h1>Operator sign-in</h1>
<p class="muted">The console of this platform, for its operators. Two-factor authentication is required; the first sign-in sets it up.</p>
${options.info ? notice(options.info) : ''}${options.error ? notice(options.error, 'error') : ''}
<form method="post" action="/admin/login" class="card" novalidate>${csrfField(options.csrf)}
${field({ name: 'email', label: 'Email', type: 'email', value: options.email ?? '', autocomplete: 'username' })}
${field({ name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' })}
<button type="submit">Continue</button></form>
<p><a href="/password-reset">Forgot your password?</a></p>`,
  );
}

export function codePage(options: { csrf: string; error?: string; enrolled?: boolean }): string {
  return signInPage(
    'Two-factor code',
    `<h1>Two-factor code</h1>
${options.enrolled ? notice('Two-factor authentication is set up. Enter the next code your app shows to finish signing in.') : ''}
${options.error ? notice(options.error, 'error') : ''}
<form method="post" action="/admin/login/code" class="card" novalidate>${csrfField(options.csrf)}
${field({ name: 'code', label: 'Code from your authenticator app', hint: 'Six digits', autocomplete: 'one-time-code', inputmode: 'numeric', required: false })}
${field({ name: 'recovery', label: 'Or a recovery code', hint: 'Each recovery code works once', autocomplete: 'off', required: false })}
<button type="submit">Sign in</button></form>
<p><a href="/admin/login">Start again</a></p>`,
  );
}

export function enrolPage(options: { csrf: string; qrSvg: string; secret: string; error?: string }): string {
  return signInPage(
    'Set up two-factor authentication',
    `<h1>Set up two-factor authentication</h1>
<p>Operators must use two-factor authentication. Scan this code with an authenticator app, then enter the six-digit code it shows.</p>
${options.error ? notice(options.error, 'error') : ''}
<div class="card stack"><figure class="stack">${options.qrSvg}
<figcaption class="small muted">Cannot scan it? Enter this key in the app: <code id="totp-secret">${escapeHtml(options.secret)}</code></figcaption></figure>
<form method="post" action="/admin/enrol" novalidate>${csrfField(options.csrf)}
${field({ name: 'code', label: 'Code from your app', hint: 'Six digits', autocomplete: 'one-time-code', inputmode: 'numeric', error: options.error ? 'Enter the current code from the app.' : undefined })}
<button type="submit">Turn on two-factor authentication</button></form></div>`,
  );
}

export function recoveryCodesPage(codes: string[]): string {
  return signInPage(
    'Save your recovery codes',
    `<h1>Save your recovery codes</h1>
<p>Each code signs you in once if you lose your authenticator. <strong>This is the only time they are shown</strong>: store them somewhere safe now.</p>
<div class="card"><ul class="codes" aria-label="Recovery codes">${codes.map((c) => `<li>${escapeHtml(c)}</li>`).join('')}</ul></div>
<p><a class="button" href="/admin/login/code?enrolled=1">I have saved them: continue</a></p>`,
  );
}

export interface TenantRow {
  id: string;
  slug: string;
  company: string | null;
  plan: string;
  status: string;
  createdAt: string;
}

const day = (iso: string) => escapeHtml(iso.slice(0, 10));
const when = (iso: string | null | undefined) =>
  iso
    ? `<time datetime="${escapeHtml(iso)}">${escapeHtml(iso.slice(0, 16).replace('T', ' '))} UTC</time>`
    : '—';

export function tenantsPage(options: {
  csrf: string;
  q: string;
  status: string;
  page: number;
  pageSize: number;
  total: number;
  tenants: TenantRow[];
}): string {
  const { q, status, page, pageSize, total, tenants } = options;
  const query = (p: number) => {
    const params = new URLSearchParams();
    if (q) params.set('q', q);
    if (status) params.set('status', status);
    if (p > 1) params.set('page', String(p));
    const s = params.toString();
    return `/admin/tenants${s ? `?${s}` : ''}`;
  };
  const first = total === 0 ? 0 : (page - 1) * pageSize + 1;
  const last = Math.min(total, page * pageSize);
  const options_ = ['', ...TENANT_STATUSES]
    .map(
      (s) =>
        `<option value="${s}"${s === status ? ' selected' : ''}>${s ? escapeHtml(s.replace(/_/g, ' ')) : 'Any status'}</option>`,
    )
    .join('');
  const list =
    tenants.length === 0
      ? emptyState(
          q || status ? 'No tenant matches' : 'No tenants yet',
          q || status
            ? 'Try another search or status.'
            : 'Tenants appear here when customers sign up and pay.',
        )
      : table(
          'Tenants',
          ['Workspace', 'Company', 'Plan', 'Status', 'Created'],
          tenants.map((t) => [
            `<a href="/admin/tenants/${encodeURIComponent(t.slug)}">${escapeHtml(t.slug)}</a>`,
            t.company ? escapeHtml(t.company) : '<span class="muted">purged</span>',
            escapeHtml(t.plan),
            badge(t.status),
            day(t.createdAt),
          ]),
        );
  const pager =
    total > 0
      ? `<nav class="pager" aria-label="Pages"><p class="muted">Showing ${first}–${last} of ${total}</p><div class="actions">${
          page > 1 ? `<a class="button secondary" href="${escapeHtml(query(page - 1))}">Previous</a>` : ''
        }${last < total ? `<a class="button secondary" href="${escapeHtml(query(page + 1))}">Next</a>` : ''}</div></nav>`
      : '';
  return consolePage(
    'Tenants',
    `<h1>Tenants</h1>
<form method="get" action="/admin/tenants" class="row card" role="search">
<div><label for="q">Search</label><input id="q" name="q" type="search" value="${escapeHtml(q)}" placeholder="Slug or company"></div>
<div><label for="status">Status</label><select id="status" name="status">${options_}</select></div>
<button type="submit">Search</button></form>
${list}${pager}`,
    options.csrf,
  );
}

export interface TenantView {
  id: string;
  slug: string;
  company: string | null;
  plan: string;
  status: string;
  statusReason: string | null;
  createdAt: string;
  cancelledAt: string | null;
  purgeAfter: string | null;
  resources: { kind: string; id: string; phase: string; lastError: string | null; steps: StepView[] }[];
}
interface StepView {
  name: string;
  state: string;
  attempts: number;
  finishedAt?: string;
  startedAt?: string;
  lastError?: string;
  waitingFor?: string;
  progress?: string;
}
export interface ServiceView {
  service: string;
  name: string;
  status: string;
  statusReason: string | null;
  url: string;
}
export interface IncidentView {
  target: string;
  reason: string;
  openedAt: string;
  resolvedAt: string | null;
}
export interface AuditView {
  at: string;
  actorType: string;
  action: string;
  result: string;
}

const DONE: Record<string, string> = {
  suspended: 'The tenant is suspended: its workspace now shows the suspended page.',
  reactivated: 'The tenant is active again.',
  cancelled:
    'The tenant is cancelled: its workspace and services are stopped; its data is kept until the purge date.',
  purged: 'The tenant is being purged: its containers, databases and backups go, its records are emptied.',
  retried: 'The service is being deployed again; its status follows here.',
};

export function tenantPage(options: {
  csrf: string;
  tenant: TenantView;
  workspaceUrl: string;
  services: ServiceView[];
  incidents: IncidentView[];
  audit: AuditView[];
  done?: string;
  /** More sections (HTML), after the audit log. */
  extra?: string;
}): string {
  const { tenant: t, csrf } = options;
  const base = `/admin/tenants/${encodeURIComponent(t.slug)}`;
  const facts = `<dl class="facts">
<dt>Status</dt><dd>${badge(t.status)}${t.statusReason ? ` <span class="muted">${escapeHtml(t.statusReason)}</span>` : ''}</dd>
<dt>Company</dt><dd>${t.company ? escapeHtml(t.company) : '<span class="muted">purged</span>'}</dd>
<dt>Plan</dt><dd>${escapeHtml(t.plan)}</dd>
<dt>Workspace</dt><dd><a href="${escapeHtml(options.workspaceUrl)}">${escapeHtml(options.workspaceUrl)}</a></dd>
<dt>Id</dt><dd><code>${escapeHtml(t.id)}</code></dd>
<dt>Created</dt><dd>${when(t.createdAt)}</dd>
${t.purgeAfter ? `<dt>Purge after</dt><dd>${when(t.purgeAfter)}</dd>` : ''}
</dl>`;
  const dialogs: string[] = [];
  const actions: string[] = [];
  if (t.status === 'active' || t.status === 'provisioning') {
    actions.push('<a class="button danger" href="#confirm-suspend">Suspend…</a>');
    dialogs.push(
      confirmDialog({
        id: 'confirm-suspend',
        title: `Suspend ${t.slug}?`,
        text: 'Its workspace and services answer a suspended page at once, until an operator reactivates it. A payment does not lift it. Nothing is deleted.',
        action: `${base}/suspend`,
        hidden: { csrf },
        confirm: 'Suspend',
        danger: true,
      }),
    );
  }
  if (t.status === 'suspended') {
    actions.push('<a class="button" href="#confirm-reactivate">Reactivate…</a>');
    dialogs.push(
      confirmDialog({
        id: 'confirm-reactivate',
        title: `Reactivate ${t.slug}?`,
        text: 'Its workspace and services answer again at once.',
        action: `${base}/reactivate`,
        hidden: { csrf },
        confirm: 'Reactivate',
      }),
    );
  }
  if (t.status !== 'cancelled' && t.status !== 'purged') {
    actions.push('<a class="button danger" href="#confirm-cancel">Cancel the tenant…</a>');
    dialogs.push(
      confirmDialog({
        id: 'confirm-cancel',
        title: `Cancel ${t.slug}?`,
        text: 'Its workspace and services stop at once, as when its subscription ends; its data is kept for the grace period (AIQSO_GRACE_DAYS), then purged. Stripe is not called: cancel its subscription there too.',
        action: `${base}/cancel`,
        hidden: { csrf },
        confirm: 'Cancel the tenant',
        danger: true,
      }),
    );
  }
  if (t.status === 'cancelled') {
    actions.push('<a class="button danger" href="#confirm-purge">Purge now…</a>');
    dialogs.push(
      confirmDialog({
        id: 'confirm-purge',
        title: `Purge ${t.slug} now?`,
        text: 'Its containers, service databases and backups are destroyed and its records emptied, without waiting for the end of its grace period. This cannot be undone.',
        action: `${base}/purge`,
        hidden: { csrf },
        confirm: 'Purge now',
        danger: true,
      }),
    );
  }
  const steps = t.resources.find((r) => r.kind === 'tenant')?.steps ?? [];
  const timeline =
    steps.length === 0
      ? emptyState(
          'No provisioning steps yet',
          'They appear once the tenant has paid and provisioning starts.',
        )
      : `<ol class="timeline">${steps
          .map(
            (s) =>
              `<li class="${escapeHtml(s.state)}"><strong>${escapeHtml(s.name)}</strong> ${badge(s.state)}<br><span class="small muted">${
                s.finishedAt
                  ? `finished ${when(s.finishedAt)}`
                  : s.startedAt
                    ? `started ${when(s.startedAt)}`
                    : ''
              }${s.attempts > 1 ? ` · ${s.attempts} attempts` : ''}${s.waitingFor ? ` · waiting for ${escapeHtml(s.waitingFor)}` : ''}${s.state === 'running' && s.progress ? ` · ${escapeHtml(s.progress)}` : ''}</span>${
                s.lastError ? `<br><span class="small">${escapeHtml(s.lastError)}</span>` : ''
              }</li>`,
          )
          .join('')}</ol>`;
  const services =
    options.services.length === 0
      ? emptyState('No services', 'This tenant has not subscribed to any service.')
      : table(
          'Services',
          ['Service', 'Status', 'Reason', 'Action'],
          options.services.map((s) => {
            let action = '';
            if (s.status === 'failed') {
              const id = `confirm-retry-${s.service}`;
              action = `<a class="button secondary" href="#${escapeHtml(id)}">Retry…</a>`;
              dialogs.push(
                confirmDialog({
                  id,
                  title: `Retry ${s.name}?`,
                  text: `${s.name} is deployed again from a clean start; its database is kept.`,
                  action: `${base}/services/${encodeURIComponent(s.service)}/retry`,
                  hidden: { csrf },
                  confirm: 'Retry',
                }),
              );
            }
            return [
              `${escapeHtml(s.name)}<br><span class="small muted">${escapeHtml(s.service)}</span>`,
              badge(s.status),
              s.statusReason ? escapeHtml(s.statusReason) : '<span class="muted">—</span>',
              action || '<span class="muted">—</span>',
            ];
          }),
        );
  const incidents =
    options.incidents.length === 0
      ? emptyState('No incidents', 'Health checks have not opened an incident for this tenant.')
      : table(
          'Incidents',
          ['Target', 'Reason', 'Opened', 'Resolved'],
          options.incidents.map((i) => [
            escapeHtml(i.target),
            escapeHtml(i.reason),
            when(i.openedAt),
            i.resolvedAt ? when(i.resolvedAt) : badge('open'),
          ]),
        );
  const audit =
    options.audit.length === 0
      ? emptyState('No audit entries', 'Nothing has been recorded for this tenant yet.')
      : table(
          'Audit log',
          ['When', 'Actor', 'Action', 'Result'],
          options.audit.map((a) => [
            when(a.at),
            escapeHtml(a.actorType),
            `<code>${escapeHtml(a.action)}</code>`,
            badge(a.result),
          ]),
        );
  const doneText = options.done ? DONE[options.done] : undefined;
  const done = doneText ? notice(doneText) : '';
  return consolePage(
    t.slug,
    `<p><a href="/admin/tenants">← All tenants</a></p>
<h1>${escapeHtml(t.company ?? t.slug)} <span class="muted small">${escapeHtml(t.slug)}</span></h1>
${done}${facts}${actions.length ? `<div class="actions">${actions.join('')}</div>` : ''}
<h2>Provisioning</h2>${timeline}
<h2>Services</h2>${services}
<h2>Incidents</h2>${incidents}
<h2>Audit</h2>${audit}
${options.extra ?? ''}
${dialogs.join('\n')}`,
    csrf,
  );
}
