import { describe, expect, it } from 'vitest';
import { capacityRefusal, type HostUsage } from '../../src/core/services.ts';
import { DASHBOARD_CLAIM, DASHBOARD_DISK_REQUEST_MB } from '../../src/services/hosts.ts';

/**
 * Disk has a request and a limit apart, like memory: a dashboard is counted for
 * what it was measured to use (a few MB of overlay), not its 1 GB limit, which
 * stopped a 252 GB host at 251 tenants. A claim without a disk request is
 * counted in full.
 */
const host = { name: 'h', memory_mb: 1_000_000, disk_gb: 10, cores: 8, max_containers: null };

describe('disk requests', () => {
  it('place dashboards by their measured disk, not their limit', () => {
    let used: HostUsage = { memory_mb: 0, disk_gb: 0, containers: 0 };
    let placed = 0;
    while (capacityRefusal(host, used, DASHBOARD_CLAIM, 'the dashboard') === null) {
      used = {
        memory_mb: used.memory_mb + 32,
        disk_gb: used.disk_gb + DASHBOARD_DISK_REQUEST_MB / 1024,
        containers: used.containers + 1,
      };
      placed++;
    }
    expect(placed).toBe((10 * 1024) / DASHBOARD_DISK_REQUEST_MB);
    expect(capacityRefusal(host, used, DASHBOARD_CLAIM, 'the dashboard')).toBe(
      `host h has 0 GB of disk free; the dashboard needs ${DASHBOARD_DISK_REQUEST_MB} MB`,
    );
  });

  it('count a claim without a disk request in full', () => {
    const used: HostUsage = { memory_mb: 0, disk_gb: 8.5, containers: 3 };
    const service = { memory_mb: 128, cores: 1, disk_gb: 2 };
    expect(capacityRefusal(host, used, service, 'notes')).toBe(
      'host h has 1 GB of disk free; notes needs 2 GB',
    );
    expect(capacityRefusal(host, used, { ...service, request_disk_mb: 512 }, 'notes')).toBeNull();
  });
});
