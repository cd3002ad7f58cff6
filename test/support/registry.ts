import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/db/embedded.ts';
import { missingPart } from './strict.ts';

const run = promisify(execFile);

/**
 * A real OCI registry for one test file: Debian's `docker-registry` on
 * 127.0.0.1 with its own config, storage and port (never the system
 * service), a registries.conf marking only it insecure (plain HTTP), and
 * images built with `umoci` from a static busybox and pushed with `skopeo`.
 */
export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  /** containers-registries.conf(5) naming only this registry, insecure. */
  registriesConf: string;
  /** Build an image from `files` (path inside → content; mode 0755 for scripts) and push it as `name:tag`. */
  push(name: string, tag: string, image: TestImage): Promise<string>;
  /** Requests the registry has served whose path matches `pattern` (its access log). */
  requests(pattern: RegExp): Promise<string[]>;
  stop(): Promise<void>;
}

export interface TestImage {
  files: Record<string, { text: string; mode?: number }>;
  entrypoint: string[];
  cmd: string[];
  env?: string[];
  workdir?: string;
  /** The image's USER (`name`, `uid`, `name:group`, `uid:gid`). */
  user?: string;
  architecture?: string;
}

/** True when the test should skip (strict mode throws instead): the registry, skopeo, umoci or busybox is missing. */
export function registrySkip(): boolean {
  const which = (tool: string) => {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const fix = 'apt-get install docker-registry skopeo umoci busybox-static';
  return (
    missingPart('docker-registry', which('docker-registry'), fix) ||
    missingPart('skopeo', which('skopeo'), fix) ||
    missingPart('umoci', which('umoci'), fix) ||
    missingPart('busybox-static', existsSync('/bin/busybox'), fix)
  );
}

export async function startRegistry(): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  await writeFile(
    path.join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log: { level: info, formatter: text }',
      'storage:',
      `  filesystem: { rootdirectory: ${path.join(dir, 'storage')} }`,
      '  delete: { enabled: true }',
      'http:',
      `  addr: ${host}`,
      '',
    ].join('\n'),
  );
  const registriesConf = path.join(dir, 'registries.conf');
  await writeFile(registriesConf, `[[registry]]\nlocation = "${host}"\ninsecure = true\n`);
  const logFile = path.join(dir, 'registry.log');
  const out = openSync(logFile, 'a');
  const child: ChildProcess = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], {
    stdio: ['ignore', out, out],
  });
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://${host}/v2/`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) break;
    if (i > 100)
      throw new Error(`docker-registry did not answer on ${host}: ${await readFile(logFile, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const skopeo = (args: string[]) => run('skopeo', ['--registries-conf', registriesConf, ...args]);
  return {
    host,
    registriesConf,
    async push(name, tag, image) {
      const work = await mkdtemp(path.join(dir, 'build-'));
      const layout = path.join(work, 'oci');
      await run('umoci', ['init', '--layout', layout]);
      await run('umoci', ['new', '--image', `${layout}:${tag}`]);
      const bundle = path.join(work, 'bundle');
      await run('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
      const rootfs = path.join(bundle, 'rootfs');
      await mkdir(path.join(rootfs, 'bin'), { recursive: true });
      await copyFile('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
      for (const applet of [
        'sh',
        'cat',
        'wc',
        'httpd',
        'mkdir',
        'mv',
        'printf',
        'false',
        'sleep',
        'ls',
        'id',
      ])
        await symlink('busybox', path.join(rootfs, 'bin', applet));
      for (const [file, { text, mode }] of Object.entries(image.files)) {
        const target = path.join(rootfs, file);
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, text);
        await chmod(target, mode ?? 0o644);
      }
      await run('umoci', ['repack', '--image', `${layout}:${tag}`, bundle]);
      const config = [
        'config',
        '--image',
        `${layout}:${tag}`,
        '--os',
        'linux',
        '--architecture',
        image.architecture ?? 'amd64',
        ...image.entrypoint.flatMap((a) => ['--config.entrypoint', a]),
        ...image.cmd.flatMap((a) => ['--config.cmd', a]),
        ...(image.env ?? []).flatMap((e) => ['--config.env', e]),
        ...(image.workdir ? ['--config.workingdir', image.workdir] : []),
        ...(image.user ? ['--config.user', image.user] : []),
      ];
      await run('umoci', config);
      const ref = `${host}/${name}:${tag}`;
      await skopeo(['copy', '--quiet', `oci:${layout}:${tag}`, `docker://${ref}`]);
      await rm(work, { recursive: true, force: true });
      return ref;
    },
    async requests(pattern) {
      const text = await readFile(logFile, 'utf8');
      return [...text.matchAll(/"(GET|HEAD|PUT|POST|PATCH) ([^ "]+) HTTP/g)]
        .map((m) => `${m[1]} ${m[2]}`)
        .filter((r) => pattern.test(r));
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A small web image: busybox httpd on `port` serving /healthz and, at `/`, a
 * CGI answering JSON with its APP_NAME, its pid, whether the image's own
 * files are there (`packages`: /data/seed.txt, which the image ships in what
 * the catalog declares a volume) and how often its init command ran.
 */
export function webImage(port: number, extra: Partial<TestImage> = {}): TestImage {
  return {
    files: {
      '/www/healthz': { text: 'ok\n' },
      '/www/cgi-bin/index.cgi': {
        mode: 0o755,
        text: [
          '#!/bin/sh',
          "printf 'Content-Type: application/json\\r\\n\\r\\n'",
          'runs=$(cat /data/init-runs 2>/dev/null | wc -l)',
          'if [ -e /data/seed.txt ]; then packages=true; else packages=false; fi',
          'echo "{\\"name\\":\\"$APP_NAME\\",\\"pid\\":$$,\\"packages\\":$packages,\\"initRuns\\":$runs,\\"title\\":\\"$APP_TITLE\\",\\"db\\":\\"$DB_NAME\\"}"',
          '',
        ].join('\n'),
      },
      '/data/seed.txt': { text: 'from the image\n' },
      '/root/.profile': { text: '' },
    },
    entrypoint: ['/bin/busybox', 'httpd'],
    cmd: ['-f', '-p', String(port), '-h', '/www'],
    env: ['IMAGE_DEFAULT=from-image'],
    workdir: '/www',
    ...extra,
  };
}
