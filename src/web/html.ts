import { createHash } from 'node:crypto';

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

// The portal's one stylesheet. Pages carry no script and no other inline style: the CSP allows this by hash.
const STYLE = `
body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1f2933;line-height:1.5}
h1{font-size:1.5rem}button{font-size:1rem;padding:.6rem 1.4rem;border:0;border-radius:.4rem;background:#2563eb;color:#fff;cursor:pointer}
.muted{color:#6b7280}.box{border:1px solid #e5e7eb;border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}
.error{color:#b91c1c}
`;

/**
 * The Content-Security-Policy of the portal's pages: no script, no framing,
 * forms post here (or, after signup, on to Stripe's hosted checkout).
 */
export const PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
  "img-src 'self'",
  "form-action 'self' https://checkout.stripe.com",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** A minimal, self-contained page: no external assets, so it renders the same offline. */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style></head><body>${body}</body></html>`;
}
