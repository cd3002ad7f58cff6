import { escapeHtml } from '../../web/html.ts';
import { badge, confirmDialog, emptyState, notice, table } from '../../web/design.ts';
import { ROLES } from '../../core/identity.ts';
import { consolePage } from './pages.ts';

/**
 * The operator console's platform pages (users, plans and catalog, backups,
 * usage, event webhooks, configuration) and the Backups section of a
 * tenant's page: pure functions of what the API answered. Every value is escaped.
 */

const e = escapeHtml;
const none = '<span class="muted">—</span>';
const when = (iso: string | null | undefined) =>
  iso ? `<time datetime="${e(iso)}">${e(iso.slice(0, 16).replace('T', ' '))} UTC</time>` : none;
const tenantLink = (slug: string | null) =>
  slug ? `<a href="/admin/tenants/${encodeURIComponent(slug)}">${e(slug)}</a>` : none;

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}

function pager(path: string, params: URLSearchParams, page: number, pageSize: number, total: number) {
  if (total === 0) return '';
  const first = (page - 1) * pageSize + 1;
  const last = Math.min(total, page * pageSize);
  const to = (p: number) => {
    const q = new URLSearchParams(params);
    if (p > 1) q.set('page', String(p));
    else q.delete('page');
    const s = q.toString();
    return `${path}${s ? `?${s}` : ''}`;
  };
  return `<nav class="pager" aria-label="Pages"><p class="muted">Showing ${first}–${last} of ${total}</p><div class="actions">${
    page > 1 ? `<a class="button secondary" href="${e(to(page - 1))}">Previous</a>` : ''
  }${last < total ? `<a class="button secondary" href="${e(to(page + 1))}">Next</a>` : ''}</div></nav>`;
}

function select(id: string, label: string, value: string, options: [string, string][]): string {
  return `<div><label for="${id}">${e(label)}</label><select id="${id}" name="${id}">${options
    .map(([v, text]) => `<option value="${e(v)}"${v === value ? ' selected' : ''}>${e(text)}</option>`)
    .join('')}</select></div>`;
}

// ── Users ────────────────────────────────────────────────────────────────
export interface UserRow {
  id: string;
  email: string;
  role: string;
  tenant: string | null;
  totp: boolean;
  lastSignInAt: string | null;
  createdAt: string;
}

export function usersPage(o: {
  csrf: string;
  q: string;
  tenant: string;
  role: string;
  totp: string;
  page: number;
  pageSize: number;
  total: number;
  users: UserRow[];
  done?: string;
}): string {
  const params = new URLSearchParams();
  for (const k of ['q', 'tenant', 'role', 'totp'] as const) if (o[k]) params.set(k, o[k]);
  const back = params.toString() ? `/admin/users?${params.toString()}` : '/admin/users';
  const dialogs: string[] = [];
  const rows = o.users.map((u, i) => {
    const id = `confirm-reset-${i + 1}`;
    dialogs.push(
      confirmDialog({
        id,
        title: `Reset two-factor for ${u.email}?`,
        text: `Their authenticator key and recovery codes are removed and every session they have is ended at once. ${
          u.role === 'platform_admin'
            ? 'As an operator they must set up two-factor again at their next sign-in.'
            : 'They can sign in with their password and set up two-factor again.'
        }`,
        action: `/admin/users/${encodeURIComponent(u.id)}/totp/reset`,
        hidden: { csrf: o.csrf, back },
        confirm: 'Reset two-factor',
        danger: true,
      }),
    );
    return [
      `${e(u.email)}<br><span class="small muted">${e(u.id)}</span>`,
      tenantLink(u.tenant),
      e(u.role.replace(/_/g, ' ')),
      u.totp ? badge('on') : badge('off'),
      when(u.lastSignInAt),
      `<a class="button secondary" href="#${id}">Reset two-factor…</a>`,
    ];
  });
  const filters = o.q || o.tenant || o.role || o.totp;
  return consolePage(
    'Users',
    `<h1>Users</h1>
${o.done === 'totp-reset' ? notice('Two-factor authentication was reset and their sessions ended.') : ''}
<form method="get" action="/admin/users" class="row card" role="search">
<div><label for="q">E-mail</label><input id="q" name="q" type="search" value="${e(o.q)}"></div>
<div><label for="tenant">Tenant</label><input id="tenant" name="tenant" type="search" value="${e(o.tenant)}" placeholder="Slug"></div>
${select('role', 'Role', o.role, [['', 'Any role'], ...ROLES.map((r): [string, string] => [r, r.replace(/_/g, ' ')])])}
${select('totp', 'Two-factor', o.totp, [
  ['', 'On or off'],
  ['on', 'On'],
  ['off', 'Off'],
])}
<button type="submit">Search</button></form>
${
  rows.length === 0
    ? emptyState(filters ? 'No user matches' : 'No users yet', filters ? 'Try another search.' : '')
    : table('Users', ['User', 'Tenant', 'Role', 'Two-factor', 'Last sign-in', 'Action'], rows)
}${pager('/admin/users', params, o.page, o.pageSize, o.total)}
${dialogs.join('\n')}`,
    o.csrf,
  );
}

// ── Plans and catalog ──────────────────────────────────────────────────────
export interface CatalogAnswer {
  driver: string;
  plans: {
    key: string;
    name: string;
    monthlyPrice: string;
    services: number;
    includes: { storageGb?: number; requests?: number };
  }[];
  services: {
    key: string;
    name: string;
    kind: string;
    path: string;
    active: boolean;
    resources: { memoryMb: number; requestMemoryMb: number; cores: number; diskGb: number };
    runnable: boolean;
    whyNotRunnable: string | null;
  }[];
}

export function catalogPage(csrf: string, c: CatalogAnswer): string {
  const plans =
    c.plans.length === 0
      ? emptyState('No plans', 'catalog/plans.yaml defines none.')
      : table(
          'Plans',
          ['Plan', 'Price a month', 'Services', 'Includes'],
          c.plans.map((p) => [
            `${e(p.name)}<br><span class="small muted">${e(p.key)}</span>`,
            e(p.monthlyPrice),
            String(p.services),
            [
              p.includes.storageGb !== undefined ? `${p.includes.storageGb} GB storage` : '',
              p.includes.requests !== undefined
                ? `${new Intl.NumberFormat('en').format(p.includes.requests)} requests`
                : '',
            ]
              .filter(Boolean)
              .map(e)
              .join('<br>') || none,
          ]),
        );
  const services =
    c.services.length === 0
      ? emptyState('No services', 'The catalog directory holds no service template.')
      : table(
          'Catalog services',
          ['Service', 'Kind', 'Memory (request / limit)', 'Cores', 'Disk', 'Runs here'],
          c.services.map((s) => [
            `${e(s.name)}<br><span class="small muted">${e(s.key)} · ${e(s.path)}</span>`,
            e(s.kind),
            `${s.resources.requestMemoryMb} / ${s.resources.memoryMb} MB`,
            String(s.resources.cores),
            `${s.resources.diskGb} GB`,
            !s.active
              ? badge('inactive')
              : s.runnable
                ? badge('yes')
                : `${badge('no')}<br><span class="small">${e(s.whyNotRunnable ?? '')}</span>`,
          ]),
        );
  return consolePage(
    'Plans and catalog',
    `<h1>Plans and catalog</h1>
<p class="muted">Read from the catalog files (<code>catalog/plans.yaml</code> and the service templates) as start-up synchronised them; change the files and restart to change them. Compute driver: <code>${e(c.driver)}</code>.</p>
<h2>Plans</h2>${plans}
<h2>Services</h2>${services}`,
    csrf,
  );
}

// ── Backups ──────────────────────────────────────────────────────────────
export interface RunRow {
  run: string;
  tenant: string | null;
  purpose: string;
  status: string;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
  snapshots: number;
  failedSnapshots: number;
  verifiedSnapshots: number;
  sizeBytes: number | null;
  addedBytes: number | null;
  durationMs: number | null;
}
export interface VerificationRow {
  id: string;
  tenant: string | null;
  status: string;
  error: string | null;
  rtoMs: number | null;
  readDataPercent: number;
  snapshots: number;
  finishedAt: string;
}

function runsTable(runs: RunRow[], withTenant: boolean): string {
  if (runs.length === 0)
    return emptyState('No backup runs yet', 'Backups run daily at 02:00, or with "Back up now".');
  return table(
    'Backup runs',
    [
      ...(withTenant ? ['Tenant'] : []),
      'Started',
      'Purpose',
      'Status',
      'Snapshots',
      'Size (added)',
      'Duration',
      'Verified',
    ],
    runs.map((r) => [
      ...(withTenant ? [tenantLink(r.tenant)] : []),
      when(r.startedAt),
      e(r.purpose),
      `${badge(r.status)}${r.error ? `<br><span class="small">${e(r.error)}</span>` : ''}`,
      `${r.snapshots}${r.failedSnapshots ? ` <span class="small">(${r.failedSnapshots} failed)</span>` : ''}`,
      `${e(formatBytes(r.sizeBytes))} <span class="small muted">(${e(formatBytes(r.addedBytes))})</span>`,
      e(formatMs(r.durationMs)),
      `${r.verifiedSnapshots} of ${r.snapshots}`,
    ]),
  );
}

function verificationsTable(rows: VerificationRow[], withTenant: boolean): string {
  if (rows.length === 0)
    return emptyState(
      'No verifications yet',
      'Backups are restored into scratch databases weekly, Sundays at 05:00.',
    );
  return table(
    'Verifications',
    [...(withTenant ? ['Tenant'] : []), 'Finished', 'Status', 'Snapshots', 'Restore time (RTO)', 'Data read'],
    rows.map((v) => [
      ...(withTenant ? [tenantLink(v.tenant)] : []),
      when(v.finishedAt),
      `${badge(v.status)}${v.error ? `<br><span class="small">${e(v.error)}</span>` : ''}`,
      String(v.snapshots),
      e(formatMs(v.rtoMs)),
      `${v.readDataPercent}%`,
    ]),
  );
}

export function backupsPage(o: {
  csrf: string;
  tenant: string;
  runs: RunRow[];
  verifications: VerificationRow[];
}): string {
  return consolePage(
    'Backups',
    `<h1>Backups</h1>
<p class="muted">Recent backup runs and verifications of every tenant, failures first. A tenant's snapshots, "Back up now" and restores are on its page.</p>
<form method="get" action="/admin/backups" class="row card" role="search">
<div><label for="tenant">Tenant</label><input id="tenant" name="tenant" type="search" value="${e(o.tenant)}" placeholder="Slug"></div>
<button type="submit">Show</button></form>
<h2>Runs</h2>${runsTable(o.runs, true)}
<h2>Verifications</h2>${verificationsTable(o.verifications, true)}`,
    o.csrf,
  );
}

export interface SnapshotRow {
  id: string;
  time: string;
  service: string | null;
  kind: string;
  purpose: string;
  snapshot: string | null;
  sizeBytes: number | null;
  durationMs: number | null;
  verified: boolean;
}

const BACKUP_DONE: Record<string, string> = {
  'backup-started': 'A backup run has started; it shows under Runs when it is recorded.',
  'restore-started':
    'The restore is queued: a safety snapshot first, then the service is stopped, restored, started and health-checked.',
  'tenant-restore-started':
    "The tenant's restore is queued: every service is restored to its newest snapshot, one safety snapshot each first.",
};

/** The Backups section of a tenant's page: its runs, verifications and snapshots; back up now; restore. */
export function tenantBackupsSection(o: {
  csrf: string;
  slug: string;
  status: string;
  runs: RunRow[];
  verifications: VerificationRow[];
  snapshots: SnapshotRow[];
  done?: string;
}): string {
  const base = `/admin/tenants/${encodeURIComponent(o.slug)}`;
  const dialogs: string[] = [];
  const actions: string[] = [];
  if (['provisioning', 'active', 'suspended', 'failed'].includes(o.status)) {
    actions.push('<a class="button secondary" href="#confirm-backup">Back up now…</a>');
    dialogs.push(
      confirmDialog({
        id: 'confirm-backup',
        title: `Back up ${o.slug} now?`,
        text: "Every service's database and data are snapshotted now, next to the daily backups. Nothing is overwritten. One manual run per tenant in 10 minutes.",
        action: `${base}/backups`,
        hidden: { csrf: o.csrf },
        confirm: 'Back up now',
      }),
    );
  }
  if (o.snapshots.length > 0) {
    actions.push('<a class="button danger" href="#confirm-restore-tenant">Restore the tenant…</a>');
    dialogs.push(
      confirmDialog({
        id: 'confirm-restore-tenant',
        title: `Restore all of ${o.slug}?`,
        text: "Every deployed service's database and data files are overwritten with its newest snapshot: whatever changed since then is lost (each service's current state is kept in a safety snapshot first, to undo). Each service is stopped during its restore, then started and health-checked.",
        action: `${base}/restore`,
        hidden: { csrf: o.csrf },
        confirm: 'Restore everything',
        danger: true,
      }),
    );
  }
  const restorable = o.snapshots.filter((s) => s.kind === 'database' && s.service && s.snapshot);
  const snapshots =
    o.snapshots.length === 0
      ? emptyState('No snapshots', 'This tenant has no recorded backup yet.')
      : table(
          'Snapshots',
          ['Time', 'Service', 'Kind', 'Purpose', 'Size', 'Duration', 'Verified', 'Action'],
          o.snapshots.map((s) => {
            let action = none;
            const i = restorable.indexOf(s);
            if (i >= 0) {
              const id = `confirm-restore-${i + 1}`;
              action = `<a class="button secondary" href="#${id}">Restore…</a>`;
              dialogs.push(
                confirmDialog({
                  id,
                  title: `Restore ${s.service} to ${s.time.slice(0, 16).replace('T', ' ')} UTC?`,
                  text: `${s.service}'s database, and its data files when the same run saved them, are overwritten with this snapshot (${s.snapshot!.slice(0, 8)}): whatever changed since then is lost, except in the safety snapshot taken first. ${s.service} is stopped during the restore, then started and health-checked. Other services are not touched.`,
                  action: `${base}/services/${encodeURIComponent(s.service!)}/restore`,
                  hidden: { csrf: o.csrf, snapshot: s.snapshot! },
                  confirm: `Restore ${s.service}`,
                  danger: true,
                }),
              );
            }
            return [
              when(s.time),
              s.service ? e(s.service) : none,
              e(s.kind),
              e(s.purpose),
              e(formatBytes(s.sizeBytes)),
              e(formatMs(s.durationMs)),
              s.verified ? badge('verified') : '<span class="muted">not yet</span>',
              action,
            ];
          }),
        );
  const doneText = o.done ? BACKUP_DONE[o.done] : undefined;
  return `<section id="backups" aria-labelledby="backups-title"><h2 id="backups-title">Backups</h2>
${doneText ? notice(doneText) : ''}${actions.length ? `<div class="actions">${actions.join('')}</div>` : ''}
<h3>Runs</h3>${runsTable(o.runs, false)}
<h3>Verifications</h3>${verificationsTable(o.verifications, false)}
<h3>Snapshots</h3>${snapshots}
${dialogs.join('\n')}</section>`;
}

// ── Usage ────────────────────────────────────────────────────────────────
export interface UsageAnswer {
  month: string;
  timeZone: string;
  sort: string;
  total: number;
  limit: number;
  offset: number;
  totals: Record<string, number>;
  hosts: { host: string | null; tenants: number; totals: Record<string, number> }[];
  tenants: {
    tenant: string;
    host: string | null;
    metrics: Record<string, number | null>;
    gapHours: number;
  }[];
}

/** A metric's figure: bytes in their unit, anything else as a number. */
const metricValue = (metric: string, v: number | null | undefined) =>
  v === null || v === undefined
    ? none
    : e(
        metric.endsWith('_bytes')
          ? formatBytes(v)
          : new Intl.NumberFormat('en', { maximumFractionDigits: 2 }).format(v),
      );

export function usagePage(o: {
  csrf: string;
  usage: UsageAnswer;
  page: number;
  metrics: readonly string[];
}): string {
  const u = o.usage;
  const metrics = [...new Set([...o.metrics, ...Object.keys(u.totals)])];
  const params = new URLSearchParams({ month: u.month });
  if (u.sort !== 'tenant') params.set('sort', u.sort);
  const hosts =
    u.hosts.length === 0
      ? emptyState('No usage this month', 'Usage appears once the hourly collection has run.')
      : table(
          'Usage per host',
          ['Host', 'Tenants', ...metrics],
          [
            ...u.hosts.map((h) => [
              h.host ? e(h.host) : '<span class="muted">unplaced</span>',
              String(h.tenants),
              ...metrics.map((m) => metricValue(m, h.totals[m])),
            ]),
            ['<strong>All</strong>', String(u.total), ...metrics.map((m) => metricValue(m, u.totals[m]))],
          ],
        );
  const tenants =
    u.tenants.length === 0
      ? emptyState('No tenant used anything this month', 'Try another month.')
      : table(
          'Usage per tenant',
          ['Tenant', 'Host', ...metrics, 'Gap hours'],
          u.tenants.map((t) => [
            tenantLink(t.tenant),
            t.host ? e(t.host) : none,
            ...metrics.map((m) => metricValue(m, t.metrics[m])),
            String(t.gapHours),
          ]),
        );
  return consolePage(
    'Usage',
    `<h1>Usage</h1>
<p class="muted">Every tenant's metered usage in ${e(u.month)} (${e(u.timeZone)}), each metric summed over its services.</p>
<form method="get" action="/admin/usage" class="row card">
<div><label for="month">Month</label><input id="month" name="month" type="month" value="${e(u.month)}"></div>
${select('sort', 'Sort by', u.sort, [['tenant', 'tenant'], ...metrics.map((m): [string, string] => [m, `${m} (largest first)`])])}
<button type="submit">Show</button></form>
<h2>Per host</h2>${hosts}
<h2>Per tenant</h2>${tenants}${pager('/admin/usage', params, o.page, u.limit, u.total)}`,
    o.csrf,
  );
}

// ── Event webhooks ─────────────────────────────────────────────────────────
export interface EndpointRow {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  createdAt: string;
}
export interface DeliveryRow {
  id: string;
  endpoint: string;
  type: string;
  tenant: string | null;
  status: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  createdAt: string;
}

export function webhooksPage(o: {
  csrf: string;
  endpoints: EndpointRow[];
  deliveries: DeliveryRow[];
  done?: string;
}): string {
  const dialogs: string[] = [];
  const urls = new Map(o.endpoints.map((ep) => [ep.id, ep.url]));
  const endpoints =
    o.endpoints.length === 0
      ? emptyState(
          'No endpoints',
          "Add one with POST /api/v1/webhooks to receive every tenant's events (see the API reference).",
        )
      : table(
          'Endpoints',
          ['URL', 'Events', 'Description', 'Created'],
          o.endpoints.map((ep) => [
            `<code>${e(ep.url)}</code><br><span class="small muted">${e(ep.id)}</span>`,
            ep.events.map((x) => `<code>${e(x)}</code>`).join(' '),
            ep.description ? e(ep.description) : none,
            when(ep.createdAt),
          ]),
        );
  const deliveries =
    o.deliveries.length === 0
      ? emptyState('No deliveries yet', 'Deliveries appear here when an event is sent to an endpoint.')
      : table(
          'Deliveries',
          ['Created', 'Event', 'Tenant', 'Status', 'Attempts', 'Last answer', 'Action'],
          o.deliveries.map((d) => {
            const id = `confirm-redeliver-${d.id}`;
            dialogs.push(
              confirmDialog({
                id,
                title: `Send ${d.type} again?`,
                text: `The same event, with the same id, is delivered again to ${urls.get(d.endpoint) ?? d.endpoint}, with its retries; a receiver that keeps event ids ignores a copy it already handled.`,
                action: `/admin/webhooks/deliveries/${encodeURIComponent(d.id)}/redeliver`,
                hidden: { csrf: o.csrf },
                confirm: 'Redeliver',
              }),
            );
            return [
              when(d.createdAt),
              `<code>${e(d.type)}</code>`,
              d.tenant ? e(d.tenant) : none,
              badge(d.status),
              String(d.attempts),
              `${d.lastStatus !== null ? e(String(d.lastStatus)) : none}${d.lastError ? `<br><span class="small">${e(d.lastError)}</span>` : ''}`,
              `<a class="button secondary" href="#${e(id)}">Redeliver…</a>`,
            ];
          }),
        );
  return consolePage(
    'Event webhooks',
    `<h1>Event webhooks</h1>
${o.done === 'redelivered' ? notice('The event is queued for delivery again.') : ''}
<h2>Platform endpoints</h2>${endpoints}
<h2>Recent deliveries</h2>${deliveries}
${dialogs.join('\n')}`,
    o.csrf,
  );
}

// ── Configuration ──────────────────────────────────────────────────────────
export interface SettingRow {
  name: string;
  group: string;
  value: string | null;
  default: string | null;
  set: boolean;
  secret: 'value' | 'credentials' | null;
  meaning: string;
}

export function configPage(csrf: string, settings: SettingRow[]): string {
  const groups = [...new Set(settings.map((s) => s.group))];
  const value = (s: SettingRow) => {
    if (s.secret === 'value')
      return s.set ? '<span class="badge ok">set (secret)</span>' : '<span class="muted">unset</span>';
    if (s.value === null) return '<span class="muted">unset</span>';
    return `<code>${e(s.value)}</code>${s.default !== null && s.value === s.default ? ' <span class="small muted">default</span>' : ''}`;
  };
  return consolePage(
    'Configuration',
    `<h1>Configuration</h1>
<p class="muted">The settings this platform runs with (environment and <code>aiqso.config.yaml</code>), read-only. Secrets are never shown: only whether they are set; a password inside a URL shows as <code>***</code>.</p>
${groups
  .map(
    (g) =>
      `<h2>${e(g)}</h2>${table(
        g,
        ['Setting', 'Value', 'Meaning'],
        settings
          .filter((s) => s.group === g)
          .map((s) => [`<code>${e(s.name)}</code>`, value(s), `<span class="small">${e(s.meaning)}</span>`]),
      )}`,
  )
  .join('\n')}`,
    csrf,
  );
}
