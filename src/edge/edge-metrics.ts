import { Counter, Gauge, type Metric, type Registry } from 'prom-client';

/**
 * Edge metrics. Requests are counted per route (id) and status class; a
 * series appears only once a route has traffic. Durations are a histogram
 * per outcome (proxied, platform, refused) rather than per route, so 50,000
 * routes do not make 500,000 histogram series.
 */
export interface EdgeMetrics {
  requests: Counter<'route' | 'tenant' | 'status'>;
  /**
   * Count one request of a route: kept in the route's tally, a plain number
   * per status class, and added to `requests` when the registry is scraped
   * (a labelled `inc` hashes its labels on every call).
   */
  countRequest(route: { id: string; tenantId: string | null; tally?: RouteTally }, status: number): void;
  /** Request durations by outcome: `duration.series('proxied').observe(seconds)`. */
  duration: OutcomeHistogram;
  routes: Gauge;
  reloads: Counter<'kind'>;
  nginxApply: Counter<'result'>;
}

/** One route's requests since the last scrape, by status class (index 1..5). */
export interface RouteTally {
  readonly route: string;
  readonly tenant: string;
  readonly byClass: number[];
  /** In the list the next scrape reads. */
  listed: boolean;
}

const newTally = (route: { id: string; tenantId: string | null }): RouteTally => ({
  route: route.id,
  tenant: route.tenantId ?? '',
  byClass: [0, 0, 0, 0, 0, 0],
  listed: false,
});

const edgeMetricsCache = new WeakMap<Registry, EdgeMetrics>();

export function createEdgeMetrics(registry: Registry): EdgeMetrics {
  const cached = edgeMetricsCache.get(registry);
  if (cached) return cached;
  // The tallies with requests since the last scrape, by route id. A route keeps its tally
  // (`EdgeRoute.tally`), so counting a request looks nothing up: a map by route id, looked up per
  // request, cost about 1% of the edge's CPU under load with 50,000 routes (its table is larger than
  // the CPU's caches). A route reloaded from the database is a new object with the same id: it finds
  // its tally here. A tally is zeroed when scraped and kept while its route has traffic, so a busy
  // edge does not make (and promote to the old generation) one per route per scrape; one idle for a
  // whole scrape interval leaves the list, and its route puts it back at its next request.
  const listed = new Map<string, RouteTally>();
  const metrics: EdgeMetrics = {
    requests: new Counter({
      name: 'aiqso_edge_requests_total',
      help: 'Requests through the edge by route id, tenant and status class',
      labelNames: ['route', 'tenant', 'status'],
      registers: [registry],
      collect() {
        for (const [id, t] of listed) {
          let idle = true;
          for (let cls = 1; cls <= 5; cls++) {
            const n = t.byClass[cls]!;
            if (n === 0) continue;
            idle = false;
            this.labels({ route: t.route, tenant: t.tenant, status: `${cls}xx` }).inc(n);
            t.byClass[cls] = 0;
          }
          if (idle) {
            t.listed = false;
            listed.delete(id);
          }
        }
      },
    }),
    countRequest(route, status) {
      const cls = Math.floor(status / 100);
      if (cls < 1 || cls > 5) return;
      let t = route.tally;
      if (t === undefined || !t.listed) {
        t = listed.get(route.id) ?? t ?? newTally(route);
        if (!t.listed) {
          t.listed = true;
          listed.set(route.id, t);
        }
        route.tally = t;
      }
      t.byClass[cls]!++;
    },
    duration: new OutcomeHistogram(
      'aiqso_edge_request_duration_seconds',
      'Edge request duration by outcome',
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registry,
    ),
    routes: new Gauge({
      name: 'aiqso_edge_routes',
      help: 'Routes in the edge table',
      registers: [registry],
    }),
    reloads: new Counter({
      name: 'aiqso_edge_route_reloads_total',
      help: 'Route table reloads (notify: one host; full: everything)',
      labelNames: ['kind'],
      registers: [registry],
    }),
    nginxApply: new Counter({
      name: 'aiqso_edge_nginx_apply_total',
      help: 'nginx configuration applies by result (applied, unchanged, invalid, failed)',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
  edgeMetricsCache.set(registry, metrics);
  return metrics;
}

/** One outcome's counts: per bucket (the last is +Inf, not cumulative), sum and count. */
export interface HistogramSeries {
  observe(seconds: number): void;
}

class Series implements HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number) {
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

/**
 * A histogram with one label (`outcome`), counted in plain arrays, read by the
 * registry like prom-client's own (same exposition: `_bucket` lines with `le`,
 * `_sum`, `_count`). Written for every request: prom-client's labelled
 * `observe` builds and hashes a label object per call, which measured as
 * the largest single part of the edge's own JavaScript under load.
 */
export class OutcomeHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly byOutcome = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of one outcome, to keep and observe into. */
  series(outcome: string): HistogramSeries {
    let s = this.byOutcome.get(outcome);
    if (!s) this.byOutcome.set(outcome, (s = new Series(this.bounds)));
    return s;
  }

  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const [outcome, s] of this.byOutcome) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { le, outcome }, value: cumulative, metricName: bucket });
      });
      values.push(
        { labels: { le: '+Inf', outcome }, value: s.count, metricName: bucket },
        { labels: { outcome }, value: s.sum, metricName: `${this.name}_sum` },
        { labels: { outcome }, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  /** Series are kept (a handler holds them); their counts start again. */
  reset() {
    for (const s of this.byOutcome.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
