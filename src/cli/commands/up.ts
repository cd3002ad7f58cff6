import { createPlatform, type Platform } from '../../platform/platform.ts';
import { LOCAL_BILLING_WARNING } from '../../billing/index.ts';
import { startEdge, type RunningEdge } from '../../platform/edge.ts';
import { adminLoginHelp, ensureFirstAdmin } from '../../identity/bootstrap.ts';
import type { CommandContext } from '../context.ts';
import { onShutdownSignal } from '../shutdown.ts';

export async function up(ctx: CommandContext): Promise<Platform> {
  const { config, log } = ctx;
  const platform = await createPlatform(config, log);
  let edge: RunningEdge | undefined;
  onShutdownSignal(async () => {
    await edge?.close();
    await platform.close();
  }, log);
  try {
    // The edge is the listener: the base domain reaches the API in-process, tenants their upstreams.
    edge = await startEdge(platform);
  } catch (err) {
    await platform.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new Error(
        `port ${config.http.port} on ${config.http.bind} is in use; set AIQSO_HTTP_PORT to another port`,
      );
    }
    throw err;
  }
  const admin = await ensureFirstAdmin(platform.database.db, config.admin, config.baseDomain);
  const lines = [
    '',
    'AIQSO is running.',
    `  Portal and API   ${config.publicUrl}/`,
    `  Operator console ${config.publicUrl}/admin`,
    `  API reference    ${config.publicUrl}/api/docs`,
    `  Health           ${config.publicUrl}/healthz`,
    `  Database         ${platform.database.mode === 'embedded' ? `embedded PostgreSQL in ${config.dataDir}/pg` : 'DATABASE_URL'}`,
    `  Data directory   ${config.dataDir}`,
  ];
  if (admin.created && admin.generated) {
    lines.push(
      `  Admin login      ${admin.email} / ${admin.password}`,
      '                   (generated and shown only this once; set AIQSO_ADMIN_PASSWORD to choose it)',
    );
  } else {
    lines.push(`  Admin login      ${admin.email} (password as configured or shown at first start)`);
  }
  lines.push(...(await adminLoginHelp(platform.database.db, admin.email, config.publicUrl)));
  if (config.billing.mode === 'local') lines.push(LOCAL_BILLING_WARNING);
  lines.push('Press Ctrl-C to stop.', '');
  process.stderr.write(lines.join('\n'));
  return platform;
}
