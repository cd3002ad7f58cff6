import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createEdgeMetrics, OutcomeHistogram } from '../src/edge/edge-metrics.ts';

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
});
