import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A secret the embedded default generates once and keeps in
 * `<data>/secrets/<name>` (mode 0600), so restarts and other processes sharing
 * the data directory agree on it. Creation is exclusive: when two processes
 * race, one writes and both read the winner's value.
 */
export async function loadOrCreateSecret(
  dataDir: string,
  name: string,
  generate: () => string,
): Promise<string> {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Write a private temp file, then hard-link it into place: the link either
  // appears complete or fails with EEXIST, so no reader ever sees a half-written secret.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, `${generate()}\n`, { mode: 0o600 });
  try {
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await rm(tmp, { force: true });
  }
  const value = (await readFile(file, 'utf8')).trim();
  if (!value) throw new Error(`${file} is empty; delete it to generate a new secret`);
  return value;
}

export const randomToken = (bytes = 32): string => randomBytes(bytes).toString('base64url');
