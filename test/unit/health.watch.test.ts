import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freeLoopbackPort } from '../../src/compute/process/ports.ts';
import { whenAnswering } from '../../src/health/watch.ts';

const servers: http.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server on `port` that answers /healthz with each of `statuses` in turn, then 200. */
function serve(port: number, statuses: number[]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/healthz' ? (statuses.shift() ?? 200) : 404).end();
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

describe('watching a workload come up', () => {
  it('waits through refused connects and answers other than 200, then says it answers', async () => {
    const port = await freeLoopbackPort(new Set());
    const watched = whenAnswering({ host: '127.0.0.1', port }, '/healthz', AbortSignal.timeout(10_000));
    // Nothing listens yet; then a server that answers 503 twice.
    await new Promise((r) => setTimeout(r, 150));
    const server = await serve(port, [503, 503]);
    expect(await watched).toBe(true);
    expect((server.address() as AddressInfo).port).toBe(port);
  });

  it('waits for the status a template expects when it is not 200', async () => {
    const port = await freeLoopbackPort(new Set());
    await serve(port, [200, 200, 204]);
    expect(
      await whenAnswering({ host: '127.0.0.1', port }, '/healthz', AbortSignal.timeout(10_000), 204),
    ).toBe(true);
  });

  it('gives up, saying no, when its signal aborts first', async () => {
    const port = await freeLoopbackPort(new Set());
    await serve(port, Array<number>(1000).fill(500));
    const controller = new AbortController();
    const watched = whenAnswering({ host: '127.0.0.1', port }, '/healthz', controller.signal);
    setTimeout(() => controller.abort(), 300);
    expect(await watched).toBe(false);
  });
});
