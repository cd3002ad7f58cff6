import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { missingPart } from './strict.ts';

/**
 * The pages' browser tests: Debian's Chromium driven by playwright-core, and
 * one inspection every page gets (axe-core, screenshots at 1280 and 390 px,
 * no horizontal scroll at 390 px).
 */

export const chromiumPath = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
/** Skip (or, in strict mode, fail) when Chromium is not installed. */
export const skipBrowser = missingPart('Chromium', chromiumPath !== undefined, 'apt-get install chromium');

/** Chromium as the tests run it; `localhost` and `*.localhost` resolve to 127.0.0.1. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1',
    ],
  });
}

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/**
 * An inspector writing its screenshots to `outDir`: axe-core on the page as
 * it is (no serious or critical violation), then screenshots at 1280 px and
 * 390 px and the narrow width's scroll.
 */
export async function pageInspector(outDir: string): Promise<(page: Page, name: string) => Promise<void>> {
  const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  await mkdir(outDir, { recursive: true });
  return async (page, name) => {
    await page.evaluate(axeSource);
    const violations = await page.evaluate(async () => {
      const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: AxeViolation[] }> } }).axe;
      return (await axe.run()).violations;
    });
    const serious = violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    expect(serious, name).toEqual([]);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: path.join(outDir, `${name}-1280.png`), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(outDir, `${name}-390.png`), fullPage: true });
    const width = await page.evaluate<number>('document.scrollingElement.scrollWidth');
    expect(width, `${name}: horizontal scroll at 390 px`).toBeLessThanOrEqual(390);
    await page.setViewportSize({ width: 1280, height: 900 });
  };
}

/**
 * Sign in on a workspace's sign-in page (the tenant dashboard at `workspace`)
 * and wait until the page says who is signed in.
 */
export async function signInToWorkspace(
  page: Page,
  workspace: string,
  email: string,
  password: string,
): Promise<void> {
  await page.goto(`${workspace}/`);
  await page.fill('#f-email', email);
  await page.fill('#f-password', password);
  await page.click('main button[type=submit]');
  await expect.poll(() => page.textContent('main')).toContain(`Signed in as ${email}`);
}
