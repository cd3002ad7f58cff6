import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** libpq settings for a URL, with the password in the environment rather than argv. */
export function libpqEnv(url: string): { args: string[]; env: NodeJS.ProcessEnv } {
  const u = new URL(url);
  return {
    args: ['--host', u.hostname, '--port', u.port || '5432', '--username', decodeURIComponent(u.username)],
    env: {
      PGPASSWORD: decodeURIComponent(u.password),
      PGDATABASE: decodeURIComponent(u.pathname.slice(1)),
      PATH: '/usr/bin:/bin',
    },
  };
}

/**
 * The committed shape of the schema: `pg_dump --schema-only` of the public
 * schema, without comments, ownership or version-specific settings, so two
 * servers of one major version give the same text.
 */
export async function dumpSchema(url: string): Promise<string> {
  const { args, env } = libpqEnv(url);
  const { stdout } = await run(
    'pg_dump',
    [...args, '--schema-only', '--no-owner', '--no-privileges', '--schema=public', '--no-comments'],
    { env, maxBuffer: 64 * 1024 * 1024 },
  );
  return normaliseDump(stdout);
}

export function normaliseDump(dump: string): string {
  return (
    dump
      .split('\n')
      .filter(
        (line) =>
          !line.startsWith('--') && !/^SET |^SELECT pg_catalog\.set_config|^\\(un)?restrict /.test(line),
      )
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trim() + '\n'
  );
}
