/**
 * The usage metrics and how each adds up. A counter (CPU seconds, bytes
 * sent, requests) is what happened in the hour: hours add up by summing. A
 * gauge (memory, disk, database size) is a sample taken at the end of the
 * hour: hours add up by averaging, so a month's `disk_bytes` is the size held
 * on average over it.
 */
export const COUNTERS = [
  'cpu_seconds',
  'net_rx_bytes',
  'net_tx_bytes',
  'requests',
  'response_bytes',
  'mails_sent',
] as const;
export const GAUGES = ['memory_bytes', 'disk_bytes', 'db_bytes'] as const;
export const METRICS = [...COUNTERS, ...GAUGES] as const;
export type Metric = (typeof METRICS)[number];

export const isGauge = (metric: string): boolean => (GAUGES as readonly string[]).includes(metric);

export const HOUR_MS = 3_600_000;

/** The start of the UTC hour `t` falls in. */
export const hourOf = (t: Date): Date => new Date(Math.floor(t.getTime() / HOUR_MS) * HOUR_MS);

export const addHours = (t: Date, hours: number): Date => new Date(t.getTime() + hours * HOUR_MS);
