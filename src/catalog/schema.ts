import { z } from 'zod';
import { isPublicPath } from '../edge/route-table.ts';

/**
 * A service template: what a tenant gets when it subscribes to a service.
 * One YAML file per service in `catalog/services/`, validated at start-up.
 */
const key = z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, 'expected a lowercase key (letters, digits, hyphens)');

/**
 * `memory_mb` is the limit (the cgroup's memory.max: the most the service may
 * use); `request_memory_mb` what placement counts against the host (what it
 * uses idle, measured; default: the limit). As Kubernetes' requests and limits.
 */
const resources = z.strictObject({
  memory_mb: z.number().int().min(64).max(262_144),
  request_memory_mb: z.number().int().min(8).max(262_144).optional(),
  cores: z.number().int().min(1).max(64),
  disk_gb: z.number().int().min(1).max(4096),
});

const health = z.strictObject({
  path: z.string().startsWith('/', 'expected a path starting with /'),
  /** Status a healthy service answers with. */
  status: z.number().int().min(100).max(599).default(200),
  /** How long the deploy waits for the first healthy answer. */
  timeout_seconds: z.number().int().min(1).max(1800).default(120),
});

const route = z.strictObject({
  path: z.string().regex(/^\/[a-z0-9][a-z0-9-]*$/, 'expected one path segment such as /crm'),
  strip_prefix: z.boolean().default(true),
  /**
   * Who signs users in: `edge` (default: the platform's sign-in in front of the
   * service, which gets the user in X-AIQSO-* headers) or `app` (the service's
   * own login; the edge still keeps the platform's cookies from it).
   */
  auth: z.enum(['edge', 'app'], { error: 'expected edge or app' }).default('edge'),
  /** Paths below `path` served without the platform's sign-in (`/booking` and below), e.g. public booking pages. */
  public_paths: z
    .array(z.string().refine(isPublicPath, 'expected a path such as /booking (segments, no dot segments)'))
    .max(20)
    .default([]),
});

/**
 * Environment for the service. Values may use placeholders the platform fills
 * at deploy time: `${secret:<name>}` (a generated secret, stable per tenant
 * service and name), `${db.host}`, `${db.port}`, `${db.name}`, `${db.user}`,
 * `${db.password}`, `${db.url}`, `${port}`, `${public_url}` (the service's URL,
 * path included), `${public_origin}` (scheme and host only), and for a
 * service with `database.redis`, `${redis.url}` and `${redis.prefix}` (its key prefix).
 */
export const PLACEHOLDER = /\$\{([a-z_.]+(?::[a-z0-9-]+)?)\}/g;
const KNOWN =
  /^(secret:[a-z0-9-]+|db\.(host|port|name|user|password|url)|redis\.(url|prefix)|port|public_url|public_origin)$/;

const envValue = z.string().superRefine((value, ctx) => {
  for (const match of value.matchAll(PLACEHOLDER)) {
    if (!KNOWN.test(match[1]!))
      ctx.addIssue({ code: 'custom', message: `unknown placeholder \${${match[1]}}` });
  }
});

const env = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'),
  envValue,
);

const common = {
  key,
  name: z.string().min(1).max(80),
  description: z.string().max(500).default(''),
  resources,
  port: z.number().int().min(1).max(65_535),
  health,
  route,
  /**
   * Platform resources the service needs: its own PostgreSQL database, and a
   * Redis user of its own (`redis`: an ACL user limited to its key prefix on
   * AIQSO_SERVICES_REDIS_URL; without that setting the service is not offered,
   * see runnable.ts and services/redis.ts).
   */
  database: z
    .strictObject({ postgres: z.boolean(), redis: z.boolean().default(false) })
    .default({ postgres: false, redis: false }),
  /** The least memory the service starts with: a resources change below it is refused. */
  min_memory_mb: z.number().int().min(64).max(262_144).optional(),
  env: env.default({}),
  stripe_price_id: z.string().startsWith('price_').nullable().default(null),
};

/** An argv array: a program and its arguments, never a shell string. */
const argv = z
  .array(z.string())
  .min(1, 'expected a program and its arguments')
  .refine((a) => a[0] !== '', 'expected a program first');
const insidePath = z
  .string()
  .regex(/^\/[A-Za-z0-9._@+-]+(\/[A-Za-z0-9._@+-]+)*$/, 'expected an absolute path such as /data')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'expected a path without . or ..');

/**
 * An OCI image reference: `[registry[:port]/]repository[:tag][@sha256:<digest>]`,
 * e.g. `docker.io/espocrm/espocrm:9`.
 */
export const IMAGE_REF =
  /^(?:[a-z0-9.-]+(?::\d{1,5})?\/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

const image = {
  image: z.string().regex(IMAGE_REF, 'expected an image reference such as docker.io/library/nginx:1.27'),
  /** Replaces the image's ENTRYPOINT (and, as with Docker, its CMD unless `command` is given). */
  entrypoint: argv.optional(),
  /** Replaces the image's CMD. */
  command: z.array(z.string()).optional(),
  /** Working directory inside the container; default the image's. */
  workdir: insidePath.optional(),
  /** Directories kept on a per-container data directory (bind-mounted), seeded from the image. */
  volumes: z.array(insidePath).max(20).default([]),
  /**
   * Commands run once per deployment, in order, before the service first
   * starts (with its environment and database ready), e.g. a schema install.
   */
  init: z.array(argv).max(10).default([]),
  min_memory_mb: z.number().int().min(64).max(262_144),
};

export const serviceTemplateSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    ...common,
    kind: z.literal('clone'),
    /** The template container per driver: an LXC container name, a Proxmox VMID. */
    template: z.strictObject({
      lxc: z.string().min(1).optional(),
      proxmox: z.number().int().min(100).optional(),
    }),
  }),
  z.strictObject({ ...common, kind: z.literal('image'), ...image }),
  z.strictObject({
    ...common,
    kind: z.literal('app'),
    /** A Node.js app shipped with the platform, relative to the repository root. */
    app: z.strictObject({
      dir: z.string().regex(/^apps\/[a-z0-9-]+$/, 'expected apps/<name>'),
      entry: z.string().min(1),
    }),
  }),
]);

export type ServiceTemplate = z.infer<typeof serviceTemplateSchema>;
