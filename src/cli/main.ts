import { Command } from 'commander';
import { VERSION } from '../version.ts';
import { identityCommands } from './commands/identity.ts';
import { commandContext, withDatabase } from './context.ts';
import { EXIT, exitCodeFor, messageFor } from './exit.ts';
import { printJson, printTable } from './output.ts';

// Each command imports what it runs when it runs: a long-lived `aiqso edge`
// should not hold the orchestrator, compute drivers or billing in memory.
const commands = {
  backups: () => import('./commands/backups.ts'),
  certs: () => import('./commands/certs.ts'),
  doctor: () => import('./commands/doctor.ts'),
  edge: () => import('./commands/edge.ts'),
  services: () => import('./commands/services.ts'),
  status: () => import('./commands/status.ts'),
  templates: () => import('./commands/templates.ts'),
  tenants: () => import('./commands/tenants.ts'),
  up: () => import('./commands/up.ts'),
  usage: () => import('./commands/usage.ts'),
  webhooks: () => import('./commands/webhooks.ts'),
  worker: () => import('./commands/worker.ts'),
};

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
      '\nConfiguration comes from the environment and ./aiqso.config.yaml; docs/configuration.md lists every variable.',
    );

  program
    .command('up')
    .description(
      'run the whole platform in this process (API and portals); embedded PostgreSQL unless DATABASE_URL is set',
    )
    .action(
      action(async () => {
        const { up } = await commands.up();
        await up(commandContext());
      }),
    );

  program
    .command('edge')
    .description(
      'run only the edge (routing to tenants, plus the API on the base domain, or with AIQSO_EDGE_PLATFORM_URL forwarding the base domain to that platform listener); several may run against one database',
    )
    .action(action(async () => (await commands.edge()).edge(commandContext())));

  program
    .command('worker')
    .description(
      'run orchestrator workers alone (reconciles, resyncs, outbox, schedules); any number may share one database',
    )
    .action(action(async () => (await commands.worker()).worker(commandContext())));

  program
    .command('jobs')
    .description('list queued, running and failed work: jobs, failed resources, undelivered side effects')
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { json?: boolean }) =>
        (await commands.worker()).jobs(commandContext({ quiet: true }), options),
      ),
    );

  program
    .command('migrate')
    .description(
      "apply pending database migrations, close the platform's and system databases to service roles, and exit",
    )
    .option('--json', 'print the applied migrations as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const ctx = commandContext({ quiet: true });
        const { migrate } = await import('../db/migrate.ts');
        const { wallDatabases } = await import('../db/walls.ts');
        const applied = await withDatabase(ctx, async ({ pool }) => {
          const done = await migrate(pool);
          await wallDatabases(pool, ctx.log);
          return done;
        });
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
        const checks = await (await commands.doctor()).runDoctor(ctx.config);
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
      action(async (options: { json?: boolean; status?: string }) =>
        (await commands.tenants()).tenantsList(commandContext({ quiet: true }), options),
      ),
    );
  tenants
    .command('show <slug>')
    .description('show a tenant (by slug or id): status, services and every provisioning step')
    .option('--json', 'print as JSON')
    .action(
      action(async (slug: string, options: { json?: boolean }) =>
        (await commands.tenants()).tenantsShow(commandContext({ quiet: true }), slug, options),
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
      action(async (slug: string, options: { json?: boolean }) =>
        (await commands.tenants()).tenantsCancel(commandContext({ quiet: true }), slug, options),
      ),
    );
  tenants
    .command('export <slug>')
    .description(
      "the tenant's data export (GDPR Art. 20): one tar.gz with every service's dump, CSVs and data files, its platform records and a manifest, built by a worker; kept 7 days",
    )
    .option('--json', 'print as JSON')
    .action(
      action(async (slug: string, options: { json?: boolean }) =>
        (await commands.backups()).tenantsExport(commandContext({ quiet: true }), slug, options),
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
      action(async (slug: string, options: { now?: boolean; json?: boolean }) =>
        (await commands.tenants()).tenantsPurge(commandContext({ quiet: true }), slug, options),
      ),
    );

  program
    .command('status [slug]')
    .description(
      "health of each active tenant's (or one tenant's) dashboard and services: state, uptime over 24 h / 7 d / 30 d, open incident",
    )
    .option('--json', 'print as JSON')
    .addHelpText('after', '\nExit codes: 0 done, 1 the platform failed, 3 no such tenant.')
    .action(
      action(async (slug: string | undefined, options: { json?: boolean }) =>
        (await commands.status()).status(commandContext({ quiet: true }), slug, options),
      ),
    );

  const services = program
    .command('services')
    .description("act on a tenant's services")
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 the platform failed, 2 refused (retry: the service has not failed, or the plan is full; logs: no container, or a driver without logs), 3 no such tenant or service.',
    );
  services
    .command('retry <tenant> <service>')
    .description(
      'deploy a failed service of a tenant (slug or id) again: its steps run again from the start, as an operator retry',
    )
    .option('--json', 'print the service as JSON')
    .action(
      action(async (tenant: string, service: string, options: { json?: boolean }) =>
        (await commands.services()).servicesRetry(commandContext({ quiet: true }), tenant, service, options),
      ),
    );

  services
    .command('logs <tenant> <service>')
    .description(
      "the last lines of a tenant service's own output (stdout and stderr), read from its container on this host; --follow prints what it writes next until Ctrl-C",
    )
    .option('--lines <n>', 'how many of the last lines (0 to 1000)', '100')
    .option('--follow', 'keep printing what the service writes')
    .option('--json', 'print {service, lines, truncated} as JSON (not with --follow)')
    .action(
      action(
        async (
          tenant: string,
          service: string,
          options: { lines?: string; follow?: boolean; json?: boolean },
        ) =>
          (await commands.services()).servicesLogs(commandContext({ quiet: true }), tenant, service, options),
      ),
    );

  const backups = program
    .command('backups')
    .description("tenants' encrypted backups (restic): run now, verify, list")
    .addHelpText(
      'after',
      '\nA run is carried out by the orchestrator workers (aiqso up or aiqso worker); the command waits for it.\nExit codes: 0 done, 1 a run failed or no worker finished it, 2 refused, 3 no such tenant.',
    );
  backups
    .command('run')
    .description("back up every provisioned tenant's services now (database and data), or one tenant's")
    .option('--tenant <slug>', 'only this tenant (slug or id)')
    .option(
      '--platform',
      'instead, the master database (pg_dump -Fc) into the platform repository, whose key is derived from the master key',
    )
    .option('--no-wait', 'queue the runs and return')
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { tenant?: string; platform?: boolean; json?: boolean; wait?: boolean }) =>
        (await commands.backups()).backupsRun(commandContext({ quiet: true }), options),
      ),
    );
  backups
    .command('verify')
    .description(
      "restore each tenant's latest database snapshots into scratch databases, compare row counts, restic check a sample of the data; records RTO, alerts the admins of a failure",
    )
    .option('--tenant <slug>', 'only this tenant (slug or id)')
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { tenant?: string; json?: boolean }) =>
        (await commands.backups()).backupsVerify(commandContext({ quiet: true }), options),
      ),
    );
  backups
    .command('list')
    .description(
      'recorded snapshots: time, service, kind, size, added bytes, duration, verified, restore time',
    )
    .option('--tenant <slug>', 'only this tenant (slug or id)')
    .option(
      '--platform',
      "instead, the platform repository's snapshots of the master database, read with the master key alone (no database needed)",
    )
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { tenant?: string; platform?: boolean; json?: boolean }) =>
        (await commands.backups()).backupsList(commandContext({ quiet: true }), options),
      ),
    );

  const webhooks = program
    .command('webhooks')
    .description(
      'signed event webhooks (tenant.*, service.*, incident.*, backup.*): endpoints and their deliveries',
    )
    .addHelpText(
      'after',
      '\nDeliveries are made by the orchestrator workers (aiqso up or aiqso worker).\nExit codes: 0 done, 2 refused (a private or unresolvable URL, an unknown event), 3 no such endpoint, delivery or tenant.',
    );
  webhooks
    .command('add <url>')
    .description('register an endpoint; prints its signing secret once')
    .requiredOption('--events <list>', 'comma-separated events or families: tenant.*,service.ready or *')
    .option('--description <text>', 'what it is for')
    .option('--tenant <slug>', "a tenant's own endpoint (its events only) instead of the operator's")
    .option('--json', 'print as JSON')
    .action(
      action(
        async (
          url: string,
          options: { events: string; description?: string; tenant?: string; json?: boolean },
        ) => (await commands.webhooks()).webhooksAdd(commandContext({ quiet: true }), url, options),
      ),
    );
  webhooks
    .command('list')
    .description("every endpoint, the operator's and tenants' own")
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { json?: boolean }) =>
        (await commands.webhooks()).webhooksList(commandContext({ quiet: true }), options),
      ),
    );
  webhooks
    .command('remove <id>')
    .description('remove an endpoint and its deliveries')
    .action(
      action(async (id: string) =>
        (await commands.webhooks()).webhooksRemove(commandContext({ quiet: true }), id),
      ),
    );
  webhooks
    .command('deliveries')
    .description('recent deliveries, newest first: status, attempts, the last answer and its duration')
    .option('--endpoint <id>', 'only this endpoint')
    .option('--limit <n>', 'at most this many (default 50)')
    .option('--json', 'print as JSON, with every attempt')
    .action(
      action(async (options: { endpoint?: string; limit?: string; json?: boolean }) =>
        (await commands.webhooks()).webhooksDeliveries(commandContext({ quiet: true }), options),
      ),
    );
  webhooks
    .command('redeliver <delivery>')
    .description('deliver a delivery again now, whatever became of it')
    .action(
      action(async (id: string) =>
        (await commands.webhooks()).webhooksRedeliver(commandContext({ quiet: true }), id),
      ),
    );

  const restore = program
    .command('restore')
    .description('restore from backups')
    .addHelpText(
      'after',
      '\nExit codes: 0 restored, 1 the restore failed (the platform says which steps ran) or the repository is unreachable, 2 refused (e.g. a removed service), 3 no such tenant, service or snapshot.',
    );
  restore
    .command('service <tenant> <service>')
    .description(
      "put a tenant's service database and data back to a snapshot (the latest by default): a safety snapshot first, then the service stopped, restored, started and health-checked",
    )
    .option('--snapshot <id>', 'this snapshot (id or its first 8+ hex digits, from aiqso backups list)')
    .option('--at <iso-time>', 'the newest snapshot taken at or before this time')
    .option('--json', 'print as JSON')
    .action(
      action(
        async (
          tenant: string,
          service: string,
          options: { snapshot?: string; at?: string; json?: boolean },
        ) =>
          (await commands.backups()).restoreService(
            commandContext({ quiet: true }),
            tenant,
            service,
            options,
          ),
      ),
    );
  restore
    .command('tenant <tenant>')
    .description(
      'put every service of a tenant back (database and data), also when its containers and databases are gone: each re-created from the catalog, then restored',
    )
    .option('--at <iso-time>', "each service's newest snapshot taken at or before this time")
    .option('--json', 'print as JSON')
    .action(
      action(async (tenant: string, options: { at?: string; json?: boolean }) =>
        (await commands.backups()).restoreTenant(commandContext({ quiet: true }), tenant, options),
      ),
    );

  restore
    .command('platform')
    .description(
      'disaster recovery: the master database from the platform repository into an empty database (DATABASE_URL, or the embedded one of an empty data dir); needs the master key',
    )
    .requiredOption('--snapshot <id>', 'the platform snapshot (id or its first 8+ hex digits)')
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { snapshot: string; json?: boolean }) =>
        (await commands.backups()).restorePlatformCommand(commandContext({ quiet: true }), options),
      ),
    );

  const templates = program
    .command('templates')
    .description(
      "the image cache: build a service's template ahead of its first subscription, list pulled images and the templates unpacked from them",
    );
  templates
    .command('build <service>')
    .description(
      "pull and unpack the catalog image of a service into the driver's cache, as its first subscription would (lxc: a template container; proxmox: the image on the template storage); progress on stderr",
    )
    .option('--json', 'print as JSON')
    .action(
      action(async (service: string, options: { json?: boolean }) =>
        (await commands.templates()).templatesBuild(commandContext({ quiet: true }), service, options),
      ),
    );
  templates
    .command('list')
    .description('list cached images with their digest, template and size, and the OCI layout size')
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { json?: boolean }) =>
        (await commands.templates()).templatesList(commandContext({ quiet: true }), options),
      ),
    );

  const certs = program.command('certs').description('TLS certificates for the edge');
  certs
    .command('order <domain...>')
    .description(
      'order a certificate over ACME (AIQSO_ACME_DIRECTORY_URL) into AIQSO_TLS_CERT_DIR and record it for renewal: HTTP-01, which every edge answers, or DNS-01 through AIQSO_ACME_DNS_HOOK for a wildcard; the edges serve it without a restart',
    )
    .option('--json', 'print as JSON')
    .action(
      action(async (domains: string[], options: { json?: boolean }) =>
        (await commands.certs()).certsOrder(commandContext({ quiet: true }), domains, options),
      ),
    );
  certs
    .command('list')
    .description('the recorded certificates: names, file, expiry, days left, last renewal error')
    .option('--json', 'print as JSON')
    .action(
      action(async (options: { json?: boolean }) =>
        (await commands.certs()).certsList(commandContext({ quiet: true }), options),
      ),
    );
  certs
    .command('renew [domain]')
    .description(
      'renew now what the daily schedule would (expiring within AIQSO_CERT_RENEW_DAYS or files missing); a domain or --all renews whatever the expiry',
    )
    .option('--all', 'renew every recorded certificate')
    .option('--json', 'print as JSON')
    .action(
      action(async (domain: string | undefined, options: { all?: boolean; json?: boolean }) =>
        (await commands.certs()).certsRenew(commandContext({ quiet: true }), domain, options),
      ),
    );

  const usage = program
    .command('usage')
    .description(
      "a month's usage per tenant, service and metric (docs/usage.md); `usage collect` runs the hourly collection now",
    )
    .argument('[tenant]', 'slug or id of one tenant (all tenants when omitted)')
    .option('--month <YYYY-MM>', 'the month, in AIQSO_TIMEZONE (default: the current one)')
    .option(
      '--all',
      "every tenant's month on one line each (metrics summed over its services) and a TOTAL line",
    )
    .option('--json', 'print as JSON')
    .option('--csv', 'print as CSV')
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 the platform failed, 2 bad usage (a bad --month, --all with a tenant), 3 no such tenant.',
    )
    .action(
      action(
        async (
          tenant: string | undefined,
          options: { month?: string; json?: boolean; csv?: boolean; all?: boolean },
        ) => (await commands.usage()).usageShow(commandContext({ quiet: true }), tenant, options),
      ),
    );
  usage
    .command('collect')
    .description(
      'one usage collection pass for the current hour, as the hourly schedule runs it; a second run in the hour adds nothing',
    )
    .option('--json', 'print as JSON')
    .action(
      // `usage` has a --json of its own: whichever of the two it was given to.
      action(async (_options: unknown, command: Command) =>
        (await commands.usage()).usageCollect(
          commandContext({ quiet: true }),
          command.optsWithGlobals<{ json?: boolean }>(),
        ),
      ),
    );

  return program;
}

await buildProgram().parseAsync(process.argv);
