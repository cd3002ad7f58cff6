import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * What a simulated node does with OCI images: a pull is a real `skopeo copy`
 * from the registry into an OCI archive on the template storage (so a
 * missing image or a refusing registry fails the task with the registry's
 * own reason), an uploaded archive is kept as it came, and a container
 * created from either really runs: its image unpacked once per template
 * (umoci), its entrypoint started in a network namespace of its own whose
 * `eth0` has the address of the container's `net0` on the simulated bridge,
 * chrooted into the image's files. That process stands in for the container:
 * it answers at the address the driver reports, and when it exits the
 * container is stopped, as with an LXC container whose init ended.
 * Each guest has a root filesystem of its own, as a Proxmox container has:
 * an overlay of the unpacked image (read-only, shared) and the guest's own
 * upper directory, mounted while it runs and kept until it is destroyed, so
 * what it writes (an init command's marker) outlives a restart and is not
 * seen by another guest of the same image. (Backups carry no disk: a guest
 * restored after its destruction starts from the image again.)
 */

export interface TemplateVolume {
  volid: string;
  storage: string;
  /** The node holding it; undefined on a shared storage. */
  node?: string;
  file: string;
  size: number;
  ctime: number;
}

/** The parts of an OCI image config that creating a container reads. */
export interface OciRunConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  architecture: string;
}

/** pve-storage's normalisation of an uploaded or pulled file name. */
export function normalizeFilename(name: string): string {
  return name.replace(/[^-a-zA-Z0-9_.]/g, '_');
}

/**
 * `lxc.init.cmd` splitting, as liblxc's lxc_string_split_quoted does: words
 * separated by blanks, with single or double quotes around a word that holds blanks.
 */
export function splitInitCmd(cmd: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (const m of cmd.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

function tool(name: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} is not installed`);
}

/** The ref name an OCI archive's index gives its image (umoci and skopeo need one). */
async function archiveLayout(dir: string): Promise<{ tag: string; config: OciRunConfig }> {
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as {
    manifests?: { digest: string; annotations?: Record<string, string> }[];
  };
  const first = index.manifests?.[0];
  const tag = first?.annotations?.['org.opencontainers.image.ref.name'];
  if (!first || !tag) throw new Error('not an OCI image archive (index.json names no image)');
  const blob = (digest: string) => path.join(dir, 'blobs', ...digest.split(':'));
  const manifest = JSON.parse(await readFile(blob(first.digest), 'utf8')) as { config: { digest: string } };
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as {
    architecture?: string;
    config?: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[] };
  };
  return {
    tag,
    config: {
      entrypoint: config.config?.Entrypoint ?? [],
      cmd: config.config?.Cmd ?? [],
      env: config.config?.Env ?? [],
      architecture: config.architecture ?? 'amd64',
    },
  };
}

interface Running {
  child: ChildProcess;
  netns: string;
  exited: Promise<void>;
}

export class Workloads {
  private readonly unpacked = new Map<string, Promise<{ rootfs: string; config: OciRunConfig }>>();
  private readonly running = new Map<number, Running>();

  constructor(
    /** Where template storages, unpacked images and logs live. */
    readonly dir: string,
    /** containers-registries.conf for skopeo (a local registry marked insecure). */
    readonly registriesConf: string | undefined,
    /** The bridge guests' `net0` may join, and its subnet prefix length. */
    readonly network: { bridge: string; prefix: number } | undefined,
  ) {}

  storageDir(storage: string, node: string | undefined): string {
    return path.join(this.dir, 'storage', node ?? 'shared', storage, 'template', 'cache');
  }

  /** `skopeo copy docker://<reference> oci-archive:<file>:latest`; its stderr is the task's error. */
  async pull(reference: string, file: string): Promise<number> {
    await mkdir(path.dirname(file), { recursive: true });
    const part = `${file}.part`;
    try {
      await run(tool('skopeo'), [
        ...(this.registriesConf ? ['--registries-conf', this.registriesConf] : []),
        'copy',
        '--quiet',
        `docker://${reference}`,
        `oci-archive:${part}:latest`,
      ]);
    } catch (err) {
      await rm(part, { force: true });
      const stderr = String((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
      throw new Error(`failed to pull OCI image '${reference}': ${stderr.split('\n').pop()}`);
    }
    await run('mv', [part, file]);
    this.unpacked.delete(file);
    return (await stat(file)).size;
  }

  /** Move an uploaded file from the REST handler's temporary file onto the storage. */
  async storeUpload(tmp: string, file: string): Promise<void> {
    await mkdir(path.dirname(file), { recursive: true });
    await copyFile(tmp, file);
    this.unpacked.delete(file);
  }

  async sizeOf(file: string): Promise<number> {
    return (await stat(file)).size;
  }

  /** The image inside an OCI archive, unpacked once: its rootfs and its config. */
  image(file: string): Promise<{ rootfs: string; config: OciRunConfig }> {
    let p = this.unpacked.get(file);
    if (!p) {
      p = this.unpack(file);
      this.unpacked.set(file, p);
      p.catch(() => this.unpacked.delete(file));
    }
    return p;
  }

  private async unpack(file: string): Promise<{ rootfs: string; config: OciRunConfig }> {
    const key = createHash('sha256').update(file).digest('hex').slice(0, 16);
    const base = path.join(this.dir, 'images', key);
    await rm(base, { recursive: true, force: true });
    const layout = path.join(base, 'oci');
    await mkdir(layout, { recursive: true });
    await run('tar', ['-xf', file, '-C', layout]);
    const { tag, config } = await archiveLayout(layout);
    await run(tool('umoci'), ['unpack', '--image', `${layout}:${tag}`, path.join(base, 'bundle')]);
    return { rootfs: path.join(base, 'bundle', 'rootfs'), config };
  }

  /** The image config of an archive (what creating a container from it reads). */
  async configOf(file: string): Promise<OciRunConfig> {
    return (await this.image(file)).config;
  }

  isRunning(vmid: number): boolean {
    return this.running.has(vmid);
  }

  /**
   * Start the guest's entrypoint in its own network namespace with `net0`'s
   * address; `onExit` runs when it ends by itself.
   */
  async start(
    vmid: number,
    template: string,
    config: Record<string, string>,
    onExit: () => void,
  ): Promise<void> {
    if (!this.network) throw new Error('the simulated node has no bridge to run containers on');
    const net: Record<string, string> = Object.fromEntries(
      (config.net0 ?? '').split(',').map((kv) => [kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]),
    );
    if (net.bridge !== this.network.bridge) throw new Error(`bridge '${net.bridge}' does not exist`);
    const ip = net.ip;
    if (!ip || !net.gw) throw new Error('net0 has no static ip and gw');
    const argv = splitInitCmd(config.entrypoint ?? '/sbin/init');
    const image = (await this.image(template)).rootfs;
    const ipTool = tool('ip');
    const netns = `aiqsosim${vmid}`;
    const host = `pvh${vmid}`;
    await this.teardown(vmid, netns);
    const rootfs = await this.mountGuest(vmid, image);
    const ipc = (...args: string[]) => run(ipTool, args);
    await ipc('netns', 'add', netns);
    // The guest's interface has net0's hwaddr, as on Proxmox: the same at every start, so the host's
    // neighbour entry for its address (kept for up to a minute) still leads to it after a restart.
    const mac = net.hwaddr ? ['address', net.hwaddr] : [];
    await ipc('link', 'add', host, 'type', 'veth', 'peer', 'name', `pvc${vmid}`, ...mac);
    await ipc('link', 'set', `pvc${vmid}`, 'netns', netns);
    await ipc('link', 'set', host, 'master', this.network.bridge, 'up');
    await ipc('-n', netns, 'link', 'set', `pvc${vmid}`, 'name', 'eth0');
    await ipc('-n', netns, 'addr', 'add', ip, 'dev', 'eth0');
    await ipc('-n', netns, 'link', 'set', 'eth0', 'up');
    await ipc('-n', netns, 'link', 'set', 'lo', 'up');
    await ipc('-n', netns, 'route', 'add', 'default', 'via', net.gw);
    const env = Object.fromEntries(
      (config.env ?? '')
        .split('\0')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    const log = path.join(this.dir, 'logs', `${vmid}.log`);
    await mkdir(path.dirname(log), { recursive: true });
    const out = openSync(log, 'a');
    const child = spawn(ipTool, ['netns', 'exec', netns, tool('chroot'), rootfs, ...argv], {
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['ignore', out, out],
      detached: true,
    });
    closeSync(out);
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        const mine = this.running.get(vmid)?.child === child;
        if (mine) {
          this.running.delete(vmid);
          void this.teardown(vmid, netns).finally(onExit);
        }
        resolve();
      }),
    );
    this.running.set(vmid, { child, netns, exited });
  }

  /** End the guest's process: SIGTERM (shutdown) or SIGKILL (stop), then its namespace. */
  async stop(vmid: number, signal: NodeJS.Signals, timeoutMs = 10_000): Promise<boolean> {
    const r = this.running.get(vmid);
    if (!r) return true;
    this.running.delete(vmid);
    const kill = (s: NodeJS.Signals) => {
      try {
        process.kill(-r.child.pid!, s);
      } catch {
        // already gone
      }
    };
    kill(signal);
    const ended = await Promise.race([
      r.exited.then(() => true),
      new Promise<boolean>((res) => setTimeout(() => res(false), timeoutMs)),
    ]);
    if (!ended) {
      if (signal !== 'SIGKILL') {
        this.running.set(vmid, r);
        return false;
      }
      await r.exited;
    }
    await this.teardown(vmid, r.netns);
    return true;
  }

  async lastOutput(vmid: number): Promise<string> {
    return readFile(path.join(this.dir, 'logs', `${vmid}.log`), 'utf8').catch(() => '');
  }

  private guestDir(vmid: number): string {
    return path.join(this.dir, 'guests', String(vmid));
  }

  /** The guest's root: the image under its own upper directory (overlayfs), mounted unless it is. */
  private async mountGuest(vmid: number, image: string): Promise<string> {
    const dir = this.guestDir(vmid);
    const root = path.join(dir, 'root');
    for (const d of ['upper', 'work', 'root']) await mkdir(path.join(dir, d), { recursive: true });
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    if (!mounts.split('\n').some((line) => line.split(' ')[4] === root)) {
      await run(tool('mount'), [
        '-t',
        'overlay',
        'overlay',
        '-o',
        `lowerdir=${image},upperdir=${path.join(dir, 'upper')},workdir=${path.join(dir, 'work')}`,
        root,
      ]);
    }
    // The device nodes a container's /dev has (the image ships none).
    await mkdir(path.join(root, 'dev'), { recursive: true });
    for (const [name, minor] of [
      ['null', 3],
      ['zero', 5],
      ['random', 8],
      ['urandom', 9],
    ] as const) {
      if (!existsSync(path.join(root, 'dev', name)))
        await run(tool('mknod'), ['-m', '666', path.join(root, 'dev', name), 'c', '1', String(minor)]);
    }
    return root;
  }

  /** A file the guest wrote itself (in its upper directory), or undefined. */
  async guestFile(vmid: number, file: string): Promise<string | undefined> {
    return readFile(path.join(this.guestDir(vmid), 'upper', file), 'utf8').catch(() => undefined);
  }

  /** A destroyed guest's files go with it. */
  async forget(vmid: number): Promise<void> {
    await this.stop(vmid, 'SIGKILL');
    await run(tool('umount'), [path.join(this.guestDir(vmid), 'root')]).catch(() => undefined);
    await rm(this.guestDir(vmid), { recursive: true, force: true });
  }

  private async teardown(vmid: number, netns: string): Promise<void> {
    await run(tool('umount'), [path.join(this.guestDir(vmid), 'root')]).catch(() => undefined);
    const ipTool = tool('ip');
    await run(ipTool, ['netns', 'del', netns]).catch(() => undefined);
    await run(ipTool, ['link', 'del', `pvh${vmid}`]).catch(() => undefined);
  }

  async close(): Promise<void> {
    for (const vmid of [...this.running.keys()]) await this.stop(vmid, 'SIGKILL');
  }
}
