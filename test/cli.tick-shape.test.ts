import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const PROBE = path.resolve(import.meta.dirname, 'fixtures/tick-shape/probe.mjs');

/**
 * The feedback state of each key of process.nextTick's object literal, after a
 * thread was idle through full collections (test/fixtures/tick-shape/probe.mjs,
 * which reads them from V8's printout of the function). The printout goes to
 * a file: V8 writes it through C's buffered stdout, which a pipe can lose part
 * of when the process exits.
 */
async function tickLiteralFeedback(options: { keep: boolean; worker: boolean }): Promise<string[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-tick-'));
  const out = path.join(dir, 'stdout');
  const fd = openSync(out, 'w');
  try {
    const child = spawn(process.execPath, ['--allow-natives-syntax', '--expose-gc', PROBE], {
      env: { PATH: process.env.PATH, KEEP: options.keep ? '1' : '0', IN_WORKER: options.worker ? '1' : '0' },
      stdio: ['ignore', fd, 'inherit'],
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    const printout = readFileSync(out, 'utf8');
    return [...printout.matchAll(/slot #\d+ DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]!);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('tick objects keep their class (bin/tick-shape.js)', () => {
  for (const worker of [false, true]) {
    const thread = worker ? 'a worker thread' : 'the main thread';
    it(`on ${thread}, an idle full collection leaves nextTick's literal monomorphic`, async () => {
      // Without it, the keys after the first go megamorphic: what the module is for (if this ever
      // stops happening, Node no longer needs it).
      const without = await tickLiteralFeedback({ keep: false, worker });
      expect(without).toHaveLength(4);
      expect(without).toContain('MEGAMORPHIC');

      const kept = await tickLiteralFeedback({ keep: true, worker });
      expect(kept).toEqual(['MONOMORPHIC', 'MONOMORPHIC', 'MONOMORPHIC', 'MONOMORPHIC']);
    });
  }
});
