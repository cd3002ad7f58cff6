import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, realpathSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DomainError } from '../../core/errors.ts';
import { runOk } from '../shared/run.ts';
import { SNAPSHOT_DIR } from '../shared/app-snapshot.ts';

/**
 * A platform app (the tenant dashboard, the Node.js services in apps/) as an
 * OCI image archive the cluster can create containers from: one layer with
 * this host's Node.js and the libraries it links (as `ldd` lists them), the
 * packages the app imports from the platform's node_modules (with their
 * dependencies) at /node_modules, and the app's directory at /opt/aiqso/app.
 * The archive is built once per content digest in `workDir` and uploaded to
 * the template storage as `aiqso-app-<name>-<digest>.tar`
 * (`POST /nodes/{node}/storage/{storage}/upload`, content `vztmpl`).
 */

/** Bump when the archive's layout changes: a new version gets a new name. */
const FORMAT = 1;
export const APP_ROOT = '/opt/aiqso/app';

export interface AppArchive {
  /** File name on the template storage. */
  filename: string;
  /** The archive on this host. */
  file: string;
  /** The container's init command (`entrypoint`). */
  entrypoint: string;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Every file under `dir` (relative paths, sorted), but its packages and the start-up snapshots the
 * process and lxc drivers keep there (built for this host's node, of no use in a guest).
 */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((f) => !f.split(path.sep).some((part) => part === 'node_modules' || part === SNAPSHOT_DIR))
    .sort();
}

/** Bare package names an app's modules import (`pg`, `@scope/name`), not node: builtins or relative paths. */
export function importedPackages(source: string): string[] {
  const names = new Set<string>();
  for (const m of source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
    const spec = m[1]!;
    if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) continue;
    const parts = spec.split('/');
    names.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
  }
  return [...names].sort();
}

/** `names` and everything they depend on, as directories of `modules`. */
async function packageClosure(modules: string, names: string[]): Promise<string[]> {
  const seen = new Set<string>();
  const queue = [...names];
  while (queue.length) {
    const name = queue.shift()!;
    if (seen.has(name)) continue;
    const manifest = path.join(modules, name, 'package.json');
    // Node's own builtins imported without `node:` (fs, path…) are no packages.
    if (!existsSync(manifest)) continue;
    seen.add(name);
    const pkg = JSON.parse(await readFile(manifest, 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    queue.push(...Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies }));
  }
  return [...seen].sort();
}

/** Node and the shared libraries it links, by their paths on this host. */
async function runtimeFiles(): Promise<string[]> {
  const node = process.execPath;
  const out = await runOk('ldd', [node]);
  const libs = [...out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1]!);
  return [node, ...libs];
}

function nearestNodeModules(dir: string): string | undefined {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const candidate = path.join(at, 'node_modules');
    if (existsSync(candidate)) return realpathSync(candidate);
    if (path.dirname(at) === at) return undefined;
  }
}

/**
 * The archive for the app in `dir` run with `entry`, built unless `workDir`
 * has it. Safe to race: each build writes beside and renames into place.
 */
export async function appArchive(workDir: string, dir: string, entry: string): Promise<AppArchive> {
  if (!existsSync(path.join(dir, entry)))
    throw new DomainError('deploy_failed', `app ${dir} has no ${entry}`);
  const files = await filesUnder(dir);
  const modules = nearestNodeModules(dir);
  const sources = await Promise.all(
    files.filter((f) => /\.(m?js|cjs)$/.test(f)).map((f) => readFile(path.join(dir, f), 'utf8')),
  );
  const wanted = [...new Set(sources.flatMap(importedPackages))];
  const packages = modules ? await packageClosure(modules, wanted) : [];
  const runtime = await runtimeFiles();
  const hash = createHash('sha256').update(`${FORMAT}\0${process.version}\0${runtime.join('\0')}\0${entry}`);
  for (const f of files) hash.update(`\0${f}\0`).update(await readFile(path.join(dir, f)));
  for (const p of packages) {
    const pkg = JSON.parse(await readFile(path.join(modules!, p, 'package.json'), 'utf8')) as {
      version?: string;
    };
    hash.update(`\0${p}@${pkg.version ?? ''}`);
  }
  const name = path
    .basename(dir)
    .replace(/[^a-z0-9-]/gi, '-')
    .toLowerCase();
  const filename = `aiqso-app-${name}-${hash.digest('hex').slice(0, 16)}.tar`;
  const file = path.join(workDir, filename);
  const entrypoint = `${process.execPath} ${APP_ROOT}/${entry}`;
  if (existsSync(file)) return { filename, file, entrypoint };

  await mkdir(workDir, { recursive: true });
  const tmp = path.join(workDir, `.build-${randomBytes(6).toString('hex')}`);
  try {
    const stage = path.join(tmp, 'rootfs');
    for (const f of runtime) {
      const target = path.join(stage, f);
      await mkdir(path.dirname(target), { recursive: true });
      await copyFile(realpathSync(f), target);
      await chmod(target, 0o755);
    }
    for (const d of ['tmp', 'etc', 'root']) await mkdir(path.join(stage, d), { recursive: true });
    await chmod(path.join(stage, 'tmp'), 0o1777);
    await writeFile(path.join(stage, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(path.join(stage, 'etc', 'group'), 'root:x:0:\n');
    await writeFile(path.join(stage, 'etc', 'hosts'), '127.0.0.1 localhost\n');
    const app = path.join(stage, APP_ROOT);
    await mkdir(app, { recursive: true });
    for (const f of files) {
      await mkdir(path.dirname(path.join(app, f)), { recursive: true });
      await copyFile(path.join(dir, f), path.join(app, f));
    }
    for (const p of packages)
      await cp(path.join(modules!, p), path.join(stage, 'node_modules', p), {
        recursive: true,
        dereference: true,
      });

    const layout = path.join(tmp, 'oci');
    const blobs = path.join(layout, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const layer = path.join(tmp, 'layer.tar');
    await runOk('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-C',
      stage,
      '-cf',
      layer,
      '.',
    ]);
    const layerDigest = await sha256File(layer);
    const layerSize = (await stat(layer)).size;
    await rename(layer, path.join(blobs, layerDigest));
    const blob = async (mediaType: string, value: unknown) => {
      const text = JSON.stringify(value);
      const digest = createHash('sha256').update(text).digest('hex');
      await writeFile(path.join(blobs, digest), text);
      return { mediaType, digest: `sha256:${digest}`, size: Buffer.byteLength(text) };
    };
    const config = await blob('application/vnd.oci.image.config.v1+json', {
      architecture:
        ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch,
      os: 'linux',
      config: {
        Entrypoint: [process.execPath, `${APP_ROOT}/${entry}`],
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production'],
        WorkingDir: APP_ROOT,
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
    });
    const manifest = await blob('application/vnd.oci.image.manifest.v1+json', {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: `sha256:${layerDigest}`,
          size: layerSize,
        },
      ],
    });
    await writeFile(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      path.join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
      }),
    );
    const archive = path.join(tmp, filename);
    await runOk('tar', ['-C', layout, '-cf', archive, 'oci-layout', 'index.json', 'blobs']);
    await rename(archive, file);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { filename, file, entrypoint };
}
