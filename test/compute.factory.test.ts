import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkProxmox } from '../src/compute/doctor.ts';
import { createComputeDriver } from '../src/compute/index.ts';
import { DRIVER_KINDS } from '../src/core/compute.ts';
import { loadConfig } from '../src/config/load.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startProxmoxSimulator, type ProxmoxSimulator } from './support/proxmox-sim/server.ts';

let db: TestDatabase;
let sim: ProxmoxSimulator;
let dir: string;
const log = createLogger('silent');

beforeAll(async () => {
  db = await createTestDatabase();
  sim = await startProxmoxSimulator();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-factory-'));
});
afterAll(async () => {
  await sim.close();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

const proxmoxEnv = () => ({
  AIQSO_DRIVER: 'proxmox',
  PROXMOX_URL: sim.url,
  PROXMOX_TOKEN_ID: sim.tokenId,
  PROXMOX_TOKEN_SECRET: sim.tokenSecret,
  PROXMOX_CA_FILE: sim.certFile,
  PROXMOX_VMID_RANGE: '20000-20099',
});

describe('createComputeDriver', () => {
  it('builds the driver AIQSO_DRIVER names', async () => {
    for (const driver of DRIVER_KINDS) {
      const env = driver === 'proxmox' ? proxmoxEnv() : { AIQSO_DRIVER: driver };
      const compute = await createComputeDriver(loadConfig({ AIQSO_DATA_DIR: dir, ...env }, dir), db.db, log);
      expect(compute.kind).toBe(driver);
      await compute.close();
    }
  });

  it('rejects a bad VMID range with one line naming the variable', () => {
    expect(() => loadConfig({ ...proxmoxEnv(), PROXMOX_VMID_RANGE: '500-20' }, dir)).toThrow(
      /^PROXMOX_VMID_RANGE: /,
    );
  });
});

describe('doctor: proxmox', () => {
  it('reports the cluster reachable with the token, and a wrong token as failed', async () => {
    expect(await checkProxmox(loadConfig(proxmoxEnv(), dir))).toMatchObject({ status: 'ok', detail: /9\.1/ });
    const bad = await checkProxmox(loadConfig({ ...proxmoxEnv(), PROXMOX_TOKEN_SECRET: 'nope' }, dir));
    expect(bad).toMatchObject({ status: 'failed', fix: /token/ });
    expect(bad.detail).not.toContain('nope');
    expect(await checkProxmox(loadConfig({ AIQSO_DRIVER: 'process' }, dir))).toMatchObject({
      status: 'not used',
    });
  });
});
