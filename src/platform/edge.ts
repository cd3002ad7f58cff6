import path from 'node:path';
import { databaseChallengeStore } from '../edge/acme.ts';
import { startNginxEdge } from '../edge/nginx/edge.ts';
import { startBuiltinEdge, type EdgeDeps, type RunningEdge } from '../edge/start.ts';

export type { EdgeDeps, RunningEdge } from '../edge/start.ts';

/**
 * The platform's listener (AIQSO_BIND:AIQSO_HTTP_PORT, and AIQSO_HTTPS_PORT
 * with the certificate): the builtin edge, or nginx in front of an internal
 * builtin edge when AIQSO_EDGE=nginx. Either way the base domain is served by
 * the platform app in `deps.api`, in this process.
 */
export function startEdge(platform: EdgeDeps): Promise<RunningEdge> {
  const { config } = platform;
  // ACME HTTP-01 answers come from the database, so whichever edge the CA reaches can answer.
  const deps = {
    ...platform,
    challenges: platform.challenges ?? databaseChallengeStore(platform.database.db),
  };
  const listen = {
    bind: config.http.bind,
    httpPort: config.http.port,
    https: config.https && {
      port: config.https.port,
      certFile: config.https.certFile,
      keyFile: config.https.keyFile,
      minVersion: config.tlsMinVersion,
    },
  };
  if (config.edge === 'nginx') {
    return startNginxEdge(deps, { ...listen, dir: path.join(config.dataDir, 'nginx') });
  }
  return startBuiltinEdge(deps, listen);
}
