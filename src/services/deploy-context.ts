import path from 'node:path';
import { renderServiceEnv } from '../catalog/env.ts';
import { serviceTemplateSchema, type ServiceTemplate } from '../catalog/schema.ts';
import type { ComputeDriver, ContainerInfo, ContainerSpec, Workload } from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import { serviceUrl } from '../core/services.ts';
import type { Database } from '../db/database.ts';
import type { TenantStatus } from '../core/tenants.ts';
import { derivedSecret } from './secrets.ts';
import type { TenantServiceSpec } from './subscriptions.ts';

/** What one reconcile of a tenant service reads: its row, its template and its tenant's status. */
export interface Deployment {
  id: string;
  tenantId: string;
  spec: TenantServiceSpec;
  status: string;
  template: ServiceTemplate;
  tenantStatus: TenantStatus;
  containerName: string;
  database: { name: string; role: string } | null;
}

export async function loadDeployment(db: Database, id: string, spec: TenantServiceSpec): Promise<Deployment> {
  const row = await db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .innerJoin('tenants as t', 't.id', 'ts.tenant_id')
    .select(['ts.tenant_id', 'ts.status', 'ts.container_name', 'ts.db_name', 'ts.db_role', 's.template'])
    .select('t.status as tenant_status')
    .where('ts.id', '=', id)
    .executeTakeFirst();
  if (!row) throw new DomainError('validation_failed', `tenant service ${id} has no row`);
  const template = serviceTemplateSchema.parse(row.template);
  if (!row.container_name)
    throw new DomainError('validation_failed', `tenant service ${id} has no container name`);
  return {
    id,
    tenantId: row.tenant_id,
    spec,
    status: row.status,
    template,
    tenantStatus: row.tenant_status,
    containerName: row.container_name,
    database:
      template.database.postgres && row.db_name && row.db_role
        ? { name: row.db_name, role: row.db_role }
        : null,
  };
}

/** What runs in the container, per template kind; a clone needs the template for this driver. */
export function workloadFor(t: ServiceTemplate, driver: ComputeDriver['kind'], repoRoot: string): Workload {
  if (t.kind === 'app') return { kind: 'app', dir: path.join(repoRoot, t.app.dir), entry: t.app.entry };
  if (t.kind === 'image') {
    return {
      kind: 'image',
      image: t.image,
      ...(t.entrypoint ? { entrypoint: t.entrypoint } : {}),
      ...(t.command ? { command: t.command } : {}),
      ...(t.workdir ? { workdir: t.workdir } : {}),
      volumes: t.volumes,
      init: t.init,
    };
  }
  const template = driver === 'proxmox' ? t.template.proxmox : t.template.lxc;
  if (template === undefined) {
    throw new DomainError('deploy_failed', `${t.key} has no template container for the ${driver} driver`);
  }
  return { kind: 'clone', template: String(template) };
}

export interface ContainerSpecInputs {
  driver: ComputeDriver['kind'];
  repoRoot: string;
  publicUrl: string;
  /** Where containers reach the master database server. */
  dbReach: { host: string; port: number };
  root: string;
}

/** A service's Redis user as its container gets it; `port` is opened on the host when containers reach Redis there. */
export interface ServiceRedisAccess {
  url: string;
  prefix: string;
  hostPort?: number;
}

export function containerSpecFor(
  d: Deployment,
  inputs: ContainerSpecInputs,
  redis?: ServiceRedisAccess,
): ContainerSpec {
  const t = d.template;
  const env = renderServiceEnv(t.env, {
    redis: redis && { url: redis.url, prefix: redis.prefix },
    db: d.database
      ? { ...inputs.dbReach, name: d.database.name, user: d.database.role, password: inputs.root }
      : undefined,
    port: t.port,
    publicUrl: serviceUrl(inputs.publicUrl, d.spec.slug, t.route.path),
    secret: (name) => derivedSecret(inputs.root, name),
  });
  const r = d.spec.resources;
  return {
    name: d.containerName,
    tenantId: d.tenantId,
    role: t.key,
    workload: workloadFor(t, inputs.driver, inputs.repoRoot),
    resources: { memoryMb: r.memory_mb, cores: r.cores, diskGb: r.disk_gb },
    port: t.port,
    env,
    // A service reaches its own database (and its Redis) and nothing else on the host.
    hostPorts: [
      ...(d.database ? [inputs.dbReach.port] : []),
      ...(redis?.hostPort !== undefined ? [redis.hostPort] : []),
    ],
  };
}

/** One health probe: the status the service answered at its health path, or why it did not. */
export async function probe(container: ContainerInfo, healthPath: string): Promise<number | string> {
  if (container.state !== 'running' || !container.endpoint) return `container is ${container.state}`;
  try {
    const res = await fetch(`http://${container.endpoint.host}:${container.endpoint.port}${healthPath}`, {
      signal: AbortSignal.timeout(2000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch (err) {
    return (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : String(err);
  }
}
