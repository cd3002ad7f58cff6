import type { Config } from './load.ts';
import { CONFIG_REFERENCE, schemaDefault, type ConfigGroup } from './reference.ts';
import type { RawConfig } from './schema.ts';

/** One setting as the operator's configuration view shows it: never a secret's value. */
export interface SettingView {
  name: string;
  group: ConfigGroup | 'Backup credentials';
  /** The effective value as text; null when unset, or when the whole value is a secret. */
  value: string | null;
  /** The schema's default, when it has one. */
  default: string | null;
  /** Whether a value is in effect (set, or a default). */
  set: boolean;
  /** `value`: only whether it is set is shown; `credentials`: a password inside it is masked. */
  secret: 'value' | 'credentials' | null;
  meaning: string;
}

export const MASK = '***';

/**
 * A URL's (or restic repository's) user-info password replaced by the mask
 * (`rest:https://u:***@host/`), and so is a query parameter that names a
 * password, secret, token or key (`?password=***`).
 */
export function maskCredentials(value: string): string {
  return value
    .replace(/(\/\/[^/@:\s]*):[^@/\s]*@/g, `$1:${MASK}@`)
    .replace(/([?&][^=&#]*(?:pass|secret|token|key)[^=&#]*=)[^&#\s]*/gi, `$1${MASK}`);
}

/**
 * The effective configuration for the operator console and `GET
 * /api/v1/platform/config`: every setting the reference knows, in its group,
 * with secrets masked as the reference marks them; restic's backend
 * credentials by name only.
 */
export function settingsView(config: Pick<Config, 'settings' | 'backup'>): SettingView[] {
  const settings: Partial<RawConfig> = config.settings ?? {};
  const out: SettingView[] = [];
  for (const name of Object.keys(CONFIG_REFERENCE) as (keyof RawConfig)[]) {
    const entry = CONFIG_REFERENCE[name];
    const raw = settings[name];
    const text = raw === undefined || raw === null ? null : String(raw);
    const secret = entry.secret ?? null;
    const fallback = schemaDefault(name);
    out.push({
      name,
      group: entry.group,
      value:
        text === null || secret === 'value' ? null : secret === 'credentials' ? maskCredentials(text) : text,
      default: fallback === undefined || secret === 'value' ? null : fallback,
      set: text !== null && text !== '',
      secret,
      meaning: entry.meaning,
    });
  }
  for (const name of Object.keys(config.backup.credentials).sort()) {
    out.push({
      name,
      group: 'Backup credentials',
      value: null,
      default: null,
      set: true,
      secret: 'value',
      meaning: "restic's backend credential, read from the environment",
    });
  }
  return out;
}
