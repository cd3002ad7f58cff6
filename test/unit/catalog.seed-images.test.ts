import { describe, expect, it } from 'vitest';
import { loadCatalog } from '../../src/catalog/load.ts';
import { DRIVER_RUNS, whyNotRunnable } from '../../src/catalog/runnable.ts';
import type { ServiceTemplate } from '../../src/catalog/schema.ts';
import { imageRun, renderEnvFile, renderImageInit } from '../../src/compute/lxc/config.ts';
import { INIT_INSIDE } from '../../src/compute/lxc/images.ts';
import type { ImageWorkload } from '../../src/core/compute.ts';
import { containerSpecFor, type Deployment } from '../../src/services/deploy-context.ts';
import { serviceRedisAccess, servicesRedis, servicesRedisNamespace } from '../../src/services/redis.ts';

/**
 * The seed's third-party services as image entries, rendered as the lxc
 * driver would run them (a dry run: they cannot be pulled from here). The
 * image configs below are what the upstream images declare (ENTRYPOINT, CMD,
 * WORKDIR); the test shows the catalog's overrides, environment and init
 * commands land where the driver puts them, every placeholder filled.
 */
const catalog = Object.fromEntries(loadCatalog().map((t) => [t.key, t]));

const upstream: Record<string, { entrypoint: string[]; cmd: string[]; env: string[]; workdir: string }> = {
  listmonk: {
    entrypoint: ['./docker-entrypoint.sh'],
    cmd: ['./listmonk'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    workdir: '/listmonk',
  },
  calcom: {
    entrypoint: ['/usr/local/bin/docker-entrypoint.sh'],
    cmd: ['/calcom/scripts/start.sh'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_VERSION=18.20.4'],
    workdir: '/calcom',
  },
  espocrm: {
    entrypoint: ['docker-entrypoint.sh'],
    cmd: ['apache2-foreground'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    workdir: '/var/www/html',
  },
  'paperless-ngx': {
    entrypoint: ['/init'],
    cmd: [],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    workdir: '/usr/src/paperless/src',
  },
};

function render(t: ServiceTemplate, redis?: { url: string; prefix: string; hostPort?: number }) {
  const d: Deployment = {
    id: 'tsv_01jd0000000000000000000000',
    tenantId: 'ten_01jdaaaaaaaaaaaaaaaaaaaaaa',
    spec: {
      service: t.key,
      slug: 'acme',
      resources: t.resources,
      removeAfter: null,
      subscribedAt: null,
    },
    status: 'pending',
    template: t,
    tenantStatus: 'active',
    containerName: `aiqso-01jdaaaaaaaaaaaaaaaaaaaaaa-${t.key}`,
    database: { name: `s_acme_${t.key}`, role: `s_acme_${t.key}` },
  };
  const spec = containerSpecFor(
    d,
    {
      driver: 'lxc',
      repoRoot: '/srv/aiqso',
      publicUrl: 'https://aiqso.example',
      dbReach: { host: '10.10.10.1', port: 5432 },
      root: 'root-secret',
    },
    redis,
  );
  const workload = spec.workload as ImageWorkload;
  const run = imageRun(upstream[t.key]!, workload, spec.env);
  return { spec, workload, run, init: renderImageInit(INIT_INSIDE, run, workload.init ?? []) };
}

describe('the seed services as image entries (dry run)', () => {
  it('ships Paperless-ngx, Listmonk, Cal.com and EspoCRM as images, each with its minimum memory', () => {
    const images = Object.values(catalog).filter((t) => t.kind === 'image');
    expect(images.map((t) => [t.key, t.kind === 'image' && t.image, t.min_memory_mb])).toEqual([
      ['calcom', 'docker.io/calcom/cal.com:latest', 1024],
      ['espocrm', 'docker.io/espocrm/espocrm:9', 512],
      ['listmonk', 'docker.io/listmonk/listmonk:latest', 256],
      ['paperless-ngx', 'ghcr.io/paperless-ngx/paperless-ngx:2', 1024],
    ]);
    // Only lxc runs images; Paperless needs a Redis user, which needs AIQSO_SERVICES_REDIS_URL.
    expect(DRIVER_RUNS.lxc).toContain('image');
    expect(images.filter((t) => whyNotRunnable(t, 'lxc') === null).map((t) => t.key)).toEqual([
      'calcom',
      'espocrm',
      'listmonk',
    ]);
    expect(whyNotRunnable(catalog['paperless-ngx']!, 'lxc')).toBe(
      'paperless-ngx needs a Redis user of its own, and this platform has no Redis for services (AIQSO_SERVICES_REDIS_URL is not set)',
    );
    expect(
      images.filter((t) => whyNotRunnable(t, 'lxc', { redis: true }) === null).map((t) => t.key),
    ).toEqual(['calcom', 'espocrm', 'listmonk', 'paperless-ngx']);
  });

  it('renders Listmonk: the command after the image entrypoint, install and upgrade once, env-only config', () => {
    const { run, init, workload } = render(catalog.listmonk!);
    expect(run.argv).toEqual(['./docker-entrypoint.sh', './listmonk', '--config', '']);
    expect(run.workdir).toBe('/listmonk');
    expect(workload.volumes).toEqual(['/listmonk/uploads']);
    expect(run.env).toMatchObject({
      LISTMONK_app__address: '0.0.0.0:9000',
      LISTMONK_app__root_url: 'https://acme.aiqso.example/email/',
      LISTMONK_db__host: '10.10.10.1',
      LISTMONK_db__port: '5432',
      LISTMONK_db__database: 's_acme_listmonk',
      LISTMONK_db__user: 's_acme_listmonk',
      LISTMONK_db__password: 'root-secret',
    });
    expect(run.env.LISTMONK_ADMIN_PASSWORD).toMatch(/^.{20,}$/);
    expect(init).toContain(
      `if [ ! -e /var/lib/aiqso/init-done ]; then\n  echo "aiqso: init: "'./listmonk --install --idempotent --yes --config ' >>/var/log/aiqso/app.log\n  './listmonk' '--install' '--idempotent' '--yes' '--config' '' >>/var/log/aiqso/app.log 2>&1 ||`,
    );
    expect(init).toContain(`'./listmonk' '--upgrade' '--yes' '--config' ''`);
    expect(init).toContain(
      `'./docker-entrypoint.sh' './listmonk' '--config' '' >>/var/log/aiqso/app.log 2>&1 &`,
    );
  });

  it('renders Cal.com and EspoCRM with their image entrypoints, URLs and database', () => {
    const cal = render(catalog.calcom!);
    expect(cal.run.argv).toEqual(['/usr/local/bin/docker-entrypoint.sh', '/calcom/scripts/start.sh']);
    expect(cal.run.env).toMatchObject({
      DATABASE_URL: 'postgres://s_acme_calcom:root-secret@10.10.10.1:5432/s_acme_calcom',
      NEXT_PUBLIC_WEBAPP_URL: 'https://acme.aiqso.example/calendar/',
      PORT: '3000',
      NODE_VERSION: '18.20.4',
    });
    expect(cal.init).toContain(`'npx' 'prisma' 'migrate' 'deploy'`);
    const crm = render(catalog.espocrm!);
    expect(crm.run.argv).toEqual(['docker-entrypoint.sh', 'apache2-foreground']);
    expect(crm.run.env).toMatchObject({
      ESPOCRM_DATABASE_PLATFORM: 'Postgresql',
      ESPOCRM_DATABASE_NAME: 's_acme_espocrm',
      ESPOCRM_SITE_URL: 'https://acme.aiqso.example/crm/',
    });
    expect(crm.init).not.toContain('init-done');
  });

  it('renders Paperless-ngx once a Redis user exists, and refuses to without one', () => {
    expect(() => render(catalog['paperless-ngx']!)).toThrow(
      '${redis.url} needs a Redis user, and none is provisioned here',
    );
    // The platform's Redis for services on the host's loopback, reached by containers at the gateway.
    const redis = servicesRedis({
      url: 'redis://default:admin-secret@127.0.0.1:6379',
      namespace: servicesRedisNamespace('aiqso.example', 'aiqso'),
      reach: { host: '10.10.10.1', port: 6379 },
      hostAddress: '10.10.10.1',
    });
    const access = serviceRedisAccess(
      redis,
      'ten_01jdaaaaaaaaaaaaaaaaaaaaaa',
      'paperless-ngx',
      'root-secret',
    );
    const { run, workload, spec } = render(catalog['paperless-ngx']!, access);
    expect(run.argv).toEqual(['/init']);
    expect(workload.volumes).toEqual([
      '/usr/src/paperless/data',
      '/usr/src/paperless/media',
      '/usr/src/paperless/export',
      '/usr/src/paperless/consume',
    ]);
    expect(access.user).toMatch(/^aiqso-[0-9a-f]{8}-s_01jdaaaaaaaaaaaaaaaaaaaaaa_paperless_ngx$/);
    expect(run.env).toMatchObject({
      PAPERLESS_REDIS: `redis://${access.user}:${access.password}@10.10.10.1:6379`,
      PAPERLESS_REDIS_PREFIX: `${access.user}:`,
      PAPERLESS_DBENGINE: 'postgresql',
      PAPERLESS_DBHOST: '10.10.10.1',
      PAPERLESS_DBPORT: '5432',
      PAPERLESS_DBNAME: 's_acme_paperless-ngx',
      PAPERLESS_DBUSER: 's_acme_paperless-ngx',
      PAPERLESS_DBPASS: 'root-secret',
      PAPERLESS_URL: 'https://acme.aiqso.example',
      PAPERLESS_FORCE_SCRIPT_NAME: '/docs',
      PAPERLESS_PORT: '8000',
    });
    // Neither the admin's credentials nor the root secret itself reach the service's Redis URL.
    expect(run.env.PAPERLESS_REDIS).not.toContain('admin-secret');
    expect(access.password).not.toBe('root-secret');
    expect(run.env.PAPERLESS_SECRET_KEY).toMatch(/^.{40,}$/);
    // The container may open the database and the Redis port on the host, nothing else.
    expect(spec.hostPorts).toEqual([5432, 6379]);
  });

  it('fills every placeholder: nothing of the form ${…} reaches a container', () => {
    for (const t of Object.values(catalog).filter((t) => t.kind === 'image')) {
      const { run } = render(t, { url: 'redis://u:p@h:6379', prefix: 'p:' });
      expect(renderEnvFile(run.env), t.key).not.toMatch(/\$\{/);
    }
  });
});
