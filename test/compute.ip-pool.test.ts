import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpPool } from '../src/compute/shared/ip-pool.ts';
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
});
