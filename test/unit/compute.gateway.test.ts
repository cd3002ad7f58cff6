import { describe, expect, it } from 'vitest';
import { containerReach } from '../../src/compute/gateway.ts';

/** Where containers reach the API and the master database, by value (compute/gateway.ts). */
describe('containerReach', () => {
  const http = { bind: '127.0.0.1', port: 8080 };

  it('gives process containers the loopback addresses themselves, with nothing forwarded', () => {
    expect(
      containerReach({ hostAddress: '127.0.0.1', http, databaseUrl: 'postgres://a:b@127.0.0.1:5433/aiqso' }),
    ).toEqual({ apiUrl: 'http://127.0.0.1:8080', db: { host: '127.0.0.1', port: 5433 }, forwards: [] });
  });

  it('sends bridge containers to an embedded database listening on the gateway itself, not through the control plane', () => {
    const reach = containerReach({
      hostAddress: '10.10.10.1',
      http,
      databaseUrl: 'postgres://a:b@127.0.0.1:5433/aiqso',
      databaseListens: ['127.0.0.1', '10.10.10.1'],
    });
    expect(reach.db).toEqual({ host: '10.10.10.1', port: 5433 });
    // The API is still forwarded: dashboards need the control plane anyway.
    expect(reach.forwards.map((f) => f.name)).toEqual(['api']);
  });

  it('forwards a loopback database the server does not itself serve on the gateway', () => {
    const reach = containerReach({
      hostAddress: '10.10.10.1',
      http,
      databaseUrl: 'postgres://a:b@localhost:5432/aiqso',
    });
    expect(reach.db).toEqual({ host: '10.10.10.1', port: 5432 });
    expect(reach.forwards).toContainEqual({
      name: 'database',
      port: 5432,
      target: { host: 'localhost', port: 5432 },
    });
  });

  it('leaves a database on another host alone', () => {
    const reach = containerReach({
      hostAddress: '10.10.10.1',
      http,
      databaseUrl: 'postgres://a:b@db.internal/aiqso',
    });
    expect(reach.db).toEqual({ host: 'db.internal', port: 5432 });
    expect(reach.forwards.map((f) => f.name)).toEqual(['api']);
  });

  it('gives services the Redis for services where they reach it: a loopback one forwarded, another host as it is', () => {
    const bridged = containerReach({
      hostAddress: '10.10.10.1',
      http,
      databaseUrl: 'postgres://a:b@db.internal/aiqso',
      servicesRedisUrl: 'redis://default:secret@127.0.0.1:6380/2',
    });
    expect(bridged.redis).toEqual({ host: '10.10.10.1', port: 6380 });
    expect(bridged.forwards).toContainEqual({
      name: 'redis',
      port: 6380,
      target: { host: '127.0.0.1', port: 6380 },
    });
    const local = containerReach({
      hostAddress: '127.0.0.1',
      http,
      databaseUrl: 'postgres://a:b@127.0.0.1:5433/aiqso',
      servicesRedisUrl: 'redis://127.0.0.1',
    });
    expect(local.redis).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(local.forwards).toEqual([]);
    const remote = containerReach({
      hostAddress: '10.10.10.1',
      http,
      databaseUrl: 'postgres://a:b@db.internal/aiqso',
      servicesRedisUrl: 'rediss://admin:pw@redis.internal:6390',
    });
    expect(remote.redis).toEqual({ host: 'redis.internal', port: 6390 });
    expect(remote.forwards.map((f) => f.name)).toEqual(['api']);
    // Without the setting, containers are given no Redis.
    expect(containerReach({ hostAddress: '127.0.0.1', http, databaseUrl: 'postgres://a@h/x' }).redis).toBe(
      undefined,
    );
  });
});
