import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createSecretBox, generateMasterKey, parseMasterKey, type SecretBox } from './secrets.ts';

/**
 * Where the master key comes from: AIQSO_MASTER_KEY, or `<data>/master.key`
 * (generated with mode 0600 on first use). During a rotation the new key sits
 * in `master.key.next` until the re-encryption committed; a box loaded at any
 * moment of a rotation, or after a crash in it, can open every stored secret.
 */
export interface MasterKeySource {
  configured?: string;
  dataDir: string;
}

export const keyFile = (dataDir: string) => path.join(dataDir, 'master.key');
export const nextKeyFile = (dataDir: string) => path.join(dataDir, 'master.key.next');

export async function writeKeyFile(file: string, base64: string): Promise<void> {
  await writeFile(file, `${base64}\n`, { mode: 0o600, flag: 'w' });
  await chmod(file, 0o600);
}

async function readKey(file: string) {
  return parseMasterKey(await readFile(file, 'utf8'));
}

/**
 * The master key's bytes as configured (AIQSO_MASTER_KEY, else
 * `<data>/master.key`), never generating one: undefined when there is none.
 * For what must be opened with the key alone (the platform's backups).
 */
export async function readMasterKey(source: MasterKeySource): Promise<Buffer | undefined> {
  if (source.configured) return parseMasterKey(source.configured);
  const file = keyFile(source.dataDir);
  return existsSync(file) ? readKey(file) : undefined;
}

/**
 * The box a long-running process uses: it re-reads the key files when they
 * change, so a rotation done by `aiqso secrets rotate-key` while the platform
 * runs is picked up without a restart.
 */
export async function loadSecretBox(source: MasterKeySource): Promise<SecretBox> {
  let box = await loadOnce(source);
  if (source.configured) return box;
  const stamp = () =>
    [keyFile(source.dataDir), nextKeyFile(source.dataDir)]
      .map((f) => (existsSync(f) ? `${statSync(f).mtimeMs}:${statSync(f).ino}` : '-'))
      .join('|');
  let seen = stamp();
  const current = () => {
    const now = stamp();
    if (now !== seen) {
      const others = existsSync(nextKeyFile(source.dataDir))
        ? [parseMasterKey(readFileSync(nextKeyFile(source.dataDir), 'utf8'))]
        : [];
      box = createSecretBox(parseMasterKey(readFileSync(keyFile(source.dataDir), 'utf8')), others);
      seen = now;
    }
    return box;
  };
  return {
    get keyId() {
      return current().keyId;
    },
    seal: (plain, context) => current().seal(plain, context),
    open: (sealed, context) => current().open(sealed, context),
    keyIdOf: (sealed) => current().keyIdOf(sealed),
  };
}

async function loadOnce(source: MasterKeySource): Promise<SecretBox> {
  const next = nextKeyFile(source.dataDir);
  const others = existsSync(next) ? [await readKey(next)] : [];
  if (source.configured) return createSecretBox(parseMasterKey(source.configured), others);
  const file = keyFile(source.dataDir);
  if (!existsSync(file)) {
    await mkdir(source.dataDir, { recursive: true });
    if (others.length > 0) {
      // A rotation finished its database work but crashed before the rename.
      await rename(next, file);
      return createSecretBox(others[0]!);
    }
    await writeFile(file, `${generateMasterKey()}\n`, { mode: 0o600, flag: 'wx' }).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    });
  }
  return createSecretBox(await readKey(file), others);
}

/** After the database holds only values sealed with the next key: make it the key. */
export async function promoteNextKey(dataDir: string): Promise<void> {
  await rename(nextKeyFile(dataDir), keyFile(dataDir));
}

export async function discardNextKey(dataDir: string): Promise<void> {
  await rm(nextKeyFile(dataDir), { force: true });
}
