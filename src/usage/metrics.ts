import { GAUGES } from '../core/usage.ts';

export { COUNTERS, GAUGES, METRICS, PEAKS, type Metric } from '../core/usage.ts';

export const isGauge = (metric: string): boolean => (GAUGES as readonly string[]).includes(metric);

export const HOUR_MS = 3_600_000;

/** The start of the UTC hour `t` falls in. */
export const hourOf = (t: Date): Date => new Date(Math.floor(t.getTime() / HOUR_MS) * HOUR_MS);

export const addHours = (t: Date, hours: number): Date => new Date(t.getTime() + hours * HOUR_MS);
