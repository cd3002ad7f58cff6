import { readFile } from 'node:fs/promises';

/** Readers of /proc for one pid. Linux only, like the rest of the platform's drivers. */

const CLOCK_TICKS = 100; // USER_HZ on every Linux architecture Node supports.

async function statFields(pid: number): Promise<string[] | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Start time in clock ticks since boot, or undefined when the pid is gone or a zombie. */
export async function startTime(pid: number): Promise<number | undefined> {
  const fields = await statFields(pid);
  if (!fields || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return Number(fields[19]);
}

/** True when `pid` is alive and is still the process we started (not a reused pid). */
export async function isSameProcess(pid: number | undefined, start: number | undefined): Promise<boolean> {
  if (!pid || start === undefined) return false;
  return (await startTime(pid)) === start;
}

export async function cpuSeconds(pid: number): Promise<number> {
  const f = await statFields(pid);
  if (!f) return 0;
  // utime, stime, cutime, cstime (fields 14-17): children count too.
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLOCK_TICKS;
}

export async function rssBytes(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Resident memory now (VmRSS) and the highest it has been since the process started (VmHWM), in bytes. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return { rss: kb('VmRSS') * 1024, peak: kb('VmHWM') * 1024 };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

export async function cmdline(pid: number): Promise<string[]> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
  } catch {
    return [];
  }
}
