import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Which configuration an LXC container runs with. `ensure` rewrites the
 * config, `/aiqso/env` and the digest of its spec (`meta.json`), but the
 * container's init reads them only when it starts: so `start` records, in
 * `<dir>/aiqso/applied.json`, the digest it started the container with and
 * that start's init pid. A running container whose init is another (started
 * outside the driver) reports no digest; a stopped one reports what it will
 * start with.
 */
interface Applied {
  digest: string;
  pid: number;
}

const file = (aiqsoDir: string, name: string) => path.join(aiqsoDir, name);

async function readJson<T>(at: string): Promise<Partial<T>> {
  return JSON.parse(await readFile(at, 'utf8').catch(() => '{}')) as Partial<T>;
}

/** The spec digest `ensure` recorded in meta.json. */
export async function ensuredDigest(aiqsoDir: string): Promise<string | undefined> {
  return (await readJson<{ digest: string }>(file(aiqsoDir, 'meta.json'))).digest;
}

/**
 * After a start that really started the container: its init `pid` runs with
 * the ensured digest (`ensured`, when the caller has read meta.json already).
 */
export async function recordApplied(aiqsoDir: string, pid: number, ensured?: string): Promise<void> {
  const digest = ensured ?? (await ensuredDigest(aiqsoDir));
  if (!digest) return;
  const applied: Applied = { digest, pid };
  const target = file(aiqsoDir, 'applied.json');
  await writeFile(`${target}.tmp`, JSON.stringify(applied), { mode: 0o644 });
  await rename(`${target}.tmp`, target);
}

/** `ContainerInfo.configDigest` for a container observed running with init `pid`, or stopped. */
export async function reportedDigest(
  aiqsoDir: string,
  live: { running: boolean; pid?: number },
): Promise<string | undefined> {
  if (!live.running) return ensuredDigest(aiqsoDir);
  const applied = await readJson<Applied>(file(aiqsoDir, 'applied.json'));
  return applied.pid !== undefined && applied.pid === live.pid ? applied.digest : undefined;
}
