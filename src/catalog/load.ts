import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { serviceTemplateSchema, type ServiceTemplate } from './schema.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CATALOG_DIR = path.join(REPO_ROOT, 'catalog', 'services');

/** A catalog file that cannot be used; the message names the file and the field. */
export class CatalogError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CatalogError';
  }
}

function loadFile(file: string): ServiceTemplate {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CatalogError(`${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  const result = serviceTemplateSchema.safeParse(doc);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const at = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (at ? `${at}.${k}` : k));
      throw new CatalogError(`${file}: ${keys.join(', ')}: unknown key${keys.length > 1 ? 's' : ''}`);
    }
    throw new CatalogError(`${file}: ${at || 'template'}: ${issue.message}`);
  }
  const template = result.data;
  if (template.min_memory_mb !== undefined && template.min_memory_mb > template.resources.memory_mb) {
    throw new CatalogError(
      `${file}: resources.memory_mb: ${template.resources.memory_mb} is below the service's min_memory_mb of ${template.min_memory_mb}`,
    );
  }
  const request = template.resources.request_memory_mb;
  if (request !== undefined && request > template.resources.memory_mb) {
    throw new CatalogError(
      `${file}: resources.request_memory_mb: ${request} is above the limit resources.memory_mb of ${template.resources.memory_mb}`,
    );
  }
  if (path.basename(file, '.yaml') !== template.key) {
    throw new CatalogError(
      `${file}: key: expected "${path.basename(file, '.yaml')}" to match the file name, got "${template.key}"`,
    );
  }
  if (template.kind === 'app') {
    const entry = path.join(REPO_ROOT, template.app.dir, template.app.entry);
    if (!statSync(entry, { throwIfNoEntry: false })?.isFile()) {
      throw new CatalogError(
        `${file}: app.entry: ${path.join(template.app.dir, template.app.entry)} does not exist`,
      );
    }
  }
  return template;
}

/** Every service template in `dir`, validated; route paths must be unique across the catalog. */
export function loadCatalog(dir = CATALOG_DIR): ServiceTemplate[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => path.join(dir, f));
  const templates = files.map(loadFile);
  const paths = new Map<string, string>();
  for (const t of templates) {
    const other = paths.get(t.route.path);
    if (other)
      throw new CatalogError(`${dir}: route.path ${t.route.path} is used by both ${other} and ${t.key}`);
    paths.set(t.route.path, t.key);
  }
  return templates;
}
