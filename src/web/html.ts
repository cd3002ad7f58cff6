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
  // The design system's stylesheet comes from this origin (src/web/design.ts); older pages carry theirs inline.
  `style-src 'self' ${styleSource(STYLE)}`,
  "img-src 'self'",
  "form-action 'self' https://checkout.stripe.com",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** The CSP source that allows exactly `style` as an inline stylesheet. */
export function styleSource(style: string): string {
  return `'sha256-${createHash('sha256').update(style).digest('base64')}'`;
}

/**
 * A self-contained HTML document: no external assets, so it renders the same
 * offline; its one stylesheet inline, which a CSP allows by `styleSource`.
 */
export function htmlDocument(parts: { title: string; style: string; body: string; head?: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(parts.title)}</title>${parts.head ?? ''}
<style>${parts.style}</style></head><body>${parts.body}</body></html>
`;
}

/** A page of the portal, in its stylesheet. */
export function page(title: string, body: string, head?: string): string {
  return htmlDocument({ title, style: STYLE, body, head });
}
