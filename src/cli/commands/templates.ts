import { loadCatalog } from '../../catalog/load.ts';
import { createComputeDriver } from '../../compute/index.ts';
import { LxcDriver } from '../../compute/lxc/driver.ts';
import { listImageCache } from '../../compute/lxc/images.ts';
import type { PullProgress } from '../../core/compute.ts';
import { DomainError } from '../../core/errors.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

/**
 * `aiqso templates list`: the lxc driver's image cache under AIQSO_LXC_PATH —
 * each image reference with its digest, its unpacked template and its size,
 * and the size of the shared OCI layout the pulls land in. Reads files only.
 */
export async function templatesList(ctx: CommandContext, options: { json?: boolean }): Promise<void> {
  const cache = await listImageCache(ctx.config.lxc.path);
  if (options.json) return printJson(cache);
  printTable(
    cache.images.map((i) => ({ ...i, size: megabytes(i.templateBytes) })),
    ['image', 'digest', 'template', 'size'],
  );
  process.stdout.write(
    `OCI layout (${ctx.config.lxc.path}/.aiqso-images/oci): ${megabytes(cache.layoutBytes)}\n`,
  );
}

const megabytes = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;

/** What `aiqso templates build` made ready. */
export interface BuiltTemplate {
  service: string;
  image: string;
  driver: 'lxc' | 'proxmox';
  /** lxc: the manifest's digest; proxmox: the archive's volume id. */
  digest: string;
  /** lxc: the template container; proxmox: the archive on the template storage. */
  template: string;
  /** Bytes of the unpacked template (lxc only). */
  templateBytes?: number;
  /** False when the image was in the cache already (nothing was pulled). */
  pulled: boolean;
  seconds: number;
}

/**
 * `aiqso templates build <service>`: the catalog image of `service` pulled and
 * unpacked into the driver's cache as its first subscription would do it (the
 * same code, sharing a pull under way in any process on this database), its
 * progress on stderr, what is ready on stdout. Exit 3 for a service not in
 * the catalog, 2 for a service that is not an image or a driver without
 * templates, 1 when the pull fails (with the registry's reason).
 */
export async function templatesBuild(
  ctx: CommandContext,
  key: string,
  options: { json?: boolean },
): Promise<void> {
  const catalog = loadCatalog(ctx.config.catalogDir);
  const service = catalog.find((t) => t.key === key);
  if (!service) {
    throw new DomainError(
      'not_found',
      `no service "${key}" in the catalog (it has: ${catalog.map((t) => t.key).join(', ')})`,
    );
  }
  if (service.kind !== 'image') {
    throw new DomainError(
      'bad_request',
      `${key} is an ${service.kind} service, not an image: only image services have templates to build`,
    );
  }
  const driver = ctx.config.driver;
  if (driver === 'process') {
    throw new DomainError(
      'bad_request',
      'the process driver runs only app services and keeps no templates: templates are built for AIQSO_DRIVER=lxc or proxmox',
    );
  }
  const image = service.image;
  const started = Date.now();
  const progress = (p: PullProgress) => process.stderr.write(`${key}: ${p.stage} ${p.detail}\n`);
  // A compute driver holds a connection for a pull's lock while it prepares the host with others.
  const built = await withDatabase(
    ctx,
    async ({ db }): Promise<BuiltTemplate> => {
      const compute = await createComputeDriver(ctx.config, db, ctx.log);
      try {
        if (compute instanceof LxcDriver) {
          const { pulled } = await compute.images.pull(image, progress);
          const template = await compute.images.template(image);
          const entry = (await listImageCache(compute.lxcPath)).images.find((i) => i.template === template);
          return {
            service: key,
            image,
            driver: 'lxc',
            digest: entry?.digest ?? '',
            template,
            templateBytes: entry?.templateBytes,
            pulled,
            seconds: (Date.now() - started) / 1000,
          };
        }
        if (!compute.images) throw new DomainError('bad_request', `the ${driver} driver keeps no templates`);
        const { digest, pulled } = await compute.images.pull(image, progress);
        return {
          service: key,
          image,
          driver: 'proxmox',
          digest,
          template: digest,
          pulled,
          seconds: (Date.now() - started) / 1000,
        };
      } finally {
        await compute.close();
      }
    },
    { poolSize: 10 },
  );
  if (options.json) return printJson(built);
  const size = built.templateBytes === undefined ? '' : `, ${megabytes(built.templateBytes)}`;
  process.stdout.write(
    `${key}: ${built.image} ${built.pulled ? 'pulled and ready' : 'was ready already'} as ${built.template} (${built.digest}${size}) in ${built.seconds.toFixed(1)} s\n`,
  );
}
