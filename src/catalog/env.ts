import { PLACEHOLDER } from './schema.ts';

export interface EnvValues {
  db?: { host: string; port: number; name: string; user: string; password: string };
  port: number;
  publicUrl: string;
  /** The service's Redis user, when the platform provisions one. */
  redis?: { url: string; prefix: string };
  /** A stable secret for a name (e.g. derived from the tenant service and the master key). */
  secret(name: string): string;
}

/** Fill a template's environment placeholders (pure; the catalog loader has checked the names). */
export function renderServiceEnv(env: Record<string, string>, values: EnvValues): Record<string, string> {
  const lookup = (name: string): string => {
    if (name.startsWith('secret:')) return values.secret(name.slice('secret:'.length));
    if (name === 'port') return String(values.port);
    if (name === 'public_url') return values.publicUrl;
    if (name === 'public_origin') return new URL(values.publicUrl).origin;
    if (name.startsWith('redis.')) {
      if (!values.redis) throw new Error(`\${${name}} needs a Redis user, and none is provisioned here`);
      return name === 'redis.url' ? values.redis.url : values.redis.prefix;
    }
    const db = values.db;
    if (!db) throw new Error(`\${${name}} needs a database, but the template has database.postgres: false`);
    const url = `postgres://${encodeURIComponent(db.user)}:${encodeURIComponent(db.password)}@${db.host}:${db.port}/${db.name}`;
    const fields: Record<string, string> = {
      'db.host': db.host,
      'db.port': String(db.port),
      'db.name': db.name,
      'db.user': db.user,
      'db.password': db.password,
      'db.url': url,
    };
    const value = fields[name];
    if (value === undefined) throw new Error(`unknown placeholder \${${name}}`);
    return value;
  };
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, v.replace(PLACEHOLDER, (_m, name: string) => lookup(name))]),
  );
}
