import { escapeHtml } from './html.ts';
import { designPage } from './design.ts';

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Please sign in',
  403: 'Not allowed',
  404: 'Page not found',
  405: 'Not allowed here',
  409: 'Not possible right now',
  410: 'No longer available',
  413: 'Too large',
  415: 'Not accepted',
  429: 'Too many requests',
};

/**
 * The page a browser gets for an error on an HTML route: what went wrong in
 * plain words and a way back (the console for its own pages, else the home
 * page). A platform error shows its request id, never its internals.
 */
export function errorPage(options: {
  status: number;
  message: string;
  path: string;
  requestId: string;
}): string {
  const inConsole = options.path === '/admin' || options.path.startsWith('/admin/');
  const title = TITLES[options.status] ?? (options.status >= 500 ? 'Something went wrong' : 'Error');
  const message =
    options.status >= 500
      ? `The platform could not answer this request. It has been logged; quote request ${options.requestId} when asking for help.`
      : options.message;
  const back =
    options.status === 401 && inConsole
      ? '<a class="button" href="/admin/login">Sign in</a>'
      : inConsole
        ? '<a class="button" href="/admin/tenants">Back to the console</a>'
        : '<a class="button" href="/">Go to the home page</a>';
  return designPage({
    title,
    narrow: true,
    brandHref: inConsole ? '/admin' : '/',
    body: `<h1>${escapeHtml(title)}</h1><p class="muted">Error ${options.status}</p><p>${escapeHtml(message)}</p><p>${back}</p>`,
  });
}
