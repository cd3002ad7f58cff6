/**
 * Backup retention, grandfather-father-son, with restic's `forget` semantics
 * (restic docs, "Removing snapshots according to a policy"): walking the
 * snapshots newest first, `daily = n` keeps the newest snapshot of each of the
 * last n days that have a snapshot; `weekly` does the same per ISO week,
 * `monthly` per calendar month. A snapshot any rule keeps is kept. Days,
 * weeks and months are read in UTC (snapshots are dated in UTC). Pure: the
 * caller forgets what this does not keep.
 */
export interface KeepPolicy {
  daily: number;
  weekly: number;
  monthly: number;
}

export interface Dated {
  id: string;
  time: Date;
}

const day = (t: Date) => t.toISOString().slice(0, 10);
const month = (t: Date) => t.toISOString().slice(0, 7);

/** ISO 8601 week-numbering year and week, e.g. `2026-W01`. */
export function isoWeek(t: Date): string {
  const d = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
  const weekday = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/** The ids to keep, in newest-first order. */
export function selectKept<T extends Dated>(snapshots: readonly T[], policy: KeepPolicy): Set<string> {
  const sorted = [...snapshots].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
  const rules = [
    { left: policy.daily, bucket: day, last: undefined as string | undefined },
    { left: policy.weekly, bucket: isoWeek, last: undefined as string | undefined },
    { left: policy.monthly, bucket: month, last: undefined as string | undefined },
  ];
  const kept = new Set<string>();
  for (const s of sorted) {
    for (const rule of rules) {
      if (rule.left <= 0) continue;
      const b = rule.bucket(s.time);
      if (b === rule.last) continue;
      rule.last = b;
      rule.left -= 1;
      kept.add(s.id);
    }
  }
  return kept;
}
