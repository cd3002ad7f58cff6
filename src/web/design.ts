import { createHash } from 'node:crypto';
import { escapeHtml } from './html.ts';

/**
 * The platform's design system: one stylesheet, served by the platform itself
 * at `STYLESHEET_PATH` (no CDN, no web font), and the HTML pieces built on it.
 * Colours meet WCAG AA contrast (4.5:1 for text) on their backgrounds: body
 * text #1f2933 on white 14.7:1, muted #52606d 6.4:1, links and the primary
 * button #1d4ed8 6.7:1, the danger button #b91c1c 6.5:1, every badge's text on
 * its tint above 6:1. No script: confirmation dialogs open with CSS `:target`.
 */
export const STYLESHEET = `:root{--text:#1f2933;--muted:#52606d;--line:#d9e2ec;--bg:#fff;--soft:#f5f7fa;
--primary:#1d4ed8;--primary-dark:#1e3a8a;--danger:#b91c1c;--danger-dark:#7f1d1d;--focus:#f59e0b;
--s1:.25rem;--s2:.5rem;--s3:.75rem;--s4:1rem;--s5:1.5rem;--s6:2rem;--s7:3rem;--radius:.375rem}
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--text);background:var(--bg)}
h1,h2,h3{line-height:1.25;margin:0 0 var(--s3)}
h1{font-size:1.75rem}h2{font-size:1.375rem;margin-top:var(--s6)}h3{font-size:1.125rem}
p{margin:0 0 var(--s4)}figure{margin:0}small,.small{font-size:.875rem}
a{color:var(--primary)}a:hover{color:var(--primary-dark)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.875em;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.skip{position:absolute;left:-999px}.skip:focus{left:var(--s4);top:var(--s4);background:var(--bg);padding:var(--s2)}
.topbar{display:flex;flex-wrap:wrap;gap:var(--s3);align-items:center;justify-content:space-between;padding:var(--s3) var(--s5);border-bottom:1px solid var(--line);background:var(--soft)}
.brand{font-weight:700;color:var(--text);text-decoration:none}
.topbar nav{display:flex;flex-wrap:wrap;gap:var(--s4);align-items:center}
.topbar form{margin:0}
main{max-width:72rem;margin:0 auto;padding:var(--s6) var(--s5)}
main.narrow{max-width:28rem}
.card{border:1px solid var(--line);border-radius:var(--radius);padding:var(--s5);margin:0 0 var(--s5);background:var(--bg)}
.stack>*+*{margin-top:var(--s4)}
.row{display:flex;flex-wrap:wrap;gap:var(--s3);align-items:flex-end}
label{display:block;font-weight:600;margin-bottom:var(--s1)}
.hint{display:block;font-weight:400;color:var(--muted);font-size:.875rem}
input,select{font:inherit;color:var(--text);background:var(--bg);border:1px solid #7b8794;border-radius:var(--radius);padding:var(--s2) var(--s3);min-height:2.5rem;width:100%;max-width:100%}
.row input,.row select{width:auto}
.field{margin-bottom:var(--s4)}
.field-error{color:var(--danger);font-size:.875rem;margin-top:var(--s1)}
input[aria-invalid=true]{border-color:var(--danger)}
fieldset.choices{border:0;padding:0;margin:0 0 var(--s4);min-width:0}
fieldset.choices legend{font-weight:600;padding:0;margin-bottom:var(--s2)}
label.choice,label.check{display:flex;gap:var(--s3);align-items:flex-start;font-weight:400;cursor:pointer}
label.choice{border:1px solid var(--line);border-radius:var(--radius);padding:var(--s3);margin-bottom:var(--s2)}
label.choice:has(input:checked){border-color:var(--primary);background:#eff6ff}
input[type=radio],input[type=checkbox]{width:1.25rem;height:1.25rem;min-height:0;margin:.125rem 0 0;padding:0;flex:none;accent-color:var(--primary)}
.lead{font-size:1.125rem;color:var(--muted);max-width:42rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,16rem),1fr));gap:var(--s4);margin:0 0 var(--s5);padding:0;list-style:none}
.grid>.card{margin:0;display:flex;flex-direction:column}
.grid>.card ul{padding-left:var(--s5);flex:1}
.price{font-size:1.75rem;font-weight:700;margin:0 0 var(--s3)}
.button,button{display:inline-block;font:inherit;font-weight:600;line-height:1.25;text-decoration:none;border:1px solid transparent;border-radius:var(--radius);padding:var(--s2) var(--s4);min-height:2.5rem;cursor:pointer;background:var(--primary);color:#fff}
.button:hover,button:hover{background:var(--primary-dark);color:#fff}
.button.secondary,button.secondary{background:var(--bg);color:var(--text);border-color:#7b8794}
.button.secondary:hover,button.secondary:hover{background:var(--soft);color:var(--text)}
.button.danger,button.danger{background:var(--danger)}.button.danger:hover,button.danger:hover{background:var(--danger-dark)}
.link-button{background:none;border:0;color:var(--primary);padding:0;min-height:0;text-decoration:underline;font-weight:400}
.link-button:hover{background:none;color:var(--primary-dark)}
.notice{border-left:4px solid var(--primary);background:#eff6ff;padding:var(--s3) var(--s4);margin:0 0 var(--s5)}
.notice.error{border-color:var(--danger);background:#fef2f2}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:var(--radius);margin:0 0 var(--s5)}
pre.log{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.8125rem;line-height:1.45;white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%;max-height:70vh;overflow:auto;margin:0 0 var(--s5);padding:var(--s3) var(--s4);border:1px solid var(--line);border-radius:var(--radius);background:var(--soft)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:var(--s2) var(--s3);border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-size:.875rem}
tbody tr:last-child td{border-bottom:0}
.badge{display:inline-block;padding:0 var(--s2);border-radius:999px;font-size:.8125rem;font-weight:600;white-space:nowrap}
.badge.ok{background:#dcfce7;color:#166534}.badge.warn{background:#fef3c7;color:#92400e}
.badge.bad{background:#fee2e2;color:#991b1b}.badge.info{background:#dbeafe;color:#1e40af}
.badge.off{background:#e5e7eb;color:#374151}
.empty{text-align:center;padding:var(--s6) var(--s4);color:var(--muted);border:1px dashed var(--line);border-radius:var(--radius);margin:0 0 var(--s5)}
.pager{display:flex;flex-wrap:wrap;gap:var(--s3);align-items:center;justify-content:space-between}
.timeline{list-style:none;margin:0 0 var(--s5);padding:0}
.timeline li{position:relative;padding:0 0 var(--s4) var(--s5);border-left:2px solid var(--line);margin-left:var(--s2)}
.timeline li::before{content:"";position:absolute;left:-.45rem;top:.3rem;width:.75rem;height:.75rem;border-radius:50%;background:#7b8794}
.timeline li.done::before{background:#15803d}.timeline li.failed::before{background:var(--danger)}
.timeline li.running::before,.timeline li.waiting::before{background:var(--primary)}
.actions{display:flex;flex-wrap:wrap;gap:var(--s3);margin:0 0 var(--s5)}
.dialog{display:none;position:fixed;inset:0;z-index:10;background:rgba(15,23,42,.6);align-items:center;justify-content:center;padding:var(--s4)}
.dialog:target{display:flex}
.dialog-box{background:var(--bg);border-radius:var(--radius);padding:var(--s5);width:100%;max-width:30rem;box-shadow:0 10px 30px rgba(0,0,0,.3)}
.dialog-box form{margin:0}
.codes{columns:2;font-family:ui-monospace,Menlo,Consolas,monospace;padding-left:var(--s5)}
.qr{width:14rem;max-width:100%;height:auto;border:1px solid var(--line)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:var(--s2) var(--s4);margin:0 0 var(--s5)}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
@media (max-width:40rem){main{padding:var(--s5) var(--s4)}.topbar{padding:var(--s3) var(--s4)}dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:var(--s2)}}
`;

/** Where the platform serves the stylesheet; its hash in the name, so a change is never served stale. */
export const STYLESHEET_PATH = `/assets/aiqso-${createHash('sha256').update(STYLESHEET).digest('hex').slice(0, 12)}.css`;

export type Tone = 'ok' | 'warn' | 'bad' | 'info' | 'off';

/** The tone of a status badge for the statuses tenants, services, steps and incidents take. */
export function toneOf(status: string): Tone {
  if (['active', 'done', 'healthy', 'resolved', 'success'].includes(status)) return 'ok';
  if (['failed', 'degraded', 'failing', 'failure', 'denied', 'open'].includes(status)) return 'bad';
  if (['suspended', 'pending_payment', 'waiting', 'removing'].includes(status)) return 'warn';
  if (['provisioning', 'pending', 'deploying', 'running'].includes(status)) return 'info';
  return 'off';
}

export function badge(status: string): string {
  return `<span class="badge ${toneOf(status)}">${escapeHtml(status.replace(/_/g, ' '))}</span>`;
}

/** A table (scrolling inside its own box on a narrow screen); cells are HTML already escaped by the caller. */
export function table(caption: string, head: string[], rows: string[][]): string {
  return `<div class="table-wrap" role="region" aria-label="${escapeHtml(caption)}" tabindex="0"><table>
<thead><tr>${head.map((h) => `<th scope="col">${escapeHtml(h)}</th>`).join('')}</tr></thead>
<tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n')}</tbody></table></div>`;
}

export function emptyState(title: string, text: string): string {
  return `<div class="empty"><p><strong>${escapeHtml(title)}</strong></p><p>${escapeHtml(text)}</p></div>`;
}

export function notice(text: string, kind: 'info' | 'error' = 'info'): string {
  return `<div class="notice${kind === 'error' ? ' error' : ''}" role="${kind === 'error' ? 'alert' : 'status'}">${escapeHtml(text)}</div>`;
}

/**
 * A confirmation dialog without script: a link to `#id` opens it (CSS
 * `:target`), its Cancel link closes it, its form does the action.
 */
export function confirmDialog(options: {
  id: string;
  title: string;
  text: string;
  action: string;
  hidden: Record<string, string>;
  confirm: string;
  danger?: boolean;
}): string {
  const fields = Object.entries(options.hidden)
    .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
    .join('');
  return `<div class="dialog" id="${escapeHtml(options.id)}" role="dialog" aria-modal="true" aria-labelledby="${escapeHtml(options.id)}-title">
<div class="dialog-box"><h2 id="${escapeHtml(options.id)}-title">${escapeHtml(options.title)}</h2>
<p>${escapeHtml(options.text)}</p>
<form method="post" action="${escapeHtml(options.action)}">${fields}<div class="actions">
<button type="submit"${options.danger ? ' class="danger"' : ''}>${escapeHtml(options.confirm)}</button>
<a class="button secondary" href="#">Cancel</a></div></form></div></div>`;
}

/** A form field with its label, hint and error (the error announced and tied to the input). */
export function field(options: {
  name: string;
  label: string;
  type?: string;
  value?: string;
  hint?: string;
  error?: string;
  autocomplete?: string;
  inputmode?: string;
  required?: boolean;
  /** The browser's own check, as Chromium reads it (the `v` flag: a `-` in a class is escaped). */
  pattern?: string;
}): string {
  const id = `f-${options.name}`;
  const described = [options.hint ? `${id}-hint` : '', options.error ? `${id}-error` : '']
    .filter(Boolean)
    .join(' ');
  return `<div class="field"><label for="${id}">${escapeHtml(options.label)}${
    options.hint ? `<span class="hint" id="${id}-hint">${escapeHtml(options.hint)}</span>` : ''
  }</label><input id="${id}" name="${escapeHtml(options.name)}" type="${options.type ?? 'text'}"${
    options.value !== undefined ? ` value="${escapeHtml(options.value)}"` : ''
  }${options.autocomplete ? ` autocomplete="${options.autocomplete}"` : ''}${
    options.inputmode ? ` inputmode="${options.inputmode}"` : ''
  }${options.pattern ? ` pattern="${escapeHtml(options.pattern)}"` : ''}${options.required === false ? '' : ' required'}${described ? ` aria-describedby="${described}"` : ''}${
    options.error ? ' aria-invalid="true"' : ''
  }>${options.error ? `<div class="field-error" id="${id}-error">${escapeHtml(options.error)}</div>` : ''}</div>`;
}

/** A whole page in the design system: the stylesheet by link, no script, a skip link, a top bar. */
export function designPage(parts: {
  title: string;
  body: string;
  /** The top bar's right side (navigation, sign-out), HTML. */
  nav?: string;
  brandHref?: string;
  narrow?: boolean;
  /** More of the head, HTML (a page that reloads itself: its `<meta http-equiv="refresh">`). */
  head?: string;
}): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(parts.title)} · AIQSO</title><link rel="stylesheet" href="${STYLESHEET_PATH}">${parts.head ?? ''}</head>
<body><a class="skip" href="#main">Skip to content</a>
<header class="topbar"><a class="brand" href="${escapeHtml(parts.brandHref ?? '/')}">AIQSO</a>${
    parts.nav ? `<nav aria-label="Main">${parts.nav}</nav>` : ''
  }</header>
<main id="main"${parts.narrow ? ' class="narrow"' : ''}>${parts.body}</main></body></html>
`;
}
