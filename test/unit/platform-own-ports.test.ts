import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { choosePort } from '../../src/db/embedded-settings.ts';
import { freePort } from '../../src/db/embedded.ts';
import { freeLoopbackPort } from '../../src/compute/process/ports.ts';
import { platformPorts } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';

/**
 * The embedded database starts before the platform binds its own HTTP port,
 * so that port is free at the moment the database picks one. A pick that
 * lands on it (the operating system hands out any free port) must be refused,
 * or `aiqso up` fails with "port … is in use" against its own database. The
 * same holds for a process container's port, picked while the platform may
 * be down (a container keeps its port for good).
 */
let dataDir: string;
let lines: string[];
const logger = () =>
  createLogger(
    'info',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-pg-port-'));
  lines = [];
});
afterEach(() => rm(dataDir, { recursive: true, force: true }));

/** A picker that offers the given ports first, then real free ones. */
function offering(...ports: number[]): () => Promise<number> {
  const queue = [...ports];
  return () => Promise.resolve(queue.shift() ?? freePort());
}

describe('the embedded database port', () => {
  it("never takes one of the platform's own ports, even when it is offered as free", async () => {
    const own = await freePort();
    const port = await choosePort(dataDir, ['127.0.0.1'], offering(own, own), logger(), [own]);
    expect(port).not.toBe(own);
    expect(Number((await readFile(path.join(dataDir, 'pg-port'), 'utf8')).trim())).toBe(port);
  });

  it('takes an offered port when nothing asks it to avoid that one (the control)', async () => {
    const offered = await freePort();
    const port = await choosePort(dataDir, ['127.0.0.1'], offering(offered), logger());
    expect(port).toBe(offered);
  });

  it("moves off a recorded port that has become one of the platform's own, and says so", async () => {
    const own = await freePort();
    await writeFile(path.join(dataDir, 'pg-port'), `${own}\n`);
    const port = await choosePort(dataDir, ['127.0.0.1'], offering(), logger(), [own]);
    expect(port).not.toBe(own);
    expect(lines.join('')).toMatch(/one of the platform's own listening ports/);
  });
});

describe("a process container's port", () => {
  it("is never one of the platform's own ports or another container's, even when offered as free", async () => {
    const [own, other] = [await freePort(), await freePort()];
    expect(await freeLoopbackPort(new Set([own, other]), offering(own, other, own))).not.toBeOneOf([
      own,
      other,
    ]);
  });

  it('takes an offered port that nothing else has (the control)', async () => {
    const offered = await freePort();
    expect(await freeLoopbackPort(new Set(), offering(offered))).toBe(offered);
  });

  it("the platform's own ports are its HTTP port and, when set, its HTTPS port", () => {
    const http = { bind: '127.0.0.1', port: 8080 };
    expect(platformPorts({ http })).toEqual([8080]);
    expect(platformPorts({ http, https: { port: 8443, certFile: 'tls.crt', keyFile: 'tls.key' } })).toEqual([
      8080, 8443,
    ]);
  });
});
