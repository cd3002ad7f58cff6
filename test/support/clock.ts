/**
 * A time zone in which it is about noon now. A platform a test runs for many minutes (`aiqso up` killed
 * and restarted, or a live platform under a benchmark) keeps its real schedules; read in this zone,
 * the daily ones (backups 02:00, retention 03:30, purge 04:00, verify 05:00 on Sundays) are at least
 * twelve hours away, so none fires into what the test counts — a suite run across 02:00 UTC saw the
 * nightly backup add two snapshots to a kill test's repository. Tests of the schedules themselves set
 * their own zone and clock.
 */
export function middayZone(now = new Date()): string {
  // Etc/GMT-N is UTC+N (POSIX signs); the zones run from Etc/GMT-14 to Etc/GMT+12.
  const hoursAhead = 12 - now.getUTCHours(); // 12 … -11
  if (hoursAhead === 0) return 'UTC';
  return `Etc/GMT${hoursAhead > 0 ? '-' : '+'}${Math.abs(hoursAhead)}`;
}
