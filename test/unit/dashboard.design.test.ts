import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { STYLESHEET } from '../../src/web/design.ts';

/**
 * The tenant dashboard runs without a build, in its own container, so it serves
 * a copy of the platform's design system: dashboard/design.css, written by
 * `npm run build` (scripts/build.mjs) and committed. It must be the source's.
 */
describe('the dashboard design system', () => {
  it('is the platform stylesheet, byte for byte (run `npm run build` when this fails)', () => {
    const copy = readFileSync(new URL('../../dashboard/design.css', import.meta.url), 'utf8');
    expect(copy === STYLESHEET).toBe(true);
  });
});
