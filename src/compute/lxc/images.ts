import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { ImageCache, OnPullProgress, PullProgress } from '../../core/compute.ts';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import { run } from '../shared/run.ts';
import { grantTraversal, idmapLines } from './idmap.ts';
import { securityLines } from './security.ts';
import type { Ready } from './walls.ts';

/**
 * OCI images for the lxc driver. `skopeo copy` pulls an image into one OCI
 * layout shared by every container (`<lxcPath>/.aiqso-images/oci`), `umoci
 * unpack` turns it into a template container per image digest
 * (`aiqsoimg-<digest>`), its files given to the containers' id range as they
 * are written, and tenants' containers are overlay clones of that template
 * like any other. A reference is resolved once, at its first pull, and
 * recorded (`refs/<hash>.json`); later deploys of the same reference reuse
 * the template without contacting the registry. Concurrent pulls of one
 * reference, in this process or another on the same database, make one pull;
 * the others wait for it. A template appears by atomic rename, complete or not at all.
 */

/** Static busybox from the host, copied into each image template: runs the init script whatever the image ships. */
export const INIT_HELPER = '/bin/busybox';
/** Where the helper sits in an image's rootfs (named `busybox`: it picks its applet from argv). */
export const INIT_INSIDE = '/.aiqso-bin/busybox';

export interface ImageConfig {
  ref: string;
  /** The manifest's digest (`sha256:…`). */
  digest: string;
  architecture: string;
  os: string;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workdir: string;
  user: string;
}

interface RefRecord {
  ref: string;
  digest: string;
  template: string;
}

export interface LxcImagesOptions {
  db: Database;
  log: Logger;
  lxcPath: string;
  /** containers-registries.conf(5) for skopeo (e.g. a local registry marked insecure); default skopeo's own. */
  registriesConf?: string;
  ready: () => Promise<Ready>;
}

/** The OCI architecture name of this host. */
export function hostArchitecture(arch: string = process.arch): string {
  return (
    ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' } as const)[
      arch as 'x64'
    ] ?? arch
  );
}

/** A short, file-name-safe key for a reference. */
const refKey = (ref: string) => createHash('sha256').update(ref).digest('hex').slice(0, 32);

/** Template container name for an image digest. */
export const imageTemplateName = (digest: string) =>
  `aiqsoimg-${digest.replace(/^sha256:/, '').slice(0, 24)}`;

/** The registry host of a reference (`docker.io` when it names none). */
export function registryOf(ref: string): string {
  const first = ref.split('/')[0]!;
  return ref.includes('/') && /[.:]|^localhost$/.test(first) ? first : 'docker.io';
}

/**
 * What skopeo's failure means, in words for the tenant: the image is missing,
 * the registry refused or cannot be reached, or the pull failed otherwise.
 */
export function pullFailure(ref: string, stderr: string): string {
  const text = stderr.trim();
  const registry = registryOf(ref);
  if (/manifest unknown|name unknown|not found|404/i.test(text))
    return `image ${ref} does not exist in ${registry}`;
  if (/unauthorized|denied|authentication required|401|403/i.test(text))
    return `registry ${registry} refused to serve ${ref} (access denied)`;
  if (/connection refused/i.test(text)) return `registry ${registry} refused the connection`;
  if (/no such host|server misbehaving|i\/o timeout|dial tcp|tls|x509|http response to https/i.test(text))
    return `registry ${registry} cannot be reached: ${lastLine(text)}`;
  return `pulling ${ref} failed: ${lastLine(text)}`;
}

function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .filter(Boolean)
      .at(-1)
      ?.replace(/^time="[^"]*" level=\w+ msg="?/, '')
      .replace(/"$/, '')
      .slice(0, 300) ?? 'no output'
  );
}

export class LxcImages implements ImageCache {
  readonly root: string;
  private readonly inflight = new Map<string, Promise<{ digest: string; pulled: boolean }>>();
  /** Who follows the pull of each reference (every caller that passed `onProgress`, joiners included). */
  private readonly listeners = new Map<string, Set<OnPullProgress>>();
  /** How many pulls from a registry this driver made (operators' metric; tests read it). */
  pulls = 0;

  constructor(private readonly o: LxcImagesOptions) {
    this.root = path.join(o.lxcPath, '.aiqso-images');
  }

  private get layout() {
    return path.join(this.root, 'oci');
  }
  private refFile(ref: string) {
    return path.join(this.root, 'refs', `${refKey(ref)}.json`);
  }

  /** The recorded resolution of `ref`, when its template is complete. */
  async resolved(ref: string): Promise<RefRecord | undefined> {
    const text = await readFile(this.refFile(ref), 'utf8').catch(() => undefined);
    if (!text) return undefined;
    const record = JSON.parse(text) as RefRecord;
    return existsSync(path.join(this.o.lxcPath, record.template, 'config')) ? record : undefined;
  }

  async cached(ref: string): Promise<boolean> {
    return (await this.resolved(ref)) !== undefined;
  }

  /** The image's config as recorded beside its template. */
  async config(template: string): Promise<ImageConfig> {
    return JSON.parse(
      await readFile(path.join(this.o.lxcPath, template, 'image.json'), 'utf8'),
    ) as ImageConfig;
  }

  pull(ref: string, onProgress?: OnPullProgress): Promise<{ digest: string; pulled: boolean }> {
    if (onProgress) {
      const set = this.listeners.get(ref) ?? new Set();
      set.add(onProgress);
      this.listeners.set(ref, set);
    }
    let pending = this.inflight.get(ref);
    if (!pending) {
      pending = this.pullLocked(ref).finally(() => this.inflight.delete(ref));
      this.inflight.set(ref, pending);
    }
    if (!onProgress) return pending;
    return pending.finally(() => {
      const set = this.listeners.get(ref);
      set?.delete(onProgress);
      if (set?.size === 0) this.listeners.delete(ref);
    });
  }

  private emit(ref: string, stage: PullProgress['stage'], detail: string): void {
    for (const listener of this.listeners.get(ref) ?? []) listener({ stage, image: ref, detail });
  }

  /** Template container name for a reference (pulled if needed), as a first deploy gets it. */
  async template(ref: string, onProgress?: OnPullProgress): Promise<string> {
    await this.pull(ref, onProgress);
    const record = await this.resolved(ref);
    if (!record) throw new DomainError('deploy_failed', `image ${ref} is not in the cache after its pull`);
    // umoci makes the bundle directory 0700: container root (an unprivileged uid) is let through.
    const ready = await this.o.ready();
    await grantTraversal(path.join(this.o.lxcPath, record.template, 'rootfs'), ready.idmap.uid.start);
    return record.template;
  }

  private async pullLocked(ref: string): Promise<{ digest: string; pulled: boolean }> {
    const done = await this.resolved(ref);
    if (done) {
      this.emit(ref, 'cached', `${done.digest} as ${done.template}`);
      return { digest: done.digest, pulled: false };
    }
    return this.o.db.transaction().execute(async (trx) => {
      // One pull at a time into the shared layout (skopeo rewrites its index), across every process.
      const key = `aiqso.images:${this.o.lxcPath}`;
      const { rows } = await sql<{
        got: boolean;
      }>`SELECT pg_try_advisory_xact_lock(hashtext(${key})) AS got`.execute(trx);
      if (!rows[0]?.got) {
        this.emit(ref, 'waiting', 'another pull into this image cache is under way');
        await sql`SELECT pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
      }
      const again = await this.resolved(ref);
      if (again) {
        this.emit(ref, 'cached', `${again.digest} as ${again.template}`);
        return { digest: again.digest, pulled: false };
      }
      return { digest: await this.fetchAndUnpack(ref), pulled: true };
    });
  }

  private skopeoArgs(): string[] {
    return this.o.registriesConf ? ['--registries-conf', this.o.registriesConf] : [];
  }

  private async fetchAndUnpack(ref: string): Promise<string> {
    const ready = await this.o.ready();
    await mkdir(path.join(this.root, 'refs'), { recursive: true, mode: 0o700 });
    const tag = `r-${refKey(ref)}`;
    const started = Date.now();
    this.o.log.info({ image: ref }, 'pulling image');
    this.pulls++;
    this.emit(ref, 'pulling', `from ${registryOf(ref)}`);
    const copy = await run(
      'skopeo',
      [...this.skopeoArgs(), 'copy', `docker://${ref}`, `oci:${this.layout}:${tag}`],
      {
        timeoutMs: 30 * 60_000,
        onLine: (line) => {
          const blob = /^Copying (blob|config) (?:sha256:)?([0-9a-f]{12})/.exec(line);
          if (blob) this.emit(ref, 'copying', `${blob[1]} sha256:${blob[2]}`);
        },
      },
    );
    if (copy.exitCode !== 0) throw new DomainError('deploy_failed', pullFailure(ref, copy.stderr));
    const config = await this.readConfig(ref, tag);
    const host = hostArchitecture();
    if (config.os !== 'linux' || config.architecture !== host) {
      await run('umoci', ['rm', '--image', `${this.layout}:${tag}`]);
      throw new DomainError(
        'deploy_failed',
        `image ${ref} is built for ${config.os}/${config.architecture}; this host runs linux/${host}`,
      );
    }
    const template = imageTemplateName(config.digest);
    const final = path.join(this.o.lxcPath, template);
    if (!existsSync(path.join(final, 'config'))) {
      this.emit(ref, 'unpacking', `${config.digest} into ${template}`);
      const tmp = path.join(this.o.lxcPath, `.${template}.${randomBytes(4).toString('hex')}`);
      try {
        const { uid, gid } = ready.idmap;
        const unpack = await run('umoci', [
          'unpack',
          '--uid-map',
          `0:${uid.start}:${uid.size}`,
          '--gid-map',
          `0:${gid.start}:${gid.size}`,
          '--image',
          `${this.layout}:${tag}`,
          tmp,
        ]);
        if (unpack.exitCode !== 0) {
          await run('umoci', ['rm', '--image', `${this.layout}:${tag}`]);
          // umoci resolves the image's USER against its own /etc/passwd while unpacking.
          const user = /cannot parse user spec: '([^']*)'/.exec(unpack.stderr);
          throw new DomainError(
            'deploy_failed',
            user
              ? `image ${ref} runs as USER ${user[1]}, which is not in its /etc/passwd or /etc/group`
              : `unpacking ${ref} failed: ${lastLine(unpack.stderr)}`,
          );
        }
        await prepareRootfs(path.join(tmp, 'rootfs'), [uid.start, gid.start]);
        await writeFile(path.join(tmp, 'image.json'), JSON.stringify(config, null, 2));
        await writeFile(path.join(tmp, 'config'), renderImageTemplateConfig(this.o.lxcPath, template, ready));
        if (existsSync(final)) await rm(final, { recursive: true, force: true });
        await rename(tmp, final);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
    const record: RefRecord = { ref, digest: config.digest, template };
    await writeFile(`${this.refFile(ref)}.tmp`, JSON.stringify(record));
    await rename(`${this.refFile(ref)}.tmp`, this.refFile(ref));
    this.o.log.info({ image: ref, digest: config.digest, ms: Date.now() - started }, 'image pulled');
    this.emit(
      ref,
      'ready',
      `${config.digest} as ${template} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    return config.digest;
  }

  /** The manifest digest and config of the image tagged `tag` in the layout (read locally). */
  private async readConfig(ref: string, tag: string): Promise<ImageConfig> {
    const blob = async (digest: string) =>
      JSON.parse(await readFile(path.join(this.layout, 'blobs', ...digest.split(':')), 'utf8')) as Record<
        string,
        unknown
      >;
    const index = JSON.parse(await readFile(path.join(this.layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
    if (!entry) throw new DomainError('deploy_failed', `pulling ${ref} left no manifest in the image cache`);
    const manifest = (await blob(entry.digest)) as { config: { digest: string } };
    const c = (await blob(manifest.config.digest)) as {
      architecture?: string;
      os?: string;
      config?: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string; User?: string };
    };
    return {
      ref,
      digest: entry.digest,
      architecture: c.architecture ?? 'unknown',
      os: c.os ?? 'unknown',
      entrypoint: c.config?.Entrypoint ?? [],
      cmd: c.config?.Cmd ?? [],
      env: c.config?.Env ?? [],
      workdir: c.config?.WorkingDir || '/',
      user: c.config?.User ?? '',
    };
  }
}

/**
 * What LXC and the driver need in an image's rootfs whatever the image holds:
 * mount points, the init helper, the /aiqso mount point — owned by container root.
 */
async function prepareRootfs(rootfs: string, owner: [number, number]): Promise<void> {
  for (const dir of ['proc', 'sys', 'dev', 'tmp', 'aiqso', 'var', 'var/log', 'var/lib']) {
    const p = path.join(rootfs, dir);
    if (!existsSync(p)) {
      await mkdir(p);
      await chown(p, ...owner);
    }
  }
  await chmod(path.join(rootfs, 'tmp'), 0o1777);
  const helper = path.join(rootfs, INIT_INSIDE);
  await mkdir(path.dirname(helper), { recursive: true });
  await chown(path.dirname(helper), ...owner);
  await copyFile(INIT_HELPER, helper);
  await chown(helper, ...owner);
  await chmod(helper, 0o755);
}

const COMMON_CONF = '/usr/share/lxc/config/common.conf';

export function renderImageTemplateConfig(lxcPath: string, name: string, ready: Ready): string {
  return [
    `lxc.rootfs.path = dir:${path.join(lxcPath, name, 'rootfs')}`,
    `lxc.uts.name = ${name}`,
    ...(existsSync(COMMON_CONF) ? [`lxc.include = ${COMMON_CONF}`] : []),
    ...idmapLines(ready.idmap),
    ...securityLines(ready.security),
    'lxc.mount.auto = proc:mixed sys:ro cgroup:mixed',
    `lxc.init.cmd = ${INIT_INSIDE} sh /aiqso/init.sh`,
    'lxc.net.0.type = empty',
    '',
  ].join('\n');
}

export interface CachedImage {
  image: string;
  digest: string;
  template: string;
  /** Bytes of the unpacked template (its rootfs), as `du` counts them. */
  templateBytes: number;
}

/**
 * What the image cache under `lxcPath` holds: each reference with its digest
 * and template, and the size of the shared OCI layout (`aiqso templates list`).
 * Reads files only; a reference whose template is gone is left out.
 */
export async function listImageCache(
  lxcPath: string,
): Promise<{ images: CachedImage[]; layoutBytes: number }> {
  const root = path.join(lxcPath, '.aiqso-images');
  const files = await readdir(path.join(root, 'refs')).catch(() => [] as string[]);
  const images: CachedImage[] = [];
  for (const file of files.filter((f) => f.endsWith('.json')).sort()) {
    const record = JSON.parse(await readFile(path.join(root, 'refs', file), 'utf8')) as RefRecord;
    if (!existsSync(path.join(lxcPath, record.template, 'config'))) continue;
    images.push({
      image: record.ref,
      digest: record.digest,
      template: record.template,
      templateBytes: await duBytes(path.join(lxcPath, record.template)),
    });
  }
  images.sort((a, b) => a.image.localeCompare(b.image));
  return {
    images,
    layoutBytes: existsSync(path.join(root, 'oci')) ? await duBytes(path.join(root, 'oci')) : 0,
  };
}

async function duBytes(dir: string): Promise<number> {
  const out = await run('du', ['-sb', dir]);
  return Number(out.stdout.split('\t')[0]) || 0;
}
