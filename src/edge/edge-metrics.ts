import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * Edge metrics. Requests are counted per route (id) and status class; a
 * series appears only once a route has traffic. Durations are a histogram
 * per outcome (proxied, platform, refused) rather than per route, so 50,000
 * routes do not make 500,000 histogram series.
 */
export interface EdgeMetrics {
  requests: Counter<'route' | 'tenant' | 'status'>;
  /**
   * Count one request of a route: kept in a plain number and added to
   * `requests` when the registry is scraped (a labelled `inc` hashes its
   * labels on every call).
   */
  countRequest(route: { id: string; tenantId: string | null }, status: number): void;
  duration: Histogram<'outcome'>;
  routes: Gauge;
  reloads: Counter<'kind'>;
  nginxApply: Counter<'result'>;
}

const edgeMetricsCache = new WeakMap<Registry, EdgeMetrics>();

export function createEdgeMetrics(registry: Registry): EdgeMetrics {
  const cached = edgeMetricsCache.get(registry);
  if (cached) return cached;
  // Since the last scrape: route id → tenant and counts by status class (index 1..5). An entry
  // is zeroed when scraped and kept while its route has traffic, so a busy edge does not make
  // (and promote to the old generation) an entry per route per scrape; one idle for a whole
  // scrape interval is dropped.
  const pending = new Map<string, { tenant: string; byClass: number[] }>();
  const metrics: EdgeMetrics = {
    requests: new Counter({
      name: 'aiqso_edge_requests_total',
      help: 'Requests through the edge by route id, tenant and status class',
      labelNames: ['route', 'tenant', 'status'],
      registers: [registry],
      collect() {
        for (const [route, { tenant, byClass }] of pending) {
          let idle = true;
          byClass.forEach((n, cls) => {
            if (n === 0) return;
            idle = false;
            this.labels({ route, tenant, status: `${cls}xx` }).inc(n);
            byClass[cls] = 0;
          });
          if (idle) pending.delete(route);
        }
      },
    }),
    countRequest(route, status) {
      let entry = pending.get(route.id);
      if (!entry)
        pending.set(route.id, (entry = { tenant: route.tenantId ?? '', byClass: [0, 0, 0, 0, 0, 0] }));
      const cls = Math.floor(status / 100);
      if (cls >= 1 && cls <= 5) entry.byClass[cls]!++;
    },
    duration: new Histogram({
      name: 'aiqso_edge_request_duration_seconds',
      help: 'Edge request duration by outcome',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: [registry],
    }),
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
