import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The ACME account key, created once in `<data>/acme-account.key` (0600). It
 * identifies the account to the CA, so `aiqso certs order` and the renewal
 * schedule (in whichever process runs it) must use the same one.
 */
export async function accountKey(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'acme-account.key');
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // acme-client is large; only a process that orders certificates loads it.
  const acme = await import('acme-client');
  const key = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
  await mkdir(dataDir, { recursive: true });
  try {
    // Exclusive: of two processes creating it at once, both go on with the one written first.
    await writeFile(file, key, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  await chmod(file, 0o600);
  return readFile(file, 'utf8');
}
