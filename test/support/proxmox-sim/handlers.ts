import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Cluster, PveFailure, parseSize, truthy, type Backup, type Fault, type Guest } from './cluster.ts';
import { emptyFirewall, FIREWALL_HANDLERS } from './firewall.ts';
import { normalizeFilename, type TemplateVolume } from './workloads.ts';

type Params = Record<string, string>;
export type Handler = (c: Cluster, p: Params, fault: Fault | undefined) => unknown;

const DAY = () =>
  new Date()
    .toISOString()
    .replace(/[-:T]/g, '_')
    .slice(0, 19)
    .replace(/_(\d\d)_(\d\d)_(\d\d)$/, '-$1_$2_$3');

function resources(c: Cluster, type: string | undefined): unknown[] {
  const out: unknown[] = [];
  if (!type || type === 'node') {
    for (const n of c.nodes.values()) {
      out.push({
        id: `node/${n.name}`,
        type: 'node',
        node: n.name,
        status: n.online ? 'online' : 'offline',
        maxmem: n.maxmem,
        mem: n.mem,
        maxcpu: n.maxcpu,
        cpu: n.cpu,
      });
    }
  }
  if (!type || type === 'vm') {
    for (const g of c.guests.values()) {
      const mem = g.status === 'running' ? 24 * 2 ** 20 : 0;
      out.push({
        id: `lxc/${g.vmid}`,
        type: 'lxc',
        vmid: g.vmid,
        node: g.node,
        name: g.config.hostname,
        status: g.status,
        template: g.template ? 1 : 0,
        maxmem: Number(g.config.memory ?? 512) * 2 ** 20,
        mem,
        maxcpu: Number(g.config.cores ?? 1),
        cpu: 0.01,
        ...(g.lock ? { lock: g.lock } : {}),
      });
    }
  }
  if (!type || type === 'storage') {
    for (const n of c.nodes.values()) {
      for (const s of c.storages.values())
        out.push({
          id: `storage/${n.name}/${s.id}`,
          type: 'storage',
          node: n.name,
          storage: s.id,
          status: 'available',
        });
    }
  }
  return out;
}

function statusCurrent(c: Cluster, p: Params) {
  const g = c.guest(p.node!, Number(p.vmid));
  const running = g.status === 'running';
  const uptime = running ? Math.max(1, Math.floor((Date.now() - g.startedAt!) / 1000)) : 0;
  return {
    vmid: g.vmid,
    name: g.config.hostname,
    status: g.status,
    ha: { managed: 0 },
    cpu: running ? 0.02 : 0,
    cpus: Number(g.config.cores ?? 1),
    uptime,
    mem: running ? 24 * 2 ** 20 : 0,
    maxmem: Number(g.config.memory ?? 512) * 2 ** 20,
    maxswap: 512 * 2 ** 20,
    disk: running ? 300 * 2 ** 20 : 0,
    maxdisk: parseSize(/size=(\w+)/.exec(g.config.rootfs ?? '')?.[1] ?? '4G'),
    netin: running ? 1234 : 0,
    netout: running ? 4321 : 0,
    diskread: 0,
    diskwrite: 0,
    ...(g.lock ? { lock: g.lock } : {}),
  };
}

function putConfig(c: Cluster, p: Params) {
  const g = c.guest(p.node!, Number(p.vmid));
  c.checkUnlocked(g);
  // pve-container's update_pct_config: set at creation or restore, never changed after.
  if (p.unprivileged !== undefined)
    throw new PveFailure(500, "unable to modify read-only option: 'unprivileged'");
  for (const [k, v] of Object.entries(p))
    if (!['node', 'vmid', 'delete', 'digest'].includes(k)) g.config[k] = v;
  for (const k of (p.delete ?? '').split(/[,; ]/).filter(Boolean)) delete g.config[k];
  return null;
}

function resize(c: Cluster, p: Params, fault: Fault | undefined) {
  const g = c.guest(p.node!, Number(p.vmid));
  c.checkUnlocked(g);
  const m = /^(\+?)(\d+(?:\.\d+)?[KMGT]?)$/.exec(p.size ?? '');
  if (!m)
    throw new PveFailure(400, 'Parameter verification failed.', {
      size: 'value does not match the regex pattern',
    });
  const current = parseSize(/size=(\w+)/.exec(g.config.rootfs!)?.[1] ?? '4G');
  const wanted = m[1] ? current + parseSize(m[2]!) : parseSize(m[2]!);
  if (wanted < current) throw new PveFailure(500, 'unable to shrink disk size');
  return c.task(p.node!, 'resize', p.vmid!, fault, () => {
    g.config.rootfs = g.config.rootfs!.replace(/size=\w+/, `size=${Math.round(wanted / 2 ** 30)}G`);
  });
}

function power(action: 'start' | 'shutdown' | 'stop'): Handler {
  return (c, p, fault) => {
    const g = c.guest(p.node!, Number(p.vmid));
    if (action !== 'stop') c.checkUnlocked(g);
    if (action === 'start' && g.status === 'running')
      throw new PveFailure(500, `CT ${g.vmid} already running`);
    return c.task(p.node!, `vz${action}`, p.vmid!, fault, async () => {
      if (action === 'start') {
        if (g.image) await runGuest(c, g);
        g.status = 'running';
        g.startedAt = Date.now();
        return;
      }
      if (action === 'shutdown' && g.stubborn && !truthy(p.forceStop))
        throw new Error("command 'lxc-stop' failed: got timeout");
      if (g.image && c.workloads) {
        const ended =
          action === 'stop'
            ? await c.workloads.stop(g.vmid, 'SIGKILL')
            : await c.workloads.stop(g.vmid, 'SIGTERM', Number(p.timeout ?? 60) * 1000);
        if (!ended && !truthy(p.forceStop)) throw new Error("command 'lxc-stop' failed: got timeout");
        if (!ended) await c.workloads.stop(g.vmid, 'SIGKILL');
      }
      g.status = 'stopped';
    });
  };
}

/** A guest made from an OCI image runs its entrypoint; when that ends, the container stops. */
async function runGuest(c: Cluster, g: Guest): Promise<void> {
  if (!c.workloads) throw new Error('this simulated node cannot run containers');
  await c.workloads.start(g.vmid, g.image!, g.config, () => {
    if (c.guests.get(g.vmid) === g) g.status = 'stopped';
  });
}

function templateStorage(c: Cluster, node: string, storage: string): { shared: boolean } {
  const s = c.storages.get(storage);
  if (!s) throw new PveFailure(500, `storage '${storage}' does not exist`);
  if (!c.workloads) throw new PveFailure(501, `the simulated node '${node}' keeps no templates`);
  return s;
}

/** The template volumes node `node` sees on `storage` (its own, or the shared storage's). */
function templatesOn(c: Cluster, node: string, storage: string): TemplateVolume[] {
  return c.templates.filter((t) => t.storage === storage && (t.node === undefined || t.node === node));
}

function addTemplate(c: Cluster, vol: TemplateVolume): void {
  const i = c.templates.findIndex((t) => t.volid === vol.volid && t.node === vol.node);
  if (i >= 0) c.templates.splice(i, 1);
  c.templates.push(vol);
}

/** POST /nodes/{node}/storage/{storage}/oci-registry-pull: a real pull, by skopeo, as a task. */
function ociPull(c: Cluster, p: Params, fault: Fault | undefined) {
  const node = p.node!;
  const storage = p.storage!;
  const shared = templateStorage(c, node, storage).shared;
  const w = c.workloads!;
  const fallback = `${p.reference!.split('/').pop()!.replace(':', '_')}.tar`;
  let filename = normalizeFilename(p.filename ?? fallback);
  if (!filename.endsWith('.tar')) filename += '.tar';
  const file = path.join(w.storageDir(storage, shared ? undefined : node), filename);
  return c.task(node, 'ocipull', storage, fault, async () => {
    const size = await w.pull(p.reference!, file);
    addTemplate(c, {
      volid: `${storage}:vztmpl/${filename}`,
      storage,
      ...(shared ? {} : { node }),
      file,
      size,
      ctime: Math.floor(Date.now() / 1000),
    });
  });
}

/** POST /nodes/{node}/storage/{storage}/upload: the REST handler stored the file at `tmpfilename`. */
function upload(c: Cluster, p: Params, fault: Fault | undefined) {
  const node = p.node!;
  const storage = p.storage!;
  const tmp = p.tmpfilename;
  if (!tmp) throw new PveFailure(400, 'Parameter verification failed.', { filename: 'no file uploaded' });
  const shared = templateStorage(c, node, storage).shared;
  if (p.content !== 'vztmpl') throw new PveFailure(501, `the simulator stores only vztmpl uploads`);
  const filename = normalizeFilename(p.filename!);
  if (!/\.tar(\.(gz|xz|zst))?$/.test(filename))
    throw new PveFailure(500, `wrong file extension for a container template: ${filename}`);
  const w = c.workloads!;
  const file = path.join(w.storageDir(storage, shared ? undefined : node), filename);
  return c.task(node, 'imgcopy', storage, fault, async () => {
    try {
      await w.storeUpload(tmp, file);
      addTemplate(c, {
        volid: `${storage}:vztmpl/${filename}`,
        storage,
        ...(shared ? {} : { node }),
        file,
        size: await w.sizeOf(file),
        ctime: Math.floor(Date.now() / 1000),
      });
    } finally {
      await rm(tmp, { force: true });
    }
  });
}

/**
 * POST /nodes/{node}/lxc from a template (not a restore): an OCI archive's
 * entrypoint (with its command) and environment become the container's
 * `entrypoint` and `env` unless given, as Proxmox VE 9.1 does.
 */
function create(c: Cluster, p: Params, fault: Fault | undefined) {
  const node = p.node!;
  const vmid = Number(p.vmid);
  const existing = c.guests.get(vmid);
  if (existing) throw new PveFailure(500, `CT ${vmid} already exists on node '${existing.node}'`);
  const [storage, volume] = p.ostemplate!.split(':');
  const vol = templatesOn(c, node, storage ?? '').find((t) => t.volid === p.ostemplate);
  if (!vol || !volume?.startsWith('vztmpl/'))
    throw new PveFailure(500, `volume '${p.ostemplate}' does not exist`);
  const rootfs = /^([^:,]+):(\d+)$/.exec(p.rootfs ?? '');
  if (!rootfs) throw new PveFailure(500, `the simulator allocates rootfs only as STORAGE:SIZE_IN_GiB`);
  if (!c.storages.has(rootfs[1]!)) throw new PveFailure(500, `storage '${rootfs[1]}' does not exist`);
  const config: Record<string, string> = {
    arch: p.arch ?? 'amd64',
    ostype: p.ostype ?? 'unmanaged',
    hostname: p.hostname ?? `CT${vmid}`,
    cores: p.cores ?? '1',
    memory: p.memory ?? '512',
    rootfs: `${rootfs[1]}:vm-${vmid}-disk-0,size=${rootfs[2]}G`,
    // Created containers are unprivileged unless said otherwise.
    ...(p.unprivileged === undefined || truthy(p.unprivileged) ? { unprivileged: '1' } : {}),
  };
  for (const k of Object.keys(p))
    if (/^net\d+$/.test(k) || ['description', 'tags', 'entrypoint', 'env'].includes(k)) config[k] = p[k]!;
  const guest: Guest = {
    vmid,
    node,
    status: 'stopped',
    template: false,
    snapshots: [],
    lock: 'create',
    firewall: emptyFirewall(),
    config,
    image: vol.file,
  };
  c.guests.set(vmid, guest);
  // A failed creation removes what it made, an injected failure included.
  return c.task(node, 'vzcreate', String(vmid), undefined, async () => {
    try {
      if (fault) throw new Error(fault.message ?? 'unable to create CT: injected failure');
      const image = await c.workloads!.configOf(vol.file);
      if (image.architecture !== config.arch)
        throw new Error(`OCI image architecture '${image.architecture}' does not match '${config.arch}'`);
      const argv = [...image.entrypoint, ...image.cmd];
      if (config.entrypoint === undefined && argv.length)
        config.entrypoint = argv.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ');
      if (config.env === undefined && image.env.length) config.env = image.env.join('\0');
      delete guest.lock;
    } catch (err) {
      c.guests.delete(vmid);
      throw err;
    }
  });
}

function destroy(c: Cluster, p: Params, fault: Fault | undefined) {
  const g = c.guest(p.node!, Number(p.vmid));
  c.checkUnlocked(g);
  if (g.status === 'running' && !truthy(p.force))
    throw new PveFailure(500, `CT ${g.vmid} is running - destroy failed`);
  return c.task(p.node!, 'vzdestroy', p.vmid!, fault, async () => {
    c.guests.delete(g.vmid);
    await c.workloads?.forget(g.vmid);
  });
}

function vzdump(c: Cluster, p: Params, fault: Fault | undefined) {
  const vmid = Number(p.vmid);
  const g = c.guest(p.node!, vmid);
  const storage = p.storage ?? 'local';
  if (!c.storages.has(storage)) throw new PveFailure(500, `storage '${storage}' does not exist`);
  return c.task(p.node!, 'vzdump', p.vmid!, fault, () => {
    const ext = p.compress === 'zstd' ? 'tar.zst' : p.compress === 'gzip' ? 'tar.gz' : 'tar';
    c.backups.push({
      volid: `${storage}:backup/vzdump-lxc-${vmid}-${DAY()}.${ext}`,
      storage,
      node: p.node!,
      vmid,
      size: 48 * 2 ** 20 + c.backups.length,
      ctime: Math.floor(Date.now() / 1000),
      config: { ...g.config },
      firewall: structuredClone(g.firewall),
      ...(g.image ? { image: g.image } : {}),
    });
  });
}

/** A backup on a storage that is not shared is on the disk of the node that wrote it only. */
const visibleOn = (c: Cluster, b: Backup, node: string) =>
  b.node === node || !!c.storages.get(b.storage)?.shared;

/**
 * DELETE /nodes/{node}/storage/{storage}/content/{volume}: pve-storage's real_volume_id (a volume
 * without `storage:` is taken on the path's storage), then an `imgdel` task; a protected backup or
 * one that is not there fails the request.
 */
function deleteVolume(c: Cluster, p: Params, fault: Fault | undefined) {
  const volid = p.volume!.includes(':') ? p.volume! : `${p.storage}:${p.volume}`;
  if (!volid.startsWith(`${p.storage}:`))
    throw new PveFailure(500, `volume ${volid} is not on storage '${p.storage}'`);
  const i = c.backups.findIndex((b) => b.volid === volid && visibleOn(c, b, p.node!));
  if (i < 0) throw new PveFailure(500, `volume '${volid}' does not exist`);
  return c.task(p.node!, 'imgdel', volid, fault, () => {
    const at = c.backups.findIndex((b) => b.volid === volid);
    if (at >= 0) c.backups.splice(at, 1);
  });
}

function restore(c: Cluster, p: Params, fault: Fault | undefined) {
  const node = p.node!;
  const vmid = Number(p.vmid);
  const existing = c.guests.get(vmid);
  if (existing && !truthy(p.force))
    throw new PveFailure(500, `CT ${vmid} already exists on node '${existing.node}'`);
  if (existing?.status === 'running')
    throw new PveFailure(500, `unable to restore CT ${vmid} - CT is running`);
  if (!truthy(p.restore)) return create(c, p, fault);
  const backup = c.backups.find((b) => b.volid === p.ostemplate && visibleOn(c, b, node));
  if (!backup) throw new PveFailure(500, `volume '${p.ostemplate}' does not exist`);
  c.guests.set(vmid, {
    vmid,
    node,
    status: 'stopped',
    template: false,
    snapshots: [],
    lock: 'create',
    // vzdump archives the firewall config with the container; a restore brings it back.
    firewall: structuredClone(backup.firewall ?? emptyFirewall()),
    config: { ...backup.config },
    ...(backup.image ? { image: backup.image } : {}),
  });
  return c.task(node, 'vzrestore', String(vmid), fault, () => {
    const g = c.guests.get(vmid)!;
    delete g.lock;
    for (const k of ['hostname', 'cores', 'memory']) if (p[k]) g.config[k] = p[k];
    // Restoring as unprivileged shifts the archive's ids; without it, the backup's setting stays.
    if (p.unprivileged !== undefined) {
      if (truthy(p.unprivileged)) g.config.unprivileged = '1';
      else delete g.config.unprivileged;
    }
  });
}

export const HANDLERS: Record<string, Handler> = {
  ...FIREWALL_HANDLERS,
  'GET /version': () => ({ version: '9.1.1', release: '9.1', repoid: '0c7e6f5a' }),
  'GET /cluster/resources': (c, p) => resources(c, p.type),
  'GET /nodes/{node}/tasks/{upid}/status': (c, p) => {
    const t = c.tasks.get(p.upid!);
    if (!t || t.node !== p.node) throw new PveFailure(500, `no such task`);
    return {
      upid: t.upid,
      node: t.node,
      pid: 1,
      pstart: 1,
      starttime: t.starttime,
      type: t.type,
      id: t.id,
      user: 'aiqso@pve!test',
      status: t.status,
      ...(t.exitstatus ? { exitstatus: t.exitstatus } : {}),
    };
  },
  'GET /nodes/{node}/tasks/{upid}/log': (c, p) =>
    (c.tasks.get(p.upid!)?.log ?? []).map((t, i) => ({ n: i + 1, t })),
  'POST /nodes/{node}/lxc': (c, p, f) => restore(c, p, f),
  'POST /nodes/{node}/lxc/{vmid}/clone': (c, p, f) => c.clone(p.node!, Number(p.vmid), p, f),
  'GET /nodes/{node}/lxc/{vmid}/config': (c, p) => {
    const g = c.guest(p.node!, Number(p.vmid));
    const out: Record<string, unknown> = { ...g.config, digest: '0'.repeat(40) };
    for (const k of ['cores', 'memory', 'swap', 'unprivileged'])
      if (out[k] !== undefined) out[k] = Number(out[k]);
    if (out.template !== undefined) out.template = 1;
    if (g.lock) out.lock = g.lock;
    return out;
  },
  'PUT /nodes/{node}/lxc/{vmid}/config': (c, p) => putConfig(c, p),
  'PUT /nodes/{node}/lxc/{vmid}/resize': resize,
  'GET /nodes/{node}/lxc/{vmid}/status/current': (c, p) => statusCurrent(c, p),
  'POST /nodes/{node}/lxc/{vmid}/status/start': power('start'),
  'POST /nodes/{node}/lxc/{vmid}/status/shutdown': power('shutdown'),
  'POST /nodes/{node}/lxc/{vmid}/status/stop': power('stop'),
  'DELETE /nodes/{node}/lxc/{vmid}': destroy,
  'POST /nodes/{node}/lxc/{vmid}/snapshot': (c, p, f) => {
    const g = c.guest(p.node!, Number(p.vmid));
    c.checkUnlocked(g);
    if (g.snapshots.includes(p.snapname!))
      throw new PveFailure(500, `snapshot name '${p.snapname}' already used`);
    return c.task(p.node!, 'vzsnapshot', p.vmid!, f, () => void g.snapshots.push(p.snapname!));
  },
  'POST /nodes/{node}/vzdump': vzdump,
  'DELETE /nodes/{node}/storage/{storage}/content/{volume}': deleteVolume,
  'GET /nodes/{node}/storage/{storage}/content': (c, p) => [
    ...c.backups
      .filter(
        (b) =>
          b.storage === p.storage &&
          visibleOn(c, b, p.node!) &&
          (!p.vmid || b.vmid === Number(p.vmid)) &&
          (!p.content || p.content === 'backup'),
      )
      .map((b) => ({
        volid: b.volid,
        format: b.volid.split('.').slice(1).join('.'),
        size: b.size,
        ctime: b.ctime,
        vmid: b.vmid,
        content: 'backup',
      })),
    ...(p.vmid || (p.content && p.content !== 'vztmpl') ? [] : templatesOn(c, p.node!, p.storage!)).map(
      (t) => ({ volid: t.volid, format: 'tar', size: t.size, ctime: t.ctime, content: 'vztmpl' }),
    ),
  ],
  'POST /nodes/{node}/storage/{storage}/oci-registry-pull': ociPull,
  'POST /nodes/{node}/storage/{storage}/upload': upload,
};
