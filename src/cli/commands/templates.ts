import { listImageCache } from '../../compute/lxc/images.ts';
import type { CommandContext } from '../context.ts';
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
