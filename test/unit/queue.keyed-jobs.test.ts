import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * `removeSupersededJobs` (src/orchestrator/queue.ts) deletes unkeyed jobs that
 * are out of attempts without an error, on the ground that every job the
 * platform queues itself carries a key and only the schedules' cron jobs come
 * without one. This holds every `add_job`/`add_jobs` call in src to that: a
 * new unkeyed job would otherwise be deleted as superseded after a crash
 * instead of being listed as failed.
 */
const SRC = path.resolve(import.meta.dirname, '../../src');

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Each call's text from `add_job(`/`add_jobs(` to the `.execute(` that runs its SQL template. */
function queueCalls(text: string): string[] {
  const calls: string[] = [];
  const pattern = /graphile_worker\.add_jobs?\(/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const end = text.indexOf('.execute(', match.index);
    calls.push(text.slice(match.index, end === -1 ? undefined : end));
  }
  return calls;
}

describe('jobs the platform queues', () => {
  it('all carry a job key, so a keyless job out of attempts can only be a superseded one', async () => {
    const unkeyed: string[] = [];
    let calls = 0;
    for (const file of await sourceFiles(SRC)) {
      for (const call of queueCalls(await readFile(file, 'utf8'))) {
        calls += 1;
        // add_job names it `job_key => …`; add_jobs takes job_spec rows whose sixth field is the key.
        const keyed = call.startsWith('graphile_worker.add_jobs(')
          ? /job_spec/.test(call) && /'[a-z-]+:'\s*\|\|/.test(call)
          : /job_key\s*=>/.test(call);
        if (!keyed) unkeyed.push(`${path.relative(SRC, file)}: ${call.split('\n')[0]}`);
      }
    }
    expect(calls).toBeGreaterThanOrEqual(8);
    expect(unkeyed).toEqual([]);
  });

  it('finds an unkeyed call when there is one', () => {
    const calls = queueCalls("await sql`SELECT graphile_worker.add_job('x', '{}'::json, max_attempts => 1)`");
    expect(calls).toHaveLength(1);
    expect(/job_key\s*=>/.test(calls[0]!)).toBe(false);
  });
});
