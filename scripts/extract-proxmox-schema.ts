// Extract the subset of the official Proxmox VE API schema that the proxmox
// driver uses into test/fixtures/proxmox-api-subset.json, for the simulator
// (test/support/proxmox-sim/). Run: node --import tsx scripts/extract-proxmox-schema.ts [schema.json]
// The full schema (pve-docs apidoc.js as JSON) is not committed: it is 1.2 MB.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const source =
  process.argv[2] ??
  path.join(import.meta.dirname, '..', '..', 'shared', 'reference', 'proxmox-ve-9.1-api.json');
const out = path.join(import.meta.dirname, '..', 'test', 'fixtures', 'proxmox-api-subset.json');

/** Every endpoint the driver (and the simulator) speaks. */
export const ENDPOINTS: [string, string][] = [
  ['GET', '/version'],
  ['GET', '/cluster/resources'],
  ['GET', '/nodes/{node}/tasks/{upid}/status'],
  ['GET', '/nodes/{node}/tasks/{upid}/log'],
  ['POST', '/nodes/{node}/lxc'],
  ['POST', '/nodes/{node}/lxc/{vmid}/clone'],
  ['GET', '/nodes/{node}/lxc/{vmid}/config'],
  ['PUT', '/nodes/{node}/lxc/{vmid}/config'],
  ['PUT', '/nodes/{node}/lxc/{vmid}/resize'],
  ['GET', '/nodes/{node}/lxc/{vmid}/status/current'],
  ['POST', '/nodes/{node}/lxc/{vmid}/status/start'],
  ['POST', '/nodes/{node}/lxc/{vmid}/status/shutdown'],
  ['POST', '/nodes/{node}/lxc/{vmid}/status/stop'],
  ['DELETE', '/nodes/{node}/lxc/{vmid}'],
  ['POST', '/nodes/{node}/lxc/{vmid}/snapshot'],
  ['POST', '/nodes/{node}/vzdump'],
  ['GET', '/nodes/{node}/storage/{storage}/content'],
  ['DELETE', '/nodes/{node}/storage/{storage}/content/{volume}'],
  ['POST', '/nodes/{node}/storage/{storage}/oci-registry-pull'],
  ['POST', '/nodes/{node}/storage/{storage}/upload'],
  ['GET', '/nodes/{node}/lxc/{vmid}/firewall/options'],
  ['PUT', '/nodes/{node}/lxc/{vmid}/firewall/options'],
  ['GET', '/nodes/{node}/lxc/{vmid}/firewall/rules'],
  ['POST', '/nodes/{node}/lxc/{vmid}/firewall/rules'],
  ['GET', '/nodes/{node}/lxc/{vmid}/firewall/rules/{pos}'],
  ['PUT', '/nodes/{node}/lxc/{vmid}/firewall/rules/{pos}'],
  ['DELETE', '/nodes/{node}/lxc/{vmid}/firewall/rules/{pos}'],
  ['GET', '/cluster/firewall/options'],
];

interface Node {
  path: string;
  info?: Record<string, { parameters?: unknown; returns?: unknown }>;
  children?: Node[];
}

const KEEP = new Set([
  'type',
  'optional',
  'enum',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'maxLength',
  'minLength',
  'default_key',
  'items',
  'properties',
  'additionalProperties',
  'alias',
  'typetext',
]);

/** Keep what validation needs; drop prose. */
function prune(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(prune);
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === 'properties' || (k === 'format' && typeof v === 'object')) {
      out[k] = Object.fromEntries(Object.entries(v as object).map(([p, s]) => [p, prune(s)]));
    } else if (KEEP.has(k)) out[k] = prune(v);
  }
  return out;
}

const index = new Map<string, Node>();
const walk = (n: Node) => {
  index.set(n.path, n);
  n.children?.forEach(walk);
};
(JSON.parse(readFileSync(source, 'utf8')) as Node[]).forEach(walk);

const subset = ENDPOINTS.map(([method, p]) => {
  const info = index.get(p)?.info?.[method];
  if (!info) throw new Error(`${method} ${p} is not in ${source}`);
  return { method, path: p, parameters: prune(info.parameters ?? {}), returns: prune(info.returns ?? {}) };
});
writeFileSync(out, `${JSON.stringify({ source: path.basename(source), endpoints: subset }, null, 1)}\n`);
console.log(`wrote ${subset.length} endpoints to ${out}`);
