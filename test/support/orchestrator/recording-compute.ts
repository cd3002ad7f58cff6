import type pg from 'pg';
import type { ComputeDriver, ContainerInfo, ContainerSpec } from '../../../src/core/compute.ts';
import { isManagedName } from '../../../src/core/compute.ts';
import { DomainError } from '../../../src/core/errors.ts';

/**
 * A compute driver whose containers live in PostgreSQL (so they survive
 * SIGKILLed workers) and which records every call that changes something in
 * `test_calls`. It keeps the port's contract like a real driver: names must be
 * managed hostname labels, `ensure` creates only what is missing and never
 * silently twice (a second concurrent create fails on the primary key, as
 * `lxc-create` would), starting a missing container is an error, stopping or
 * destroying one is a no-op. It runs no workloads.
 */
export const RECORDING_COMPUTE_SQL = `
CREATE TABLE IF NOT EXISTS test_containers (name text PRIMARY KEY, state text NOT NULL, spec jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS test_calls (
  id bigserial PRIMARY KEY, op text NOT NULL, name text NOT NULL, pid integer NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp());`;

const jitter = () => new Promise((r) => setTimeout(r, Math.floor(Math.random() * 8)));

function validate(spec: ContainerSpec): void {
  if (!isManagedName(spec.name) || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(spec.name))
    throw new DomainError(
      'validation_failed',
      `container name "${spec.name}" is not a managed hostname label`,
    );
  if (!(spec.port >= 1 && spec.port <= 65535))
    throw new DomainError('validation_failed', `bad port ${spec.port}`);
  if (spec.resources.memoryMb <= 0 || spec.resources.cores <= 0)
    throw new DomainError('validation_failed', 'resources must be positive');
}

export function recordingCompute(pool: pg.Pool): ComputeDriver {
  const log = (op: string, name: string) =>
    pool.query('INSERT INTO test_calls (op, name, pid) VALUES ($1, $2, $3)', [op, name, process.pid]);
  const row = async (name: string) =>
    (
      await pool.query<{ state: string; spec: ContainerSpec }>(
        'SELECT state, spec FROM test_containers WHERE name = $1',
        [name],
      )
    ).rows[0];
  const info = (name: string, r?: { state: string; spec: ContainerSpec }): ContainerInfo =>
    !r
      ? { name, state: 'missing' }
      : {
          name,
          state: r.state as 'running' | 'stopped',
          endpoint: r.state === 'running' ? { host: '127.0.0.1', port: r.spec.port } : undefined,
        };
  const unsupported = () =>
    Promise.reject(new DomainError('unavailable', 'the recording driver runs no workloads'));
  return {
    kind: 'process',
    async ensure(spec) {
      validate(spec);
      const found = await row(spec.name);
      await jitter();
      if (!found) {
        await pool.query('INSERT INTO test_containers (name, state, spec) VALUES ($1, $2, $3)', [
          spec.name,
          'stopped',
          spec,
        ]);
        await log('create', spec.name);
      } else if (JSON.stringify(found.spec) !== JSON.stringify(spec)) {
        await pool.query('UPDATE test_containers SET spec = $2 WHERE name = $1', [spec.name, spec]);
        await log('update', spec.name);
      }
      return info(spec.name, await row(spec.name));
    },
    async start(name) {
      const found = await row(name);
      if (!found) throw new DomainError('not_found', `container ${name} not found`);
      if (found.state !== 'running') {
        await jitter();
        await pool.query("UPDATE test_containers SET state = 'running' WHERE name = $1", [name]);
        await log('start', name);
      }
      return info(name, await row(name));
    },
    async stop(name) {
      const found = await row(name);
      if (found?.state === 'running') {
        await pool.query("UPDATE test_containers SET state = 'stopped' WHERE name = $1", [name]);
        await log('stop', name);
      }
    },
    async restart(name) {
      if (!(await row(name))) throw new DomainError('not_found', `container ${name} not found`);
      await pool.query("UPDATE test_containers SET state = 'running' WHERE name = $1", [name]);
      await log('restart', name);
      return info(name, await row(name));
    },
    async destroy(name) {
      await jitter();
      const { rowCount } = await pool.query('DELETE FROM test_containers WHERE name = $1', [name]);
      if (rowCount) await log('destroy', name);
    },
    async status(name) {
      return info(name, await row(name));
    },
    async stats(name) {
      if (!(await row(name))) throw new DomainError('not_found', `container ${name} not found`);
      return { cpuSeconds: 0, memoryBytes: 0, diskBytes: 0, netRxBytes: 0, netTxBytes: 0 };
    },
    exec: unsupported,
    exportTo: unsupported,
    importFrom: unsupported,
    hostAddress: () => Promise.resolve('127.0.0.1'),
    async list() {
      const { rows } = await pool.query<{ name: string; state: string; spec: ContainerSpec }>(
        'SELECT name, state, spec FROM test_containers ORDER BY name',
      );
      return rows.map((r) => info(r.name, r));
    },
    async close() {},
  };
}
