import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createEdgeMetrics, OutcomeHistogram, type RouteTally } from '../../src/edge/edge-metrics.ts';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];
const NAME = 'aiqso_edge_request_duration_seconds';

describe('edge metrics', () => {
  it('exposes request durations exactly as a prom-client histogram given the same observations would', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const histogram = new OutcomeHistogram(NAME, 'Edge request duration by outcome', BUCKETS, ours);
    const reference = new Histogram({
      name: NAME,
      help: 'Edge request duration by outcome',
      labelNames: ['outcome'],
      buckets: BUCKETS,
      registers: [theirs],
    });
    // Values on bucket bounds (le is inclusive), between them, below the first and above the last.
    const observations: [string, number][] = [
      ['proxied', 0.0001],
      ['proxied', 0.0005],
      ['proxied', 0.0007],
      ['proxied', 0.001],
      ['proxied', 0.3],
      ['proxied', 7],
      ['refused', 0.002],
      ['refused', 0.002],
      ['platform', 5],
    ];
    for (const [outcome, v] of observations) {
      histogram.series(outcome).observe(v);
      reference.labels({ outcome }).observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain(`${NAME}_bucket{le="0.0005",outcome="proxied"} 2\n`);
    expect(await ours.metrics()).toContain(`${NAME}_bucket{le="+Inf",outcome="proxied"} 6\n`);

    // A reset starts every series' counts again, as prom-client's does.
    ours.resetMetrics();
    theirs.resetMetrics();
    histogram.series('refused').observe(0.04);
    reference.labels({ outcome: 'refused' }).observe(0.04);
    expect(await ours.metrics()).toContain(`${NAME}_count{outcome="refused"} 1\n`);
    expect(await ours.metrics()).toContain(`${NAME}_count{outcome="proxied"} 0\n`);
  });

  it('is made once per registry, with the histogram registered beside the counters', async () => {
    const registry = new Registry();
    const metrics = createEdgeMetrics(registry);
    expect(createEdgeMetrics(registry)).toBe(metrics);
    metrics.duration.series('proxied').observe(0.003);
    metrics.countRequest({ id: 'rte_a', tenantId: 'ten_a' }, 204);
    const text = await registry.metrics();
    expect(text).toContain(`# TYPE ${NAME} histogram\n`);
    expect(text).toContain(`${NAME}_bucket{le="0.005",outcome="proxied"} 1\n`);
    expect(text).toContain(`${NAME}_bucket{le="0.0025",outcome="proxied"} 0\n`);
    expect(text).toContain('aiqso_edge_requests_total{route="rte_a",tenant="ten_a",status="2xx"} 1\n');
  });

  it('counts a route in the tally it keeps, across scrapes and reloads of the route', async () => {
    const registry = new Registry();
    const metrics = createEdgeMetrics(registry);
    const line = (status: string) =>
      `aiqso_edge_requests_total{route="rte_a",tenant="ten_a",status="${status}"}`;
    const count = async (status: string) =>
      Number(
        new RegExp(`${line(status).replace(/[{}]/g, '\\$&')} (\\d+)`).exec(await registry.metrics())?.[1] ??
          0,
      );
    type Route = { id: string; tenantId: string; tally?: RouteTally };
    const first: Route = { id: 'rte_a', tenantId: 'ten_a' };
    for (let i = 0; i < 3; i++) metrics.countRequest(first, 200);
    metrics.countRequest(first, 404);
    metrics.countRequest(first, 99); // no status class: not counted
    expect(await count('2xx')).toBe(3);
    expect(await count('4xx')).toBe(1);

    // The same route reloaded (a new object, same id) adds to the same series, as does the old
    // object for a request that was in flight across the reload.
    const reloaded: Route = { id: 'rte_a', tenantId: 'ten_a' };
    metrics.countRequest(reloaded, 201);
    metrics.countRequest(first, 200);
    expect(await count('2xx')).toBe(5);

    // A scrape with no requests since the one before takes the tally off the list; the route's
    // next request puts it back, and nothing counted is lost.
    expect(await count('2xx')).toBe(5);
    expect(reloaded.tally?.listed).toBe(false);
    expect(first.tally).toBe(reloaded.tally);
    metrics.countRequest(reloaded, 500);
    metrics.countRequest(first, 204);
    expect(await count('2xx')).toBe(6);
    expect(await count('5xx')).toBe(1);
  });
});
