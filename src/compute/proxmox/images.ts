import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { ImageCache, OnPullProgress } from '../../core/compute.ts';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import type { PveClient } from './client.ts';

/**
 * OCI images on Proxmox VE 9.1: the cluster pulls them itself
 * (`POST /nodes/{node}/storage/{storage}/oci-registry-pull`) into the
 * template storage as an OCI archive named after the reference
 * (`aiqso-img-<hash>.tar`), on every online node that does not see it yet (a
 * shared storage is pulled once). Containers are then created from that
 * volume. A reference is resolved at its first pull; later deploys reuse the
 * archive without contacting the registry. A failed pull (no such image, a
 * registry that refuses) leaves nothing and fails with the cluster's reason.
 */

/** What Proxmox accepts as a reference to pull: a tag is required and a digest is not accepted. */
export const PULLABLE_REF =
  /^(?:(?:[a-zA-Z\d]|[a-zA-Z\d][a-zA-Z\d-]*[a-zA-Z\d])(?:\.(?:[a-zA-Z\d]|[a-zA-Z\d][a-zA-Z\d-]*[a-zA-Z\d]))*(?::\d+)?\/)?[a-z\d]+(?:(?:[._]|__|[-]*)[a-z\d]+)*(?:\/[a-z\d]+(?:(?:[._]|__|[-]*)[a-z\d]+)*)*:\w[\w.-]{0,127}$/;

export const imageFilename = (ref: string) =>
  `aiqso-img-${createHash('sha256').update(ref).digest('hex').slice(0, 24)}.tar`;

export interface TemplateStore {
  readonly api: Pick<PveClient, 'call' | 'task'>;
  readonly options: { readonly db: Database; readonly log: Logger; readonly templateStorage: string };
}

export const templateVolid = (store: TemplateStore, filename: string) =>
  `${store.options.templateStorage}:vztmpl/${filename}`;

/** Whether `node` sees `filename` on the template storage. */
export async function hasTemplate(store: TemplateStore, node: string, filename: string): Promise<boolean> {
  const content = await store.api.call<{ volid: string }[]>(
    'GET',
    `/nodes/${node}/storage/${store.options.templateStorage}/content`,
    { content: 'vztmpl' },
  );
  return content.some((c) => c.volid === templateVolid(store, filename));
}

async function onlineNodes(store: TemplateStore): Promise<string[]> {
  const nodes = await store.api.call<{ node: string; status: string }[]>('GET', '/cluster/resources', {
    type: 'node',
  });
  return nodes
    .filter((n) => n.status === 'online')
    .map((n) => n.node)
    .sort();
}

export class ProxmoxImages implements ImageCache {
  private readonly inflight = new Map<string, Promise<{ digest: string; pulled: boolean }>>();

  constructor(private readonly store: TemplateStore) {}

  async cached(image: string): Promise<boolean> {
    const filename = imageFilename(image);
    for (const node of await onlineNodes(this.store))
      if (!(await hasTemplate(this.store, node, filename))) return false;
    return true;
  }

  pull(image: string, onProgress?: OnPullProgress): Promise<{ digest: string; pulled: boolean }> {
    let p = this.inflight.get(image);
    if (!p) {
      p = this.pullEverywhere(image, onProgress).finally(() => this.inflight.delete(image));
      this.inflight.set(image, p);
    }
    return p;
  }

  /** Pull onto `node` unless it sees the image already. */
  async pullOn(node: string, image: string, onProgress?: OnPullProgress): Promise<boolean> {
    if (!PULLABLE_REF.test(image)) {
      throw new DomainError(
        'deploy_failed',
        `${image}: Proxmox pulls images by a reference with a tag (registry/name:tag), not by digest`,
      );
    }
    const filename = imageFilename(image);
    if (await hasTemplate(this.store, node, filename)) {
      onProgress?.({
        stage: 'cached',
        image,
        detail: `on ${node} as ${templateVolid(this.store, filename)}`,
      });
      return false;
    }
    const { db, log, templateStorage } = this.store.options;
    // One pull of a reference at a time, across every worker on this database.
    await db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.pve_pull:${node}:${image}`}))`.execute(trx);
      if (await hasTemplate(this.store, node, filename)) return;
      log.info({ image, node }, 'proxmox pulls image');
      onProgress?.({ stage: 'pulling', image, detail: `onto ${node} (${templateStorage})` });
      try {
        await this.store.api.task(
          'POST',
          `/nodes/${node}/storage/${templateStorage}/oci-registry-pull`,
          { reference: image, filename },
          1_800_000,
        );
      } catch (err) {
        const reason = (err as Error).message.replace(/^Proxmox POST \S+: /, '');
        throw new DomainError('deploy_failed', `${image}: ${reason}`, { cause: err });
      }
    });
    return true;
  }

  private async pullEverywhere(
    image: string,
    onProgress?: OnPullProgress,
  ): Promise<{ digest: string; pulled: boolean }> {
    let pulled = false;
    for (const node of await onlineNodes(this.store))
      pulled = (await this.pullOn(node, image, onProgress)) || pulled;
    const volid = templateVolid(this.store, imageFilename(image));
    if (pulled) onProgress?.({ stage: 'ready', image, detail: `as ${volid}` });
    return { digest: volid, pulled };
  }
}
