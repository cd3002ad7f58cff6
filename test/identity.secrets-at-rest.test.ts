import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import { freePort } from '../src/db/embedded.ts';
import { keyFile, loadSecretBox } from '../src/identity/master-key.ts';
import {
  assertMasterKeyOpens,
  rotateMasterKey,
  sealedContext,
  SEALED_COLUMNS,
} from '../src/identity/rotate-master-key.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { runCli } from './support/cli.ts';
import { createHarness, PASSWORD, totpCodeAtStep, type Harness } from './support/identity.ts';

describe('the secret box', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-box-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('generates <data>/master.key with mode 0600 on first use and reuses it', async () => {
    const box = await loadSecretBox({ dataDir: path.join(dir, 'data') });
    const file = keyFile(path.join(dir, 'data'));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(file, 'utf8')).trim()).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const again = await loadSecretBox({ dataDir: path.join(dir, 'data') });
    expect(again.keyId).toBe(box.keyId);
    expect(again.open(box.seal('s3cret', 'ctx:1'), 'ctx:1')).toBe('s3cret');
  });

  it('refuses a value moved to another row, tampered with, or sealed by an unknown key', () => {
    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const sealed = box.seal('db-password', 'tenant_services:tsv_1');
    expect(sealed).not.toContain('db-password');
    expect(() => box.open(sealed, 'tenant_services:tsv_2')).toThrow(/failed authentication/);
    const parts = sealed.split(':');
    parts[4] = Buffer.from('tampered!!!').toString('base64url');
    expect(() => box.open(parts.join(':'), 'tenant_services:tsv_1')).toThrow(/failed authentication/);
    const other = createSecretBox(parseMasterKey(generateMasterKey()));
    expect(() => other.open(sealed, 'tenant_services:tsv_1')).toThrow(/not configured/);
  });
});

describe('master key rotation', () => {
  let h: Harness;
  beforeAll(async () => {
    // File mode: no AIQSO_MASTER_KEY, the key is generated into the data directory.
    h = await createHarness({ env: { AIQSO_MASTER_KEY: '' } });
    const box = await loadSecretBox({ dataDir: h.dataDir });
    const serviceId = newId('service');
    await h.db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'crm', name: 'CRM', kind: 'image', template: '{}' })
      .execute();
    const tsv = newId('tenantService');
    await h.db.db
      .insertInto('tenant_services')
      .values({
        id: tsv,
        tenant_id: h.a.id,
        service_id: serviceId,
        db_password_enc: box.seal('pw-of-crm', sealedContext('tenant_services', tsv)),
      })
      .execute();
  });
  afterAll(() => h.close());

  async function sealedValues() {
    const out: { context: string; sealed: string }[] = [];
    for (const { table, key, column } of SEALED_COLUMNS) {
      const rows = (await h.db.db
        .selectFrom(table)
        .select([`${key} as id`, `${column} as sealed`])
        .execute()) as { id: string; sealed: string | null }[];
      for (const r of rows) if (r.sealed) out.push({ context: sealedContext(table, r.id), sealed: r.sealed });
    }
    return out;
  }

  it('aiqso secrets rotate-key re-encrypts every secret and replaces the key file', async () => {
    const oldKey = (await readFile(keyFile(h.dataDir), 'utf8')).trim();
    const before = await sealedValues();
    expect(before.length).toBeGreaterThanOrEqual(3);
    const res = await runCli(['secrets', 'rotate-key', '--json'], {
      DATABASE_URL: h.db.url,
      AIQSO_DATA_DIR: h.dataDir,
    });
    expect(res.code, res.stderr).toBe(0);
    const report = JSON.parse(res.stdout) as { resealed: number; keyId: string; mode: string };
    expect(report).toMatchObject({ resealed: before.length, mode: 'file' });
    const newKey = (await readFile(keyFile(h.dataDir), 'utf8')).trim();
    expect(newKey).not.toBe(oldKey);
    expect((await stat(keyFile(h.dataDir))).mode & 0o777).toBe(0o600);
    expect(existsSync(`${keyFile(h.dataDir)}.next`)).toBe(false);
    const fresh = createSecretBox(parseMasterKey(newKey));
    const stale = createSecretBox(parseMasterKey(oldKey));
    for (const v of await sealedValues()) {
      expect(fresh.open(v.sealed, v.context)).toBeTruthy();
      expect(() => stale.open(v.sealed, v.context)).toThrow();
    }
  });

  it('keeps the running platform working: a TOTP login opens the re-encrypted secret', async () => {
    // A time step the harness has not spent yet, inside the ±1 window. The code is made for that
    // exact step: an offset from a clock read again later could land, across a step boundary, on a
    // step already spent ("already used").
    const used = await h.db.db
      .selectFrom('totp_used_steps')
      .select('step')
      .where('user_id', '=', h.admin.id)
      .execute();
    const spent = new Set(used.map((u) => Number(u.step)));
    const now = Math.floor(Date.now() / 30_000);
    const step = [now, now + 1, now - 1].find((s) => !spent.has(s))!;
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.admin.email, password: PASSWORD, totp: totpCodeAtStep(h.admin.totpSecret, step) },
    });
    expect(res.statusCode, res.body).toBe(200);
  });

  it('refuses to start a worker, platform or edge whose master key does not open the database, naming the variable', async () => {
    expect(await assertMasterKeyOpens(h.db.db, await loadSecretBox({ dataDir: h.dataDir }))).toBeUndefined();
    const otherDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-otherkey-'));
    try {
      for (const command of [['worker'], ['up'], ['edge']]) {
        const res = await runCli(command, {
          DATABASE_URL: h.db.url,
          AIQSO_DATA_DIR: otherDir,
          AIQSO_HTTP_PORT: String(await freePort()),
        });
        expect(res.code, res.stderr).toBe(2);
        expect(res.stderr).toMatch(
          /^aiqso: configuration error: AIQSO_MASTER_KEY: the master key \(\S+\) does not open the secrets in this database \(signing_keys\.private_enc is sealed with key \S+\)/,
        );
        expect(res.stderr.trim().split('\n')).toHaveLength(1);
      }
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('with AIQSO_MASTER_KEY set, re-encrypts under the key the operator supplies', async () => {
    const current = (await readFile(keyFile(h.dataDir), 'utf8')).trim();
    const next = generateMasterKey();
    const result = await rotateMasterKey(h.db.db, { dataDir: h.dataDir, configured: current, newKey: next });
    expect(result.mode).toBe('configured');
    const box = createSecretBox(parseMasterKey(next));
    for (const v of await sealedValues()) expect(box.open(v.sealed, v.context)).toBeTruthy();
  });
});
