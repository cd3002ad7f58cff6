import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeAll, type HealthTarget } from '../../src/health/monitor.ts';

/**
 * A round's probes all listen on the monitor's one abort signal; a round of
 * many targets is normal, not a listener leak, and must not print Node's
 * MaxListenersExceededWarning into the platform's log.
 */
let server: http.Server;
let port: number;
beforeAll(async () => {
  // Answers after a moment, so that every probe of the round is in flight at once.
  server = http.createServer((_req, res) => setTimeout(() => res.end('ok'), 50));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const target = (i: number): HealthTarget => ({
  targetId: `t${i}`,
  kind: 'dashboard',
  tenantId: `ten_${i}`,
  slug: `s${i}`,
  name: 'dashboard',
  containerName: `c${i}`,
  upstream: { host: '127.0.0.1', port },
  path: '/healthz',
  expect: 200,
  resource: { kind: 'tenant', id: `ten_${i}` },
  busy: false,
});

describe('a health round', () => {
  it('probes 60 targets at once on one abort signal without a listener warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const abort = new AbortController();
      const results = await probeAll(
        { timeoutSeconds: 5 },
        Array.from({ length: 60 }, (_, i) => target(i)),
        abort.signal,
      );
      expect(results.every((r) => r.ok)).toBe(true);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
  });
});
