import path from 'node:path';
import type { Config } from '../config/load.ts';
import type pg from 'pg';
import type { ComputeDriver, ContainerSpec } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import { loadSecretBox, readMasterKey } from '../identity/master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';
import type { OrchestratorParts } from './orchestrator.ts';
import { repositoryKeys, type RepositoryKeys } from '../backup/repositories.ts';
import { backupTenants, startBackupRuns } from '../backup/requests.ts';
import { applyRetentionAll } from '../backup/retention.ts';
import {
  applyPlatformRetentionFor,
  platformBackupReconciler,
  startPlatformBackupRun,
} from '../backup/platform-run.ts';
import { serviceRestoreReconciler } from '../backup/restore.ts';
import { resticFor, type Restic } from '../backup/restic.ts';
import { backupRunReconciler } from '../backup/run.ts';
import { verifiableTenants, verifyTenants } from '../backup/verify.ts';
import { removeExpiredExports, tenantExportReconciler } from '../backup/export.ts';

/** restic and the repository keys, from configuration: what the CLI and the API need to ask. */
export function backupEngine(
  config: Config,
  db: Database,
  box: () => Promise<SecretBox> = () =>
    loadSecretBox({ configured: config.masterKey, dataDir: config.dataDir }),
): { restic: Restic; keys: RepositoryKeys } {
  const restic = resticFor(config);
  return { restic, keys: repositoryKeys(db, box, config.backup.repository) };
}

/**
 * The backup-run, platform-backup and restore reconcilers, and the `backups`, `retention` and
 * `verify` schedules.
 */
export function registerBackups(
  parts: OrchestratorParts,
  deps: {
    config: Config;
    db: Database;
    compute: ComputeDriver;
    box: () => Promise<SecretBox>;
    dbLocal: { host: string; port: number };
    rootSecret(tenantServiceId: string): Promise<string>;
    /**
     * The master database's pool and URL: a restore re-creates a service database that is gone on
     * its server, and the verification makes its scratch databases there.
     */
    master: { pool: pg.Pool; url: string };
    containerSpec(tenantServiceId: string): Promise<ContainerSpec>;
  },
): void {
  const { config, db } = deps;
  const { restic, keys } = backupEngine(config, db, deps.box);
  const common = {
    db,
    restic,
    keys,
    compute: deps.compute,
    dbLocal: deps.dbLocal,
    rootSecret: (id: string) => deps.rootSecret(id),
  };
  const stagingDir = path.join(config.dataDir, 'backups-staging');
  const backupRun = backupRunReconciler({ ...common, stagingDir, host: 'aiqso' });
  parts.registry.register(backupRun);
  parts.registry.register(
    serviceRestoreReconciler({
      ...common,
      backupRun,
      stagingDir,
      admin: deps.master.pool,
      containerSpec: (id) => deps.containerSpec(id),
    }),
  );
  const exportsDir = path.join(config.dataDir, 'exports');
  parts.registry.register(
    tenantExportReconciler({ ...common, dir: exportsDir, publicUrl: config.publicUrl }),
  );
  // The master database goes into the platform repository on the same schedule as the tenants.
  const platform = {
    db,
    restic,
    base: config.backup.repository,
    masterKey: () => readMasterKey({ configured: config.masterKey, dataDir: config.dataDir }),
    masterUrl: deps.master.url,
  };
  parts.registry.register(platformBackupReconciler(platform));
  parts.scheduleHandlers.backups = async ({ firedAt }) => {
    await startBackupRuns(db, await backupTenants(db), { purpose: 'scheduled', firedAt });
    await startPlatformBackupRun(db, firedAt);
  };
  parts.scheduleHandlers.retention = async () => {
    await applyRetentionAll({ db, restic, keys, compute: deps.compute }, config.backup.keep);
    await applyPlatformRetentionFor(platform, config.backup.keep);
    await removeExpiredExports(db, exportsDir);
  };
  const server = deps.master;
  parts.scheduleHandlers.verify = async ({ firedAt }) => {
    const verifyDeps = {
      db,
      restic,
      keys,
      server,
      readDataPercent: config.backup.verifyReadPercent,
      compute: deps.compute,
    };
    // One record (and at most one alert) per tenant and firing, however often the job runs.
    await verifyTenants(verifyDeps, await verifiableTenants(db), firedAt);
  };
}
