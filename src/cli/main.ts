import { Command } from 'commander';
import { VERSION } from '../version.ts';
import { runDoctor } from './commands/doctor.ts';
import { identityCommands } from './commands/identity.ts';
import { tenantsCancel, tenantsList, tenantsPurge, tenantsShow } from './commands/tenants.ts';
import { up } from './commands/up.ts';
import { edge } from './commands/edge.ts';
import { jobs, worker } from './commands/worker.ts';
import { commandContext, withDatabase } from './context.ts';
import { EXIT, exitCodeFor, messageFor } from './exit.ts';
import { printJson, printTable } from './output.ts';
import { migrate } from '../db/migrate.ts';

/** Run a command body; any error becomes one line on stderr and a meaningful exit code. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<unknown>) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.stderr.write(`${messageFor(err)}\n`);
      process.exit(exitCodeFor(err));
    }
  };
}

export function buildProgram(): Command {
  const program = new Command('aiqso')
    .description('AIQSO: a control plane for running a multi-tenant SaaS on your own hardware.')
    .version(VERSION)
    .showHelpAfterError()
    .addHelpText(
      'after',
      '\nConfiguration comes from the environment and ./aiqso.config.yaml; see the README for every variable.',
    );

  program
    .command('up')
    .description(
      'run the whole platform in this process (API and portals); embedded PostgreSQL unless DATABASE_URL is set',
    )
    .action(
      action(async () => {
        await up(commandContext());
      }),
    );

  program
    .command('edge')
    .description(
      'run only the edge (routing to tenants, plus the API on the base domain); several may run against one database',
    )
    .action(action(() => edge(commandContext())));

  program
    .command('worker')
    .description(
      'run orchestrator workers alone (reconciles, resyncs, outbox, schedules); any number may share one database',
    )
    .action(action(() => worker(commandContext())));

  program
    .command('jobs')
    .description('list queued, running and failed work: jobs, failed resources, undelivered side effects')
    .option('--json', 'print as JSON')
    .action(action((options: { json?: boolean }) => jobs(commandContext({ quiet: true }), options)));

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .option('--json', 'print the applied migrations as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const ctx = commandContext({ quiet: true });
        const applied = await withDatabase(ctx, async ({ pool }) => migrate(pool));
        if (options.json) return printJson({ applied });
        process.stdout.write(
          applied.length ? `Applied: ${applied.join(', ')}\n` : 'Database is up to date.\n',
        );
      }),
    );

  program
    .command('doctor')
    .description(
      'check each configured part (PostgreSQL, pg_dump, lxc, nginx, Redis, Stripe, SMTP) and say how to fix what is missing',
    )
    .option('--json', 'print the checks as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const ctx = commandContext({ quiet: true });
        const checks = await runDoctor(ctx.config);
        if (options.json) printJson(checks);
        else printTable(checks as unknown as Record<string, unknown>[], ['part', 'status', 'detail', 'fix']);
        const bad = checks.some((c) => c.status === 'missing' || c.status === 'failed');
        if (bad) process.exitCode = EXIT.failure;
      }),
    );

  const tenants = program
    .command('tenants')
    .description('inspect, cancel and purge tenants')
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 the platform failed, 2 bad usage or a refused transition (e.g. purging a tenant that is not cancelled), 3 no such tenant.',
    );
  tenants
    .command('list')
    .description('list tenants with their status')
    .option('--status <status>', 'only tenants in this status')
    .option('--json', 'print as JSON')
    .action(
      action((options: { json?: boolean; status?: string }) =>
        tenantsList(commandContext({ quiet: true }), options),
      ),
    );
  tenants
    .command('show <slug>')
    .description('show a tenant (by slug or id): status, services and every provisioning step')
    .option('--json', 'print as JSON')
    .action(
      action((slug: string, options: { json?: boolean }) =>
        tenantsShow(commandContext({ quiet: true }), slug, options),
      ),
    );

  identityCommands(program, action);

  tenants
    .command('cancel <slug>')
    .description(
      'cancel a tenant (by slug or id) as a Stripe subscription deletion would: routes suspended at once, purge after AIQSO_GRACE_DAYS; Stripe is not called',
    )
    .option('--json', 'print as JSON')
    .action(
      action((slug: string, options: { json?: boolean }) =>
        tenantsCancel(commandContext({ quiet: true }), slug, options),
      ),
    );
  tenants
    .command('purge <slug>')
    .description(
      'purge a cancelled tenant now that its grace period is over: containers, routes and stored data',
    )
    .option('--now', 'purge before the grace period ends')
    .option('--json', 'print as JSON')
    .action(
      action((slug: string, options: { now?: boolean; json?: boolean }) =>
        tenantsPurge(commandContext({ quiet: true }), slug, options),
      ),
    );

  return program;
}

await buildProgram().parseAsync(process.argv);
