/**
 * Real parts a test needs (lxc, nginx, Chromium, Redis…). Outside CI a missing
 * part skips the test with the reason; with AIQSO_TEST_STRICT=1 (as .ci/run
 * sets) it fails instead, so a green CI means the test really ran.
 */
export const STRICT = process.env.AIQSO_TEST_STRICT === '1';

/** Returns true when the test should be skipped; throws in strict mode. */
export function missingPart(part: string, available: boolean, fix: string): boolean {
  if (available) return false;
  if (STRICT) throw new Error(`${part} is required in strict mode but missing; fix: ${fix}`);
  process.stderr.write(`skipping: ${part} is missing (${fix})\n`);
  return true;
}
