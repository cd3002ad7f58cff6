import { readFileSync } from 'node:fs';

/**
 * Request validation against the official Proxmox VE API schema (the subset in
 * test/fixtures/proxmox-api-subset.json, extracted by
 * scripts/extract-proxmox-schema.ts). Rejects what pve-manager's JSONSchema
 * check rejects: unknown parameters, missing required ones, wrong types, values
 * outside enums, ranges, lengths and patterns, and malformed property strings
 * such as net0=name=eth0,bridge=vmbr1,ip=…
 */
export interface ParamSchema {
  type?: string;
  optional?: number;
  enum?: string[];
  pattern?: string;
  format?: string | Record<string, ParamSchema>;
  minimum?: number | string;
  maximum?: number | string;
  maxLength?: number;
  minLength?: number;
  default_key?: number;
  alias?: string;
  properties?: Record<string, ParamSchema>;
  items?: ParamSchema;
  additionalProperties?: number;
}

export interface Endpoint {
  method: string;
  path: string;
  parameters: ParamSchema;
  returns: ParamSchema;
}

const IPV4 = String.raw`(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)`;
const IPV6 = String.raw`[0-9a-fA-F:]*:[0-9a-fA-F:.]*`;
/** One element of a firewall address list: an address, a CIDR or a range (pve-firewall's Net::IP input). */
const FW_ADDR = String.raw`(?:${IPV4}(?:/(?:3[0-2]|[12]?\d))?(?:-${IPV4})?|${IPV6}(?:/\d{1,3})?)`;
/** A port, a service name or a range; comma lists (pve-fw-dport-spec). */
const FW_PORT = String.raw`(?:\d{1,5}|[a-z][a-z0-9-]*)(?::(?:\d{1,5}|[a-z][a-z0-9-]*))?`;

const FORMATS: Record<string, RegExp> = {
  'pve-vmid': /^\d+$/,
  'pve-node': /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/,
  'pve-storage-id': /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i,
  'pve-configid': /^[a-z][a-z0-9_-]+$/i,
  'dns-name': /^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/,
  ipv4: /^(\d{1,3}\.){3}\d{1,3}$/,
  'pve-configid-list': /^[a-z][a-z0-9_-]+([,; ][a-z][a-z0-9_-]+)*$/i,
  ipv6: new RegExp(`^${IPV6}$`),
  // Unicast only: the I/G bit of the first octet clear.
  'mac-addr': /^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$/i,
  'pve-ipv4-config': new RegExp(`^(?:dhcp|manual|${IPV4}/(?:3[0-2]|[12]?\\d))$`),
  'pve-fw-addr-spec': new RegExp(
    `^(?:\\+[A-Za-z][A-Za-z0-9_-]+|[A-Za-z][A-Za-z0-9_-]+|${FW_ADDR}(?:,${FW_ADDR})*)$`,
  ),
  'pve-fw-dport-spec': new RegExp(`^${FW_PORT}(?:,${FW_PORT})*$`),
  'pve-fw-sport-spec': new RegExp(`^${FW_PORT}(?:,${FW_PORT})*$`),
  'pve-fw-protocol-spec':
    /^(?:\d{1,3}|tcp|udp|icmp|icmpv6|ipv6-icmp|sctp|udplite|dccp|gre|esp|ah|igmp|ipv6)$/,
  'pve-iface': /^[a-zA-Z][a-zA-Z0-9_]{1,20}$/,
};

const TYPES: Record<string, RegExp> = {
  integer: /^[+-]?\d+$/,
  number: /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/,
  boolean: /^(0|1|true|false|yes|no|on|off)$/i,
};

/** Perl's `(?^:…)` groups become plain non-capturing groups; the whole value must match. */
function perlPattern(pattern: string): RegExp | undefined {
  try {
    return new RegExp(`^(?:${pattern.replace(/\(\?\^:/g, '(?:')})$`, 's');
  } catch {
    return undefined;
  }
}

/** Errors for one value, or none. */
export function checkValue(schema: ParamSchema, value: string): string | undefined {
  const type = schema.type ?? 'string';
  if (TYPES[type] && !TYPES[type].test(value)) return `type check ('${type}') failed - got '${value}'`;
  if (schema.enum && !schema.enum.includes(value))
    return `value '${value}' does not have a value in the enumeration '${schema.enum.join(', ')}'`;
  if (type === 'integer' || type === 'number') {
    const n = Number(value);
    if (schema.minimum !== undefined && n < Number(schema.minimum))
      return `value must have a minimum value of ${schema.minimum}`;
    if (schema.maximum !== undefined && n > Number(schema.maximum))
      return `value must have a maximum value of ${schema.maximum}`;
  }
  if (schema.maxLength !== undefined && value.length > schema.maxLength)
    return `value may only be ${schema.maxLength} characters long`;
  if (schema.minLength !== undefined && value.length < schema.minLength)
    return `value must be at least ${schema.minLength} characters long`;
  if (schema.pattern) {
    const re = perlPattern(schema.pattern);
    if (re && !re.test(value)) return `value does not match the regex pattern`;
  }
  if (typeof schema.format === 'string') {
    const re = FORMATS[schema.format];
    if (re && !re.test(value)) return `value does not look like a valid ${schema.format}`;
  }
  if (schema.format && typeof schema.format === 'object') return checkPropertyString(schema.format, value);
  return undefined;
}

/** `key=value,key=value` (the default key may omit `key=`). */
export function parsePropertyString(
  format: Record<string, ParamSchema>,
  value: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  const defaultKey = Object.entries(format).find(([, s]) => s.default_key)?.[0];
  for (const part of value.split(',')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0 && defaultKey && !(defaultKey in out)) out[defaultKey] = part;
    else out[eq < 0 ? part : part.slice(0, eq)] = eq < 0 ? '' : part.slice(eq + 1);
  }
  return out;
}

function checkPropertyString(format: Record<string, ParamSchema>, value: string): string | undefined {
  const parsed = parsePropertyString(format, value);
  for (const [key, v] of Object.entries(parsed)) {
    const sub = format[key];
    if (!sub) return `invalid format - unknown property '${key}'`;
    const resolved = sub.alias ? (format[sub.alias] ?? sub) : sub;
    const err = checkValue(resolved, v);
    if (err) return `invalid format - ${key}: ${err}`;
  }
  for (const [key, sub] of Object.entries(format)) {
    if (!sub.optional && !sub.alias && !(key in parsed))
      return `invalid format - ${key}: property is missing and it is not optional`;
  }
  return undefined;
}

function propertyFor(props: Record<string, ParamSchema>, name: string): ParamSchema | undefined {
  if (props[name]) return props[name];
  const m = /^([a-z-]+)(\d+)$/.exec(name);
  return m ? props[`${m[1]}[n]`] : undefined;
}

export class ApiSchema {
  readonly endpoints: Endpoint[];

  constructor(file: string) {
    this.endpoints = (JSON.parse(readFileSync(file, 'utf8')) as { endpoints: Endpoint[] }).endpoints;
  }

  /** The endpoint for a request and its path parameters; `methods` lists what the path allows. */
  match(
    method: string,
    pathname: string,
  ): { endpoint?: Endpoint; params: Record<string, string>; methods: string[] } {
    const segs = pathname.replace(/\/+$/, '').split('/');
    const methods: string[] = [];
    for (const ep of this.endpoints) {
      const tpl = ep.path.split('/');
      if (tpl.length !== segs.length) continue;
      const params: Record<string, string> = {};
      const ok = tpl.every((t, i) => {
        const m = /^\{(\w+)\}$/.exec(t);
        if (m) params[m[1]!] = decodeURIComponent(segs[i]!);
        return m !== null || t === segs[i];
      });
      if (!ok) continue;
      methods.push(ep.method);
      if (ep.method === method) return { endpoint: ep, params, methods };
    }
    return { params: {}, methods };
  }

  /** Parameter errors keyed by parameter name, as pve-manager reports them. */
  validate(endpoint: Endpoint, params: Record<string, string>): Record<string, string> {
    const errors: Record<string, string> = {};
    const props = endpoint.parameters.properties ?? {};
    for (const [name, value] of Object.entries(params)) {
      const schema = propertyFor(props, name);
      if (!schema) {
        if (endpoint.parameters.additionalProperties === 0) {
          errors[name] =
            'property is not defined in schema and the schema does not allow additional properties';
        }
        continue;
      }
      const err = checkValue(schema, value);
      if (err) errors[name] = err;
    }
    for (const [name, schema] of Object.entries(props)) {
      if (!schema.optional && !name.includes('[n]') && !(name in params))
        errors[name] = 'property is missing and it is not optional';
    }
    return errors;
  }
}

/** Problems with a response body the simulator is about to send (its own bug, never the driver's). */
export function checkReturn(schema: ParamSchema, data: unknown, at = 'data'): string[] {
  const type = schema.type;
  if (data === null || data === undefined)
    return type && type !== 'null' && !schema.optional ? [`${at}: missing`] : [];
  const is: Record<string, (v: unknown) => boolean> = {
    string: (v) => typeof v === 'string',
    integer: (v) => Number.isInteger(v),
    number: (v) => typeof v === 'number',
    boolean: (v) => typeof v === 'boolean' || v === 0 || v === 1,
    object: (v) => typeof v === 'object' && !Array.isArray(v),
    array: (v) => Array.isArray(v),
    null: (v) => v === null,
  };
  if (type && is[type] && !is[type](data)) return [`${at}: expected ${type}, got ${JSON.stringify(data)}`];
  if (type === 'array' && schema.items)
    return (data as unknown[]).flatMap((v, i) => checkReturn(schema.items!, v, `${at}[${i}]`));
  if (type === 'object' && schema.properties) {
    const obj = data as Record<string, unknown>;
    return Object.entries(schema.properties).flatMap(([k, s]) =>
      obj[k] === undefined
        ? s.optional
          ? []
          : [`${at}.${k}: missing`]
        : checkReturn(s, obj[k], `${at}.${k}`),
    );
  }
  return [];
}
