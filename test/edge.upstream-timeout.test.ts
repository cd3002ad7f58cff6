import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertTenant, startTestEdge, type TestEdge } from './support/edge.ts';
import { rawGet, readSlowly } from './support/upstreams.ts';

/** An upstream that reads requests and answers each with `reply` (or nothing), then holds the connection open. */
async function stuckUpstream(reply: string) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('data', () => socket.write(reply));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An upstream that answers every request at once with `size` bytes. */
async function bulkUpstream(size: number) {
  const body = Buffer.alloc(size, 'y');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(size) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An upstream whose answer comes one byte every 300 ms: slower in all than the timeout, never quiet for it. */
async function tricklingUpstream(text: string) {
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${text.length}\r\n\r\n`);
      let i = 0;
      const timer = setInterval(() => {
        if (socket.destroyed) return clearInterval(timer);
        socket.write(text[i++]!);
        if (i === text.length) clearInterval(timer);
      }, 300);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let database: TestDatabase;
let edge: TestEdge;
let silent: Awaited<ReturnType<typeof stuckUpstream>>;
let stalling: Awaited<ReturnType<typeof stuckUpstream>>;
let bulk: Awaited<ReturnType<typeof bulkUpstream>>;
let trickle: Awaited<ReturnType<typeof tricklingUpstream>>;

beforeAll(async () => {
  database = await createTestDatabase();
  silent = await stuckUpstream('');
  stalling = await stuckUpstream('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst ten.');
  bulk = await bulkUpstream(8 * 1024 * 1024);
  trickle = await tricklingUpstream('slowly');
  const tenant = await insertTenant(database.db, 'slowco');
  const routes: [string, number][] = [
    ['', silent.port],
    ['/stream', stalling.port],
    ['/bulk', bulk.port],
    ['/trickle', trickle.port],
  ];
  for (const [pathPrefix, port] of routes) {
    await upsertRoute(database.db, {
      hostname: 'slowco.localhost',
      pathPrefix,
      auth: 'app',
      tenantId: tenant,
      upstream: { host: '127.0.0.1', port },
    });
  }
  edge = await startTestEdge(database, { env: { AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS: '1' } });
});

afterAll(async () => {
  await edge?.close();
  await silent?.close();
  await stalling?.close();
  await bulk?.close();
  await trickle?.close();
  await database?.drop();
});

describe('builtin edge upstream timeout (AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS)', () => {
  it('answers 504 when an upstream accepts a request and never answers', async () => {
    const started = performance.now();
    const res = await rawGet(edge.port, '/', 'slowco.localhost');
    expect(res.status).toBe(504);
    expect(res.body).toMatch(/took too long|timed out|timeout/i);
    // It waited for the configured second, not failing at once.
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('cuts an answer whose upstream stops sending half way, rather than hanging', async () => {
    const res = await rawGet(edge.port, '/stream/x', 'slowco.localhost');
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('100');
    expect(res.body).toBe('first ten.'); // what came, and the connection closed short of 100 bytes
  });

  it('lets an answer that keeps coming take longer than the timeout in all', async () => {
    const res = await rawGet(edge.port, '/trickle/x', 'slowco.localhost');
    expect(res.status).toBe(200);
    expect(res.body).toBe('slowly'); // 6 bytes over about 1.8 s, with a 1 s timeout
  });

  it('does not count a client that reads slowly against the upstream', async () => {
    // The upstream has sent everything at once; the client stops reading for longer than the timeout.
    const received = await readSlowly(edge.port, '/bulk/x', 'slowco.localhost', 2500);
    expect(received).toBeGreaterThan(8 * 1024 * 1024); // the whole body, plus the head
    expect(received).toBeLessThan(8 * 1024 * 1024 + 1024);
  });

  it('refuses a timeout that is not a whole number of seconds from 1 to 3600', async () => {
    for (const bad of ['0', '1.5', 'soon', '3601']) {
      await expect(
        startTestEdge(database, { env: { AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS: bad } }),
      ).rejects.toThrow(/AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS/);
    }
  });
});
