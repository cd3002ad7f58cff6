import { z } from 'zod';
import type { Plan } from '../../catalog/plans.ts';
import type { Config } from '../../config/load.ts';
import { DomainError, notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { findCertificate, listCertificates } from '../../edge/certificate-records.ts';
import { acmeSettings, installedNotAfter, renewCertificates } from '../../edge/renewal.ts';
import type { Logger } from '../../observability/logger.ts';
import { retryInboxEvent } from '../../orchestrator/inbox.ts';
import { listWork } from '../../orchestrator/jobs.ts';
import { hostsOverview, setHostDraining } from '../../services/hosts.ts';
import { retryFailedResource } from '../../services/retry.ts';
import type { ApiServer } from '../server.ts';

const ADMIN = { minRole: 'platform_admin' } as const;
const iso = (d: Date | null) => (d ? d.toISOString() : null);
const DAY_MS = 86_400_000;

const JobsOut = z.object({
  counts: z.object({
    running: z.number(),
    queued: z.number(),
    retrying: z.number(),
    failed: z.number(),
    failedResources: z.number(),
    failedOutbox: z.number(),
    failingInbox: z.number(),
  }),
  jobs: z.array(
    z.object({
      id: z.string(),
      task: z.string(),
      key: z.string().nullable(),
      state: z.enum(['queued', 'running', 'retrying', 'failed']),
      runAt: z.string(),
      attempts: z.number(),
      maxAttempts: z.number(),
      lastError: z.string().nullable(),
    }),
  ),
  failedResources: z.array(
    z.object({
      kind: z.string(),
      id: z.string(),
      failures: z.number(),
      lastError: z.string().nullable(),
      updatedAt: z.string(),
    }),
  ),
  failedOutbox: z.array(
    z.object({ key: z.string(), kind: z.string(), attempts: z.number(), lastError: z.string().nullable() }),
  ),
  failingInbox: z.array(
    z.object({
      id: z.string(),
      source: z.string(),
      type: z.string(),
      state: z.enum(['retrying', 'failed']),
      attempts: z.number(),
      lastError: z.string().nullable(),
      receivedAt: z.string(),
    }),
  ),
  workers: z.array(z.object({ hostname: z.string(), pid: z.number(), startedAt: z.string() })),
});

const HostOut = z.object({
  id: z.string(),
  name: z.string(),
  driver: z.string(),
  address: z.string().nullable(),
  draining: z.boolean(),
  capacityShortSince: z.string().nullable(),
  memory: z.object({ totalMb: z.number(), allocatableMb: z.number(), requestedMb: z.number() }),
  cpu: z.object({ cores: z.number(), requestedCores: z.number() }),
  disk: z.object({ totalGb: z.number(), requestedGb: z.number() }),
  containers: z.object({ count: z.number(), max: z.number().nullable() }),
});

const CertificateOut = z.object({
  name: z.string(),
  names: z.array(z.string()),
  file: z.string(),
  challenge: z.string(),
  /** What the installed files say when the certificate directory is set; else the last order's record. */
  notAfter: z.string().nullable(),
  daysLeft: z.number().nullable(),
  orderedAt: z.string(),
  lastAttemptAt: z.string(),
  lastError: z.string().nullable(),
});

const HostParams = z.object({ host: z.string().min(1).max(100) });
const ResourceParams = z.object({
  kind: z.string().regex(/^[a-z_]{1,40}$/, 'a resource kind'),
  id: z.string().regex(/^[A-Za-z0-9_-]{1,80}$/, 'a resource id'),
});
const CertificateParams = z.object({ name: z.string().min(1).max(253) });

/**
 * The platform operators' view of the work, hosts and certificates
 * (platform admins only), as `aiqso jobs` and `aiqso certs` show them: queued,
 * running and failed work with retry for what the orchestrator gave up on;
 * hosts with what placement may promise and what is claimed, drain and
 * undrain; the edge's certificates with "renew now".
 */
export function operationsRoutes(
  app: ApiServer,
  deps: { db: Database; config: Config; plans: Plan[]; log: Logger },
): void {
  const { db, config } = deps;

  app.get(
    '/api/v1/jobs',
    {
      config: ADMIN,
      schema: {
        tags: ['operations'],
        summary:
          'Queued, running and failed work, as `aiqso jobs` shows it (platform admins): background jobs (the first 1000), resources the orchestrator gave up on, undelivered side effects, received events whose processing fails, the running workers',
        response: { 200: JobsOut },
      },
    },
    async () => {
      const work = await listWork(db);
      const count = (state: string) => work.jobs.filter((j) => j.state === state).length;
      return {
        counts: {
          running: count('running'),
          queued: count('queued'),
          retrying: count('retrying'),
          failed: count('failed'),
          failedResources: work.failedResources.length,
          failedOutbox: work.failedOutbox.length,
          failingInbox: work.failingInbox.length,
        },
        jobs: work.jobs.map((j) => ({
          id: j.id,
          task: j.task,
          key: j.key,
          state: j.state,
          runAt: j.runAt.toISOString(),
          attempts: j.attempts,
          maxAttempts: j.maxAttempts,
          lastError: j.lastError,
        })),
        failedResources: work.failedResources.map((r) => ({ ...r, updatedAt: r.updatedAt.toISOString() })),
        failedOutbox: work.failedOutbox,
        failingInbox: work.failingInbox.map((e) => ({ ...e, receivedAt: e.receivedAt.toISOString() })),
        workers: work.workers.map((w) => ({
          hostname: w.hostname,
          pid: w.pid,
          startedAt: w.startedAt.toISOString(),
        })),
      };
    },
  );

  app.post(
    '/api/v1/jobs/resources/:kind/:id/retry',
    {
      config: { ...ADMIN, auditAction: 'resource.retry' },
      schema: {
        tags: ['operations'],
        summary:
          'Retry a resource the orchestrator gave up on (platform admins): a tenant service is deployed again as its retry route does; anything else is reconciled again from a clean failure count. 404 no such resource, 409 not failed',
        params: ResourceParams,
        response: { 202: z.object({ kind: z.string(), id: z.string(), retried: z.literal(true) }) },
      },
    },
    async (request, reply) => {
      const { kind, id } = request.params;
      request.audit = { targetType: kind, targetId: id };
      const { tenantId } = await retryFailedResource(db, deps.plans, { kind, id });
      request.audit = { tenantId, targetType: kind, targetId: id };
      return reply.status(202).send({ kind, id, retried: true as const });
    },
  );

  app.post(
    '/api/v1/jobs/inbox/:id/retry',
    {
      config: { ...ADMIN, auditAction: 'inbox.retry' },
      schema: {
        tags: ['operations'],
        summary:
          'Process a received event (a Stripe event) again whose processing failed (platform admins): its failure count starts again. 404 no such event, 409 processed already or not failed',
        params: z.object({ id: z.string().min(1).max(255) }),
        response: { 202: z.object({ id: z.string(), retried: z.literal(true) }) },
      },
    },
    async (request, reply) => {
      await retryInboxEvent(db, request.params.id);
      return reply.status(202).send({ id: request.params.id, retried: true as const });
    },
  );

  app.get(
    '/api/v1/hosts',
    {
      config: ADMIN,
      schema: {
        tags: ['operations'],
        summary:
          'Every host (platform admins): memory (its total, what placement may promise under AIQSO_HOST_RESERVE_MB and AIQSO_HOST_OVERCOMMIT, what its containers request), CPUs and requested cores, disk, containers, draining, and since when something waits for room on it',
        response: { 200: z.object({ hosts: z.array(HostOut) }) },
      },
    },
    async () => {
      const hosts = await hostsOverview(db, config.hostCapacity);
      return { hosts: hosts.map((h) => ({ ...h, capacityShortSince: iso(h.capacityShortSince) })) };
    },
  );

  for (const [verb, draining] of [
    ['drain', true],
    ['undrain', false],
  ] as const) {
    app.post(
      `/api/v1/hosts/:host/${verb}`,
      {
        config: { ...ADMIN, auditAction: `host.${verb}` },
        schema: {
          tags: ['operations'],
          summary: draining
            ? 'Drain a host, by id or name (platform admins): placement puts no new container on it; those on it keep running. changed: false when it was draining already'
            : 'Take a drained host back into placement (platform admins); whatever waits for room looks again at once. changed: false when it was not draining',
          params: HostParams,
          response: {
            200: z.object({
              host: z.object({ id: z.string(), name: z.string(), draining: z.boolean() }),
              changed: z.boolean(),
            }),
          },
        },
      },
      async (request) => {
        const { changed, ...host } = await setHostDraining(db, request.params.host, draining);
        request.audit = { targetType: 'host', targetId: host.id, details: { changed } };
        return { host, changed };
      },
    );
  }

  /** The expiry the edge serves now: the installed files' when the directory is set, else the last order's. */
  async function expiryOf(fileBase: string, recorded: Date): Promise<Date | null> {
    const certDir = config.edgeTuning.certDir;
    if (!certDir) return recorded;
    return (await installedNotAfter(certDir, fileBase)) ?? null;
  }

  app.get(
    '/api/v1/certificates',
    {
      config: ADMIN,
      schema: {
        tags: ['operations'],
        summary:
          'The certificates the platform ordered over ACME, as `aiqso certs list` shows them (platform admins): names, challenge, expiry of the installed files (null: files missing), days left, last order, last renewal error; and whether ACME is configured here',
        response: {
          200: z.object({
            certificates: z.array(CertificateOut),
            renewDays: z.number(),
            acme: z.object({ configured: z.boolean(), directoryUrl: z.string().nullable() }),
          }),
        },
      },
    },
    async () => {
      const now = Date.now();
      const records = await listCertificates(db);
      const certificates = await Promise.all(
        records.map(async (r) => {
          const notAfter = await expiryOf(r.fileBase, r.notAfter);
          return {
            name: r.name,
            names: r.names,
            file: r.fileBase,
            challenge: r.challenge,
            notAfter: iso(notAfter),
            daysLeft: notAfter ? Math.floor((notAfter.getTime() - now) / DAY_MS) : null,
            orderedAt: r.orderedAt.toISOString(),
            lastAttemptAt: r.lastAttemptAt.toISOString(),
            lastError: r.lastError,
          };
        }),
      );
      return {
        certificates,
        renewDays: config.certRenewDays,
        acme: {
          configured: Boolean(config.acme && config.edgeTuning.certDir),
          directoryUrl: config.acme?.directoryUrl ?? null,
        },
      };
    },
  );

  app.post(
    '/api/v1/certificates/:name/renew',
    {
      config: { ...ADMIN, auditAction: 'certificate.renew' },
      schema: {
        tags: ['operations'],
        summary:
          'Renew a recorded certificate now, whatever its expiry, as `aiqso certs renew <domain>` (platform admins): 400 when ACME is not configured here (AIQSO_ACME_DIRECTORY_URL, AIQSO_TLS_CERT_DIR), 404 no such certificate, 502 when the order failed (recorded and alerted; the installed certificate stays)',
        params: CertificateParams,
        response: {
          200: z.object({ name: z.string(), names: z.array(z.string()), notAfter: z.string().nullable() }),
        },
      },
    },
    async (request) => {
      const name = request.params.name.trim().toLowerCase();
      const record = await findCertificate(db, name);
      if (!record) throw notFound(`certificate ${name}`);
      // A missing setting is the operator's to fix, answered before anything is recorded or alerted.
      const settings = acmeSettings(config, db);
      const [outcome] = await renewCertificates(
        { db, log: deps.log, settings: () => settings, renewDays: config.certRenewDays },
        { records: [record], force: true },
      );
      if (!outcome || outcome.status !== 'renewed') {
        throw new DomainError(
          'dependency_failed',
          `renewing ${name} failed: ${outcome?.error ?? 'no outcome'}`,
        );
      }
      return { name: outcome.name, names: outcome.names, notAfter: iso(outcome.notAfter) };
    },
  );
}
