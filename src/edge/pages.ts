import type { StepStatus } from '../db/tables.ts';
import { OPERATOR_SUSPENSION, PAYMENT_SUSPENSION } from '../core/tenants.ts';
import { escapeHtml, htmlDocument, styleSource } from '../web/html.ts';

/** The edge's own HTML pages. Pure: text in, HTML out; every value escaped. */

// Colours meet WCAG AA on white (text 15.9:1, done 5.0:1, failed 6.5:1, links 6.7:1), as the design system's.
const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222;overflow-wrap:anywhere}
h1{font-size:1.5rem}a{color:#1d4ed8}li.done{color:#15803d}li.failed{color:#b91c1c}li.running{font-weight:bold}`;

/** On every page the edge writes: no script, the stylesheet by hash, no framing, no sniffing, no Referer. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': `default-src 'none'; style-src ${styleSource(STYLE)}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** A page with its title as heading and, when the platform's address is known, a way back to it. */
function page(title: string, body: string, home: string | undefined): string {
  const back = home ? `<p><a href="${escapeHtml(home)}">Go to the home page</a></p>` : '';
  return htmlDocument({ title, style: STYLE, body: `<h1>${escapeHtml(title)}</h1>${body}${back}` });
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

/** What the edge knows of a tenant for its pages (src/edge/routes-store.ts, tenantPageFacts). */
export interface TenantPageFacts {
  company: string | null;
  status: string | null;
  statusReason: string | null;
  purgeAfter: Date | null;
  steps: StepStatus[];
}

/** The date a visitor reads (UTC, day only). */
const day = (d: Date) => d.toISOString().slice(0, 10);

/**
 * The edge's pages, each with a link to `home` (the platform's front page at
 * the address the visitor used) when it is known.
 */
export function edgePages(home?: string) {
  return {
    badRequest: (reason: string): EdgePage => ({
      status: 400,
      html: page('Bad request', `<p>${escapeHtml(reason)}.</p>`, home),
    }),
    unknownHost: (): EdgePage => ({
      status: 404,
      html: page('Not found', '<p>There is no workspace at this address.</p>', home),
    }),
    noRoute: (): EdgePage => ({
      status: 404,
      html: page('Not found', '<p>This workspace has no service at this path.</p>', home),
    }),
    /**
     * A route the edge holds back for the tenant's state: a cancelled workspace
     * (with the day its data is deleted), one suspended by an operator, or for a
     * payment, each said as it is.
     */
    suspended: (tenant?: Pick<TenantPageFacts, 'status' | 'statusReason' | 'purgeAfter'>): EdgePage => {
      if (tenant?.status === 'cancelled')
        return {
          status: 410,
          html: page(
            'Workspace cancelled',
            `<p>This workspace has been cancelled and no longer serves anyone.${
              tenant.purgeAfter
                ? ` Its data is kept until ${day(tenant.purgeAfter)} and then deleted for good.`
                : ''
            }</p>`,
            home,
          ),
        };
      const reason = tenant?.status === 'suspended' ? tenant.statusReason : null;
      return {
        status: 402,
        html: page(
          'Workspace suspended',
          reason === OPERATOR_SUSPENSION
            ? "<p>This workspace is suspended by the platform's operator. Its owner can ask the operator why and when it comes back.</p>"
            : reason === PAYMENT_SUSPENSION
              ? '<p>This workspace is suspended because a payment did not go through. ' +
                'The owner can restore it by updating the billing details.</p>'
              : '<p>This workspace is suspended. Its owner can ask the platform why.</p>',
          home,
        ),
      };
    },
    forbidden: (): EdgePage => ({
      status: 403,
      html: page('Forbidden', '<p>Your address is not allowed to reach this service.</p>', home),
    }),
    rateLimited: (retryAfterSeconds: number): EdgePage => ({
      status: 429,
      headers: { 'retry-after': String(retryAfterSeconds) },
      html: page('Too many requests', `<p>Please retry in ${retryAfterSeconds} s.</p>`, home),
    }),
    tooLarge: (): EdgePage => ({
      status: 413,
      html: page('Request too large', '<p>The request body is larger than this service accepts.</p>', home),
    }),
    unavailable: (): EdgePage => ({
      status: 503,
      headers: { 'retry-after': '10' },
      html: page(
        'Service unavailable',
        '<p>This service is not reachable right now. Try again shortly.</p>',
        home,
      ),
    }),
    badGateway: (): EdgePage => ({
      status: 502,
      html: page('Service not responding', '<p>This service did not answer. Try again shortly.</p>', home),
    }),
    gatewayTimeout: (): EdgePage => ({
      status: 504,
      html: page('Service too slow', '<p>This service took too long to answer. Try again shortly.</p>', home),
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
        home,
      ),
    }),
  };
}

/** The pages without a way back (a WebSocket handshake refused: no browser reads it). */
export const pages = edgePages();
