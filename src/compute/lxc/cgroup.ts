import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ResourceLimits } from '../../core/compute.ts';

/** Which cgroup hierarchy this host runs (v1 or v2). */
export const CGROUP: 'v1' | 'v2' = existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1';

/** A reader of the files of the cgroups the process `pid` is in, by controller ('' on v2). */
async function cgroupReader(pid: number) {
  const groups = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  return async (controller: string, file: string) => {
    const line = groups
      .split('\n')
      .find(
        (l) => l.split(':')[1]?.split(',').includes(controller) || (controller === '' && l.startsWith('0::')),
      );
    const rel = line?.split(':').slice(2).join(':');
    if (rel === undefined) return undefined;
    const dir = controller ? `/sys/fs/cgroup/${controller}${rel}` : `/sys/fs/cgroup${rel}`;
    return readFile(path.join(dir, file), 'utf8').then(
      (t) => t.trim(),
      () => undefined,
    );
  };
}

/** A container's init process as last seen: its pid and its start time (which a reused pid would not share). */
export interface InitProcess {
  pid: number;
  started: string;
}

/**
 * When the process `pid` started (clock ticks after boot, field 22 of /proc/<pid>/stat), or undefined
 * when it is gone or a zombie.
 */
export async function processStart(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The command name (field 2) is in parentheses and may hold spaces; fields from the state (3) on follow it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields.length < 20 || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

/** True when `init` is still the same live process, in a cgroup of the container `name`. */
export async function stillRunning(init: InitProcess, name: string): Promise<boolean> {
  return (await processStart(init.pid)) === init.started && (await inContainerCgroup(init.pid, name));
}

/** True when the process `pid` still runs in a cgroup of the container `name` (a cached init pid is still its). */
export async function inContainerCgroup(pid: number, name: string): Promise<boolean> {
  const groups = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  return groups.split('\n').some((line) => {
    const parts = line.split(':').slice(2).join(':').split('/');
    return parts.includes(name) || parts.includes(`lxc.payload.${name}`);
  });
}

/**
 * Memory use now and its peak since the cgroup was made, from the cgroup of the container's init:
 * v2 `memory.current` and `memory.peak` (kernel 5.19 and later), v1 `memory.usage_in_bytes` and
 * `memory.max_usage_in_bytes`. A file the kernel does not offer is left out.
 */
export async function cgroupMemory(pid: number): Promise<{ bytes?: number; peakBytes?: number }> {
  const read = await cgroupReader(pid);
  const [now, peak] =
    CGROUP === 'v1'
      ? await Promise.all([
          read('memory', 'memory.usage_in_bytes'),
          read('memory', 'memory.max_usage_in_bytes'),
        ])
      : await Promise.all([read('', 'memory.current'), read('', 'memory.peak')]);
  const num = (t: string | undefined) => (t !== undefined && /^\d+$/.test(t) ? Number(t) : undefined);
  const bytes = num(now);
  const peakBytes = num(peak);
  return { ...(bytes !== undefined ? { bytes } : {}), ...(peakBytes !== undefined ? { peakBytes } : {}) };
}

/** The limits in force, read from the cgroup files of the container's init (no lxc-* spawn). */
export async function observedLimits(pid: number): Promise<Partial<ResourceLimits> | undefined> {
  const read = await cgroupReader(pid);
  if (CGROUP === 'v1') {
    const bytes = Number(await read('memory', 'memory.limit_in_bytes'));
    const quota = Number(await read('cpu', 'cpu.cfs_quota_us'));
    const period = Number(await read('cpu', 'cpu.cfs_period_us'));
    if (!bytes) return undefined;
    return { memoryMb: bytes / 2 ** 20, ...(quota > 0 && period ? { cores: quota / period } : {}) };
  }
  const bytes = Number(await read('', 'memory.max'));
  const [quota, period] = ((await read('', 'cpu.max')) ?? '').split(' ').map(Number);
  if (!bytes) return undefined;
  return { memoryMb: bytes / 2 ** 20, ...(quota && period ? { cores: quota / period } : {}) };
}
