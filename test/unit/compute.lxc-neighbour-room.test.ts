import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureNeighbourRoom } from '../../src/compute/lxc/bridge.ts';
import { parseSubnet } from '../../src/compute/shared/subnet.ts';

/**
 * The host's ARP table limits against the bridge's subnet, on a stand-in for
 * /proc/sys/net/ipv4/neigh/default (Linux's defaults: 128 / 512 / 1024).
 */
let dir: string;
const value = async (key: string) => Number((await readFile(path.join(dir, key), 'utf8')).trim());

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-neigh-'));
  for (const [key, v] of [
    ['gc_thresh1', 128],
    ['gc_thresh2', 512],
    ['gc_thresh3', 1024],
  ] as const)
    await writeFile(path.join(dir, key), `${v}\n`);
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('room in the ARP table for every container', () => {
  it("raises the soft and hard limits past a /20's 4,093 containers", async () => {
    const out = await ensureNeighbourRoom(parseSubnet('10.44.0.0/20'), dir);
    expect(out).toEqual({ raised: { gc_thresh3: 2 * (4093 + 1024), gc_thresh2: 4093 + 1024 } });
    expect([await value('gc_thresh1'), await value('gc_thresh2'), await value('gc_thresh3')]).toEqual([
      128, 5117, 10234,
    ]);
    // Again: nothing to do.
    expect(await ensureNeighbourRoom(parseSubnet('10.44.0.0/20'), dir)).toEqual({ raised: {} });
  });

  it("keeps limits an operator set higher, and raises only what is short of a /24's needs", async () => {
    await writeFile(path.join(dir, 'gc_thresh3'), '16384\n');
    const out = await ensureNeighbourRoom(parseSubnet('10.45.0.0/24'), dir);
    expect(out).toEqual({ raised: { gc_thresh2: 253 + 1024 } });
    expect(await value('gc_thresh3')).toBe(16384);
  });

  it('says why when the limits cannot be read or written (a read-only /proc/sys), without throwing', async () => {
    const out = await ensureNeighbourRoom(parseSubnet('10.46.0.0/20'), path.join(dir, 'absent'));
    expect(out.raised).toEqual({});
    expect(out.refused).toMatch(/absent\/gc_thresh3: ENOENT/);
  });
});
