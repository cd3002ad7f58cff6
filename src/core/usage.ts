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
