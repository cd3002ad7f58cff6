import type { StepStatus } from '../db/tables.ts';
import { escapeHtml, htmlDocument, styleSource } from '../web/html.ts';

/** The edge's own HTML pages. Pure: text in, HTML out; every value escaped. */

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}li.done{color:#2a7}li.failed{color:#c33}li.running{font-weight:bold}`;

/** On every page the edge writes: no script, the stylesheet by hash, no framing, no sniffing, no Referer. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': `default-src 'none'; style-src ${styleSource(STYLE)}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function page(title: string, body: string, extraHead = ''): string {
  return htmlDocument({ title, style: STYLE, head: extraHead, body: `<h1>${escapeHtml(title)}</h1>${body}` });
}

export interface EdgePage {
  status: number;
  html: string;
  headers?: Record<string, string>;
}

/**
 * A waiting step's reason as a visitor reads it: a wait for room says what is
 * short, without the host's name or figures (the API and status show those).
 */
export function waitingText(reason: string): string {
  if (!reason.startsWith('capacity: ')) return `waiting for ${reason}`;
  const short =
    ['memory', 'disk', 'CPUs', 'containers', 'address'].find((w) => reason.includes(w)) ?? 'capacity';
  return `waiting for room: the servers are short of ${short === 'address' ? 'network addresses' : short}; the workspace is set up by itself as soon as there is room`;
}

export const pages = {
  badRequest: (reason: string): EdgePage => ({
    status: 400,
    html: page('Bad request', `<p>${escapeHtml(reason)}.</p>`),
  }),
  unknownHost: (): EdgePage => ({
    status: 404,
    html: page('Not found', '<p>There is no workspace at this address.</p>'),
  }),
  noRoute: (): EdgePage => ({
    status: 404,
    html: page('Not found', '<p>This workspace has no service at this path.</p>'),
  }),
  suspended: (): EdgePage => ({
    status: 402,
    html: page(
      'Workspace suspended',
      '<p>This workspace is suspended, usually because a payment did not go through. ' +
        'The owner can restore it by updating the billing details.</p>',
    ),
  }),
  forbidden: (): EdgePage => ({
    status: 403,
    html: page('Forbidden', '<p>Your address is not allowed to reach this service.</p>'),
  }),
  rateLimited: (retryAfterSeconds: number): EdgePage => ({
    status: 429,
    headers: { 'retry-after': String(retryAfterSeconds) },
    html: page('Too many requests', `<p>Please retry in ${retryAfterSeconds} s.</p>`),
  }),
  tooLarge: (): EdgePage => ({
    status: 413,
    html: page('Request too large', '<p>The request body is larger than this service accepts.</p>'),
  }),
  unavailable: (): EdgePage => ({
    status: 503,
    headers: { 'retry-after': '10' },
    html: page('Service unavailable', '<p>This service is not reachable right now. Try again shortly.</p>'),
  }),
  badGateway: (): EdgePage => ({
    status: 502,
    html: page('Service not responding', '<p>This service did not answer. Try again shortly.</p>'),
  }),
  gatewayTimeout: (): EdgePage => ({
    status: 504,
    html: page('Service too slow', '<p>This service took too long to answer. Try again shortly.</p>'),
  }),
  provisioning: (company: string | null, steps: StepStatus[]): EdgePage => ({
    status: 503,
    headers: { 'retry-after': '5' },
    html: page(
      'Preparing your workspace',
      // No self-refresh: reloading on a timer takes a screen reader back to the top each time
      // (WCAG 2.2.1). The owner is mailed when it is ready; the link looks again.
      `<p>${company ? `${escapeHtml(company)}'s workspace` : 'This workspace'} is being set up; its owner gets an email when it is ready.</p>
<ol>${steps.map((s) => `<li class="${escapeHtml(s.state)}">${escapeHtml(s.name)} — ${escapeHtml(s.state)}${s.state === 'waiting' && s.waitingFor ? ` (${escapeHtml(waitingText(s.waitingFor))})` : ''}</li>`).join('')}</ol>
<p><a href="">Check again</a></p>`,
    ),
  }),
};
