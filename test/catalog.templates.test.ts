import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderServiceEnv } from '../src/catalog/env.ts';
import { CATALOG_DIR, CatalogError, loadCatalog } from '../src/catalog/load.ts';
import { whyNotRunnable } from '../src/catalog/runnable.ts';
import type { DriverKind } from '../src/core/compute.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

const VALID = `key: demo
name: Demo
kind: app
app: { dir: apps/drafts, entry: server.mjs }
resources: { memory_mb: 128, cores: 1, disk_gb: 1 }
port: 3000
health: { path: /healthz }
route: { path: /demo }
database: { postgres: true }
env:
  DATABASE_URL: \${db.url}
`;

const IMAGE = `key: demo
name: Demo
kind: image
image: 127.0.0.1:5000/demo/web:1
entrypoint: [/bin/web]
command: [--port, "8080"]
workdir: /srv
volumes: [/data]
init: [[/bin/web, --install]]
min_memory_mb: 256
resources: { memory_mb: 256, cores: 1, disk_gb: 1 }
port: 8080
health: { path: /healthz }
route: { path: /demo }
database: { postgres: true }
env:
  DB_HOST: \${db.host}
`;

function catalogWith(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-catalog-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

function loadError(files: Record<string, string>): string {
  const dir = catalogWith(files);
  try {
    loadCatalog(dir);
  } catch (err) {
    expect(err).toBeInstanceOf(CatalogError);
    return (err as Error).message.replace(`${dir}/`, '');
  }
  throw new Error('expected a catalog error');
}

describe('service catalog', () => {
  it('ships the seed services, each with a port, health check, route and resources', () => {
    const catalog = loadCatalog();
    expect(catalog.map((t) => [t.key, t.kind])).toEqual([
      ['calcom', 'image'],
      ['content-suite', 'app'],
      ['espocrm', 'image'],
      ['listmonk', 'image'],
      ['notes', 'app'],
      ['paperless-ngx', 'image'],
      ['social-media-manager', 'app'],
    ]);
    const byKey = Object.fromEntries(catalog.map((t) => [t.key, t]));
    expect(byKey['paperless-ngx']).toMatchObject({
      port: 8000,
      route: { path: '/docs', strip_prefix: false },
    });
    expect(byKey.listmonk).toMatchObject({
      port: 9000,
      health: { path: '/api/health' },
      route: { path: '/email' },
    });
    expect(byKey.espocrm).toMatchObject({ image: 'docker.io/espocrm/espocrm:9', route: { path: '/crm' } });
    // Every service sits behind the platform's sign-in; Cal.com's booking pages are public.
    expect(catalog.every((t) => t.route.auth === 'edge')).toBe(true);
    expect(byKey.calcom!.route.public_paths).toEqual(['/booking']);
    expect(byKey.notes!.route.public_paths).toEqual([]);
    expect(CATALOG_DIR).toMatch(/catalog\/services$/);
  });

  it.each([
    ['a missing port', VALID.replace('port: 3000\n', ''), 'demo.yaml: port: '],
    ['an unknown kind', VALID.replace('kind: app', 'kind: vm'), 'demo.yaml: kind: '],
    [
      'a route path with two segments',
      VALID.replace('/demo', '/a/b'),
      'demo.yaml: route.path: expected one path segment',
    ],
    [
      'an unknown placeholder',
      VALID.replace('${db.url}', '${db.secret}'),
      'demo.yaml: env.DATABASE_URL: unknown placeholder ${db.secret}',
    ],
    [
      'a key that differs from the file name',
      VALID.replace('key: demo', 'key: other'),
      'demo.yaml: key: expected "demo"',
    ],
    [
      'an app entry that does not exist',
      VALID.replace('server.mjs', 'nope.mjs'),
      'demo.yaml: app.entry: apps/drafts/nope.mjs does not exist',
    ],
    ['bad YAML', 'key: [demo', 'demo.yaml: not valid YAML'],
    [
      'an unknown sign-in',
      VALID.replace('route: { path: /demo }', 'route: { path: /demo, auth: none }'),
      'demo.yaml: route.auth: expected edge or app',
    ],
    [
      'a public path with a dot segment',
      VALID.replace('route: { path: /demo }', 'route: { path: /demo, public_paths: [/booking/../admin] }'),
      'demo.yaml: route.public_paths.0: expected a path such as /booking',
    ],
    ['an unknown key', `${VALID}bogus: 1\n`, 'demo.yaml: bogus: unknown key'],
    [
      'an unknown nested key',
      VALID.replace('health: { path: /healthz }', 'health: { path: /healthz, interval: 5 }'),
      'demo.yaml: health.interval: unknown key',
    ],
    ['an image key on an app', `${VALID}image: docker.io/library/nginx:1\n`, 'demo.yaml: image: unknown key'],
    [
      'an image entry without its minimum memory',
      IMAGE.replace('min_memory_mb: 256\n', ''),
      'demo.yaml: min_memory_mb: ',
    ],
    [
      'an image entry whose memory is below its minimum',
      IMAGE.replace('min_memory_mb: 256', 'min_memory_mb: 512'),
      "demo.yaml: resources.memory_mb: 256 is below the service's min_memory_mb of 512",
    ],
    [
      'a memory request above the limit',
      VALID.replace('memory_mb: 128,', 'memory_mb: 128, request_memory_mb: 256,'),
      'demo.yaml: resources.request_memory_mb: 256 is above the limit resources.memory_mb of 128',
    ],
    [
      'an image reference that is not one',
      IMAGE.replace('127.0.0.1:5000/demo/web:1', 'Not An Image'),
      'demo.yaml: image: expected an image reference',
    ],
    [
      'a volume that is not an absolute path',
      IMAGE.replace('volumes: [/data]', 'volumes: [data/../etc]'),
      'demo.yaml: volumes.0: expected an absolute path',
    ],
    [
      'an init command given as a shell string',
      IMAGE.replace('init: [[/bin/web, --install]]', 'init: ["/bin/web --install"]'),
      'demo.yaml: init.0: ',
    ],
    [
      'a public path that is not a path',
      VALID.replace(
        'route: { path: /demo }',
        'route: { path: /demo, public_paths: ["x; include /etc/passwd"] }',
      ),
      'demo.yaml: route.public_paths.0: expected a path such as /booking',
    ],
  ])('names the file and field for %s', (_label, text, message) => {
    expect(loadError({ 'demo.yaml': text })).toContain(message);
  });

  it('reads an image entry: reference, entrypoint and command, volumes, init commands, minimum memory', () => {
    const [t] = loadCatalog(catalogWith({ 'demo.yaml': IMAGE }));
    expect(t).toMatchObject({
      kind: 'image',
      image: '127.0.0.1:5000/demo/web:1',
      entrypoint: ['/bin/web'],
      command: ['--port', '8080'],
      workdir: '/srv',
      volumes: ['/data'],
      init: [['/bin/web', '--install']],
      min_memory_mb: 256,
    });
  });

  it('offers a service only on a driver that runs it, and says why not', () => {
    const [app] = loadCatalog(catalogWith({ 'demo.yaml': VALID }));
    const [image] = loadCatalog(catalogWith({ 'demo.yaml': IMAGE }));
    const [clone] = loadCatalog(
      catalogWith({
        'demo.yaml': VALID.replace('kind: app', 'kind: clone').replace(
          'app: { dir: apps/drafts, entry: server.mjs }',
          'template: { proxmox: 120 }',
        ),
      }),
    );
    const offered = (driver: DriverKind) =>
      [app!, image!, clone!].filter((t) => whyNotRunnable(t, driver) === null).map((t) => t.kind);
    expect(offered('process')).toEqual(['app']);
    expect(offered('lxc')).toEqual(['app', 'image']);
    expect(offered('proxmox')).toEqual(['app', 'image', 'clone']);
    // Proxmox runs images with init commands and a working directory too (through the image's shell).
    expect(whyNotRunnable(image!, 'proxmox')).toBeNull();
    const [plain] = loadCatalog(
      catalogWith({
        'demo.yaml': IMAGE.replace('workdir: /srv\n', '').replace('init: [[/bin/web, --install]]\n', ''),
      }),
    );
    expect(whyNotRunnable(plain!, 'proxmox')).toBeNull();
    const [commandOnly] = loadCatalog(
      catalogWith({
        'demo.yaml': IMAGE.replace('workdir: /srv\n', '')
          .replace('init: [[/bin/web, --install]]\n', '')
          .replace('entrypoint: [/bin/web]\n', ''),
      }),
    );
    expect(whyNotRunnable(commandOnly!, 'proxmox')).toMatch(
      /replaces the image's command but not its entrypoint/,
    );
    expect(whyNotRunnable(image!, 'process')).toBe(
      'demo is an image service; the process driver runs only app services',
    );
    expect(whyNotRunnable(clone!, 'lxc')).toBe('demo has no template container for the lxc driver');
  });

  it('refuses two services on one route path', () => {
    const other = VALID.replace('key: demo', 'key: other');
    expect(loadError({ 'demo.yaml': VALID, 'other.yaml': other })).toMatch(
      /route\.path \/demo is used by both demo and other/,
    );
  });

  it('fills placeholders with the service database, port, URL and stable secrets', () => {
    const env = renderServiceEnv(
      {
        DATABASE_URL: '${db.url}',
        ADDR: '0.0.0.0:${port}',
        URL: '${public_url}',
        ORIGIN: '${public_origin}',
        KEY: '${secret:app}',
      },
      {
        db: { host: '10.0.0.1', port: 5432, name: 'acme_notes', user: 'acme_notes', password: 'p@ss/w' },
        port: 3000,
        publicUrl: 'https://acme.aiqso.io/notes',
        secret: (name) => `s-${name}`,
      },
    );
    expect(env).toEqual({
      DATABASE_URL: 'postgres://acme_notes:p%40ss%2Fw@10.0.0.1:5432/acme_notes',
      ADDR: '0.0.0.0:3000',
      URL: 'https://acme.aiqso.io/notes',
      ORIGIN: 'https://acme.aiqso.io',
      KEY: 's-app',
    });
  });
});

describe('catalog sync', () => {
  let testDb: TestDatabase;
  beforeAll(async () => {
    testDb = await createTestDatabase();
  });
  afterAll(() => testDb.drop());

  it('upserts templates by key and deactivates removed ones', async () => {
    const catalog = loadCatalog();
    await syncCatalog(testDb.db, catalog);
    await syncCatalog(testDb.db, catalog);
    const all = await testDb.db.selectFrom('services').select(['key', 'active']).orderBy('key').execute();
    expect(all).toHaveLength(catalog.length);
    await syncCatalog(
      testDb.db,
      catalog.filter((t) => t.key !== 'calcom'),
    );
    const calcom = await testDb.db
      .selectFrom('services')
      .select('active')
      .where('key', '=', 'calcom')
      .executeTakeFirstOrThrow();
    expect(calcom.active).toBe(false);
  });
});
