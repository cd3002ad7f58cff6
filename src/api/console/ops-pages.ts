import { escapeHtml } from '../../web/html.ts';
import { badge, confirmDialog, emptyState, field, notice, table } from '../../web/design.ts';
import { consolePage } from './pages.ts';

/**
 * The operator console's operations pages (jobs and failed work, hosts,
 * certificates, audit log): pure functions of what the API answered. Every
 * value is escaped.
 */

const when = (iso: string | null | undefined) =>
  iso
    ? `<time datetime="${escapeHtml(iso)}">${escapeHtml(iso.slice(0, 16).replace('T', ' '))} UTC</time>`
    : '—';
const none = '<span class="muted">—</span>';
const text = (v: string | null | undefined) => (v ? escapeHtml(v) : none);
/** A dialog id from any key: letters, digits, `-` and `_` only. */
const domId = (prefix: string, ...parts: string[]) =>
  `${prefix}-${parts.join('-').replace(/[^A-Za-z0-9_-]/g, '_')}`;

function doneNotice(done: string | undefined, texts: Record<string, string>): string {
  const t = done ? texts[done] : undefined;
  return t ? notice(t) : '';
}

// ── Jobs and failed work ────────────────────────────────────────────────
export interface JobsView {
  counts: {
    running: number;
    queued: number;
    retrying: number;
    failed: number;
    failedResources: number;
    failedOutbox: number;
    failingInbox: number;
  };
  jobs: {
    id: string;
    task: string;
    key: string | null;
    state: string;
    runAt: string;
    attempts: number;
    maxAttempts: number;
    lastError: string | null;
  }[];
  failedResources: {
    kind: string;
    id: string;
    failures: number;
    lastError: string | null;
    updatedAt: string;
  }[];
  failedOutbox: { key: string; kind: string; attempts: number; lastError: string | null }[];
  failingInbox: {
    id: string;
    source: string;
    type: string;
    state: string;
    attempts: number;
    lastError: string | null;
    receivedAt: string;
  }[];
  workers: { hostname: string; pid: number; startedAt: string }[];
}

const JOBS_SHOWN = 100;

export function jobsPage(options: { csrf: string; work: JobsView; done?: string }): string {
  const { csrf, work } = options;
  const c = work.counts;
  const dialogs: string[] = [];
  const stat = (label: string, value: number, bad = false) =>
    `<div class="card"><p class="small muted">${escapeHtml(label)}</p><p><strong>${value}</strong>${
      bad && value > 0 ? ` ${badge('failed')}` : ''
    }</p></div>`;
  const counts = `<div class="grid" role="group" aria-label="Counts">${[
    stat('Running jobs', c.running),
    stat('Queued jobs', c.queued),
    stat('Retrying jobs', c.retrying),
    stat('Failed jobs', c.failed, true),
    stat('Resources needing an operator', c.failedResources, true),
    stat('Received events failing', c.failingInbox, true),
    stat('Undelivered side effects', c.failedOutbox, true),
  ].join('')}</div>`;

  const resources =
    work.failedResources.length === 0
      ? emptyState('Nothing needs an operator', 'The orchestrator has not given up on any resource.')
      : table(
          'Resources needing an operator',
          ['Resource', 'Failures', 'Error', 'Since', 'Action'],
          work.failedResources.map((r) => {
            const id = domId('confirm-retry', r.kind, r.id);
            dialogs.push(
              confirmDialog({
                id,
                title: `Retry ${r.kind} ${r.id}?`,
                text:
                  r.kind === 'tenant_service'
                    ? 'The service is deployed again from its first step; its database is kept. The tenant must be active and its plan must have room.'
                    : 'The orchestrator reconciles it again from a clean failure count, running its steps again.',
                action: `/admin/jobs/resources/${encodeURIComponent(r.kind)}/${encodeURIComponent(r.id)}/retry`,
                hidden: { csrf },
                confirm: 'Retry',
              }),
            );
            return [
              `${escapeHtml(r.kind)}<br><code class="small">${escapeHtml(r.id)}</code>`,
              String(r.failures),
              text(r.lastError),
              when(r.updatedAt),
              `<a class="button secondary" href="#${escapeHtml(id)}">Retry…</a>`,
            ];
          }),
        );

  const inbox =
    work.failingInbox.length === 0
      ? emptyState('No failing received events', 'Every event received from Stripe was processed.')
      : table(
          'Received events failing',
          ['Event', 'State', 'Attempts', 'Error', 'Received', 'Action'],
          work.failingInbox.map((e) => {
            const id = domId('confirm-inbox', e.id);
            dialogs.push(
              confirmDialog({
                id,
                title: `Process ${e.type} again?`,
                text: `Event ${e.id} from ${e.source} is processed again now, with its failure count starting again. Processing acts once: an event already applied changes nothing.`,
                action: `/admin/jobs/inbox/${encodeURIComponent(e.id)}/retry`,
                hidden: { csrf },
                confirm: 'Process again',
              }),
            );
            return [
              `${escapeHtml(e.type)}<br><code class="small">${escapeHtml(e.id)}</code>`,
              badge(e.state),
              String(e.attempts),
              text(e.lastError),
              when(e.receivedAt),
              `<a class="button secondary" href="#${escapeHtml(id)}">Retry…</a>`,
            ];
          }),
        );

  const outbox =
    work.failedOutbox.length === 0
      ? emptyState('No undelivered side effects', 'Every mail, alert and webhook left was delivered.')
      : table(
          'Undelivered side effects',
          ['Kind', 'Key', 'Attempts', 'Error'],
          work.failedOutbox.map((o) => [
            escapeHtml(o.kind),
            `<code class="small">${escapeHtml(o.key)}</code>`,
            String(o.attempts),
            text(o.lastError),
          ]),
        );

  const shown = work.jobs.slice(0, JOBS_SHOWN);
  const jobs =
    shown.length === 0
      ? emptyState('No jobs queued or running', 'Background work appears here while it waits or runs.')
      : table(
          'Jobs',
          ['Task', 'State', 'Run at', 'Attempts', 'Error'],
          shown.map((j) => [
            `${escapeHtml(j.task)}${j.key ? `<br><code class="small">${escapeHtml(j.key)}</code>` : ''}`,
            badge(j.state),
            when(j.runAt),
            `${j.attempts} of ${j.maxAttempts}`,
            text(j.lastError),
          ]),
        ) +
        (work.jobs.length > shown.length
          ? `<p class="small muted">The first ${shown.length} of ${work.jobs.length} jobs, by run time.</p>`
          : '');

  const workers =
    work.workers.length === 0
      ? notice(
          'No worker is running: nothing queued is processed until one starts (aiqso worker or aiqso up).',
          'error',
        )
      : `<p>${work.workers
          .map((w) => `<code>${escapeHtml(w.hostname)}:${w.pid}</code> since ${when(w.startedAt)}`)
          .join(', ')}</p>`;

  return consolePage(
    'Jobs and failed work',
    `<h1>Jobs and failed work</h1>
${doneNotice(options.done, {
  retried: 'The resource is being reconciled again; it leaves this list once it runs.',
  'inbox-retried': 'The event is being processed again.',
})}${counts}
<h2>Resources needing an operator</h2>${resources}
<h2>Received events failing</h2>${inbox}
<h2>Undelivered side effects</h2>${outbox}
<h2>Jobs</h2>${jobs}
<h2>Workers</h2>${workers}
${dialogs.join('\n')}`,
    csrf,
  );
}

// ── Hosts and capacity ──────────────────────────────────────────────────
export interface HostView {
  id: string;
  name: string;
  driver: string;
  address: string | null;
  draining: boolean;
  capacityShortSince: string | null;
  memory: { totalMb: number; allocatableMb: number; requestedMb: number };
  cpu: { cores: number; requestedCores: number };
  disk: { totalGb: number; requestedGb: number };
  containers: { count: number; max: number | null };
}

const percent = (used: number, of: number) => (of > 0 ? Math.round((used / of) * 100) : 0);
const round = (n: number) => String(Math.round(n * 100) / 100);

export function hostsPage(options: { csrf: string; hosts: HostView[]; done?: string }): string {
  const { csrf } = options;
  const dialogs: string[] = [];
  const list =
    options.hosts.length === 0
      ? emptyState(
          'No hosts yet',
          'A host is recorded when the first container is placed (this machine, for the lxc and process drivers).',
        )
      : table(
          'Hosts',
          ['Host', 'Memory requested', 'CPU requested', 'Disk requested', 'Containers', 'State', 'Action'],
          options.hosts.map((h) => {
            const m = h.memory;
            const verb = h.draining ? 'undrain' : 'drain';
            const id = domId(`confirm-${verb}`, h.id);
            dialogs.push(
              confirmDialog({
                id,
                title: h.draining ? `Take ${h.name} back into placement?` : `Drain ${h.name}?`,
                text: h.draining
                  ? 'New containers may be placed on it again; whatever waits for room looks again at once.'
                  : 'No new container is placed on it. The containers on it keep running; nothing is moved.',
                action: `/admin/hosts/${encodeURIComponent(h.id)}/${verb}`,
                hidden: { csrf },
                confirm: h.draining ? 'Undrain' : 'Drain',
                danger: !h.draining,
              }),
            );
            return [
              `<strong>${escapeHtml(h.name)}</strong><br><span class="small muted">${escapeHtml(h.driver)}${
                h.address ? ` · ${escapeHtml(h.address)}` : ''
              }</span>`,
              `${m.requestedMb} of ${m.allocatableMb} MB (${percent(m.requestedMb, m.allocatableMb)}%)<br><span class="small muted">${m.totalMb} MB in the host</span>`,
              `${round(h.cpu.requestedCores)} of ${h.cpu.cores} cores`,
              `${h.disk.requestedGb} of ${h.disk.totalGb} GB`,
              `${h.containers.count}${h.containers.max !== null ? ` of ${h.containers.max}` : ''}`,
              `${h.draining ? badge('draining') : badge('active')}${
                h.capacityShortSince
                  ? `<br><span class="small">full since ${when(h.capacityShortSince)}</span>`
                  : ''
              }`,
              `<a class="button secondary" href="#${escapeHtml(id)}">${h.draining ? 'Undrain…' : 'Drain…'}</a>`,
            ];
          }),
        );
  return consolePage(
    'Hosts and capacity',
    `<h1>Hosts and capacity</h1>
<p class="muted">Memory is what placement may promise (the host's memory less the reserve, times the overcommit) against what the containers request. CPUs are shared: requested cores may exceed the host's.</p>
${doneNotice(options.done, {
  drained: 'The host is draining: no new container is placed on it.',
  undrained: 'The host takes new containers again.',
})}${list}
${dialogs.join('\n')}`,
    csrf,
  );
}

// ── Certificates ────────────────────────────────────────────────────────
export interface CertificateView {
  name: string;
  names: string[];
  file: string;
  challenge: string;
  notAfter: string | null;
  daysLeft: number | null;
  orderedAt: string;
  lastAttemptAt: string;
  lastError: string | null;
}

export function certificatesPage(options: {
  csrf: string;
  certificates: CertificateView[];
  renewDays: number;
  acme: { configured: boolean; directoryUrl: string | null };
  done?: string;
}): string {
  const { csrf, renewDays } = options;
  const dialogs: string[] = [];
  const expiry = (c: CertificateView) => {
    if (c.notAfter === null) return `${badge('failed')} <span class="small">files missing</span>`;
    const state =
      c.daysLeft !== null && c.daysLeft < 0 ? 'expired' : c.daysLeft! < renewDays ? 'due' : 'valid';
    const tone = state === 'expired' ? 'bad' : state === 'due' ? 'warn' : 'ok';
    return `${when(c.notAfter)}<br><span class="badge ${tone}">${state}</span> <span class="small">${c.daysLeft} days left</span>`;
  };
  const list =
    options.certificates.length === 0
      ? emptyState(
          'No certificates recorded',
          'Certificates ordered with aiqso certs order appear here, with their renewal state.',
        )
      : table(
          'Certificates',
          ['Names', 'Expires', 'Challenge', 'Last order', 'Last renewal error', 'Action'],
          options.certificates.map((c) => {
            let action = none;
            if (options.acme.configured) {
              const id = domId('confirm-renew', c.name);
              action = `<a class="button secondary" href="#${escapeHtml(id)}">Renew now…</a>`;
              dialogs.push(
                confirmDialog({
                  id,
                  title: `Renew ${c.name} now?`,
                  text: `A new certificate for ${c.names.join(', ')} is ordered from the ACME server now; the edges serve it without a restart. If the order fails, the installed certificate stays.`,
                  action: `/admin/certificates/${encodeURIComponent(c.name)}/renew`,
                  hidden: { csrf },
                  confirm: 'Renew now',
                }),
              );
            }
            return [
              c.names.map((n) => `<code>${escapeHtml(n)}</code>`).join('<br>'),
              expiry(c),
              escapeHtml(c.challenge),
              when(c.orderedAt),
              c.lastError
                ? `${escapeHtml(c.lastError)}<br><span class="small muted">tried ${when(c.lastAttemptAt)}</span>`
                : none,
              action,
            ];
          }),
        );
  const acme = options.acme.configured
    ? `<p class="muted">Ordered from <code>${escapeHtml(options.acme.directoryUrl ?? '')}</code>; renewed daily from ${renewDays} days before expiry.</p>`
    : notice(
        'ACME is not configured on this platform process (AIQSO_ACME_DIRECTORY_URL and AIQSO_TLS_CERT_DIR), so certificates cannot be renewed from here.',
      );
  return consolePage(
    'Certificates',
    `<h1>Certificates</h1>
${doneNotice(options.done, { renewed: 'The certificate was renewed; the edges serve the new one.' })}${acme}${list}
${dialogs.join('\n')}`,
    csrf,
  );
}

// ── Audit log ───────────────────────────────────────────────────────────
export interface AuditEntryView {
  id: string;
  at: string;
  actorType: string;
  actorId: string | null;
  tenantId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  sourceIp: string | null;
  result: string;
}

export interface AuditFilter {
  tenant: string;
  actor: string;
  from: string;
  to: string;
}

export function auditPage(options: {
  csrf: string;
  filter: AuditFilter;
  entries: AuditEntryView[];
  next: string | null;
  before: string;
  /** The URL of the same filter's given page. */
  pageUrl: (before: string | null) => string;
}): string {
  const { filter: f } = options;
  const input = (name: keyof AuditFilter, label: string, type = 'text', hint?: string) =>
    `<div><label for="a-${name}">${escapeHtml(label)}${hint ? ` <span class="small muted">${escapeHtml(hint)}</span>` : ''}</label><input id="a-${name}" name="${name}" type="${type}" value="${escapeHtml(f[name])}"></div>`;
  const form = `<form method="get" action="/admin/audit" class="row card" role="search" aria-label="Filter the audit log">
${input('tenant', 'Tenant', 'text', 'slug or id')}${input('actor', 'Actor', 'text', 'user or key id')}
${input('from', 'From', 'datetime-local', 'UTC')}${input('to', 'To', 'datetime-local', 'UTC, not included')}
<button type="submit">Filter</button></form>`;
  const list =
    options.entries.length === 0
      ? emptyState('No audit entries', 'Nothing matches these filters.')
      : table(
          'Audit entries',
          ['When', 'Actor', 'Tenant', 'Action', 'Target', 'Result', 'Address'],
          options.entries.map((e) => [
            `${when(e.at)}<br><span class="small muted">#${escapeHtml(e.id)}</span>`,
            `${escapeHtml(e.actorType)}${e.actorId ? `<br><code class="small">${escapeHtml(e.actorId)}</code>` : ''}`,
            e.tenantId ? `<code class="small">${escapeHtml(e.tenantId)}</code>` : none,
            `<code>${escapeHtml(e.action)}</code>`,
            e.targetType
              ? `${escapeHtml(e.targetType)}${e.targetId ? ` <code class="small">${escapeHtml(e.targetId)}</code>` : ''}`
              : none,
            badge(e.result),
            text(e.sourceIp),
          ]),
        );
  const pager = `<nav class="pager" aria-label="Pages"><p class="muted">${
    options.before ? `Entries older than #${escapeHtml(options.before)}` : 'Newest entries'
  }</p><div class="actions">${
    options.before ? `<a class="button secondary" href="${escapeHtml(options.pageUrl(null))}">Newest</a>` : ''
  }${options.next ? `<a class="button secondary" href="${escapeHtml(options.pageUrl(options.next))}">Older</a>` : ''}</div></nav>`;
  return consolePage(
    'Audit log',
    `<h1>Audit log</h1>
<p class="muted">Every change made through the API, newest first. The rows are hash-chained: <a href="/admin/audit/verify">verify the chain</a> to find an edited, deleted or rewritten row.</p>
${form}${list}${pager}`,
    options.csrf,
  );
}

export interface VerifyView {
  ok: boolean;
  rows: number;
  head: { id: string | null; hash: string; rows: number };
  anchor: string | null;
  firstBadId: string | null;
  reason: string | null;
  message: string;
}

export function auditVerifyPage(options: { csrf: string; expect: string; report?: VerifyView }): string {
  const r = options.report;
  const result = !r
    ? ''
    : r.ok
      ? `${notice(`Intact: ${r.rows} rows checked, the chain ends at its head.`)}
<dl class="facts"><dt>Rows</dt><dd>${r.rows}</dd><dt>Head</dt><dd>${
          r.anchor ? `<code id="audit-anchor">${escapeHtml(r.anchor)}</code>` : 'the log is empty'
        }</dd></dl>
<p class="small muted">Keep this head outside the database (print it, store it elsewhere) and check against it later: a rewrite of the whole log is then found too.</p>`
      : `${notice(`Tampered: ${r.message.replace(/^audit log TAMPERED: /, '')}`, 'error')}
<dl class="facts"><dt>First bad row</dt><dd>#${escapeHtml(r.firstBadId ?? '')}</dd><dt>What is wrong</dt><dd><code>${escapeHtml(r.reason ?? '')}</code></dd><dt>Rows checked</dt><dd>${r.rows}</dd><dt>Head recorded</dt><dd>${
          r.head.id ? `<code>${escapeHtml(`${r.head.id}:${r.head.hash}`)}</code>` : 'none'
        }</dd></dl>`;
  return consolePage(
    'Verify the audit log',
    `<p><a href="/admin/audit">← Audit log</a></p>
<h1>Verify the audit log</h1>
<p>Checks every row's hash and its link to the row before, and that the chain ends at the head the database records.</p>
<form method="get" action="/admin/audit/verify" class="card">
<input type="hidden" name="run" value="1">
${field({ name: 'expect', label: 'A head kept earlier (optional)', hint: '<row id>:<hash>, as a verify showed it', value: options.expect, required: false, autocomplete: 'off' })}
<button type="submit">Verify now</button></form>
<div aria-live="polite">${result}</div>`,
    options.csrf,
  );
}
