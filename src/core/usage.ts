/**
 * The usage metrics and how each adds up. A counter (CPU seconds, bytes
 * sent, requests) is what happened in the hour: hours add up by summing. A
 * gauge (memory, disk, database size) is a level over the hour: hours add up
 * by averaging, so a month's `disk_bytes` is the size held on average over
 * it. A peak (`memory_peak_bytes`) is the highest level of the hour: hours add
 * up by taking the highest.
 */
export const COUNTERS = [
  'cpu_seconds',
  'net_rx_bytes',
  'net_tx_bytes',
  'requests',
  'response_bytes',
  'mails_sent',
] as const;
export const GAUGES = ['memory_bytes', 'memory_avg_bytes', 'disk_bytes', 'db_bytes'] as const;
export const PEAKS = ['memory_peak_bytes'] as const;
export const METRICS = [...COUNTERS, ...GAUGES, ...PEAKS] as const;
export type Metric = (typeof METRICS)[number];
