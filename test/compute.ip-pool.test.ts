import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpPool } from '../src/compute/shared/ip-pool.ts';
import { loadConfig } from '../src/config/load.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ max: 10 });
});
afterAll(async () => {
  await db.drop();
});

describe('container address pool', () => {
  it('gives concurrent allocators distinct addresses, from .2, and the same one on repeat', async () => {
    const pool = new IpPool(db.db, '10.50.0.0/24');
    const ips = await Promise.all(Array.from({ length: 30 }, (_, i) => pool.allocate(`c${i}`)));
    expect(new Set(ips).size).toBe(30);
    expect(ips).toContain('10.50.0.2');
    expect(ips).not.toContain('10.50.0.1');
    expect(await pool.allocate('c7')).toBe(ips[7]);
  });

  it('reuses released addresses and honours a wanted one', async () => {
    const pool = new IpPool(db.db, '10.51.0.0/29');
    const a = await pool.allocate('a');
    await pool.allocate('b');
    await pool.release('a');
    expect(await pool.allocate('c')).toBe(a);
    expect(await pool.allocate('d', '10.51.0.6')).toBe('10.51.0.6');
    await expect(pool.allocate('e', '10.51.0.6')).rejects.toMatchObject({ code: 'conflict' });
    await expect(pool.allocate('e', '10.99.0.6')).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('reports a full pool as exhausted capacity', async () => {
    const pool = new IpPool(db.db, '10.52.0.0/30');
    await pool.allocate('only');
    await expect(pool.allocate('second')).rejects.toMatchObject({ code: 'capacity_exhausted' });
  });

  it('counts its room, and adopts a narrower former network inside it, keeping addresses and its gateway', async () => {
    // The former default /24 inside the /20 that replaced it.
    const old = new IpPool(db.db, '10.53.10.0/24');
    const a = await old.allocate('old-a');
    const b = await old.allocate('old-b');
    const wide = new IpPool(db.db, '10.53.0.0/20');
    expect(await wide.room()).toEqual({ network: '10.53.0.0/20', size: 4093, free: 4093 });
    expect(await wide.adoptNarrower()).toEqual(['10.53.10.0/24']);
    expect(await wide.adoptNarrower()).toEqual([]);
    // Same addresses, now in the wide pool; the former gateway is reserved, not a container.
    expect(await wide.lookup('old-a')).toBe(a);
    expect(await wide.lookup('old-b')).toBe(b);
    expect(await wide.entries()).toEqual([
      { owner: 'old-a', ip: a },
      { owner: 'old-b', ip: b },
    ]);
    expect(await wide.formerGateways()).toEqual(['10.53.10.1/24']);
    expect(await wide.room()).toEqual({ network: '10.53.0.0/20', size: 4093, free: 4090 });
    // New containers never get the former gateway, and an old owner keeps its address on ensure.
    expect(await wide.allocate('old-a')).toBe(a);
    expect(await wide.allocate('old-a', a)).toBe(a);
    await expect(wide.allocate('new', '10.53.10.1')).rejects.toMatchObject({ code: 'conflict' });
  });

  it('holds at least 4,000 containers in the default lxc network', () => {
    const room = new IpPool(db.db, loadConfig({}).lxc.subnet).subnet;
    expect(room.last - room.first + 1).toBeGreaterThanOrEqual(4000);
  });
});
