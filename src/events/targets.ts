import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { DomainError } from '../core/errors.ts';

/**
 * Which webhook targets are allowed. Private, loopback, link-local and other
 * non-public addresses (v4 and v6) are refused unless the operator allows
 * them all (`allowPrivate`) or names them (`allow`: host names, addresses and
 * CIDRs). Checked when an endpoint is registered and again at every delivery,
 * on the addresses the connection then uses (against DNS rebinding).
 */
export interface TargetPolicy {
  allowPrivate: boolean;
  allow: readonly string[];
}

export type Resolver = (host: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

const PRIVATE_V4 = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const;

const PRIVATE_V6 = [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const;

const blocked = new BlockList();
for (const [net, bits] of PRIVATE_V4) blocked.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of PRIVATE_V6) blocked.addSubnet(net, bits, 'ipv6');

/** The IPv4 address an IPv6 address carries (mapped ::ffff:a.b.c.d, compatible, NAT64 64:ff9b::/96), if any. */
function embeddedV4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|::|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

/** Whether an IP address is private, loopback, link-local, reserved or otherwise not on the public internet. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family === 6) {
    const v4 = embeddedV4(address);
    if (v4 !== undefined) return blocked.check(v4, 'ipv4');
    return blocked.check(address, 'ipv6');
  }
  return true;
}

function allowList(policy: TargetPolicy) {
  const list = new BlockList();
  const hosts = new Set<string>();
  for (const item of policy.allow) {
    const [address, bits] = item.split('/');
    const family = isIP(address ?? '');
    if (family === 0) hosts.add(item.toLowerCase());
    else if (bits !== undefined) list.addSubnet(address!, Number(bits), family === 6 ? 'ipv6' : 'ipv4');
    else list.addAddress(address!, family === 6 ? 'ipv6' : 'ipv4');
  }
  return {
    host: (host: string) => hosts.has(host.toLowerCase()),
    address: (address: string) => list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4'),
  };
}

/** The address refused for `host`, or undefined when the policy allows it. */
function refusal(policy: TargetPolicy, host: string, address: string): string | undefined {
  if (policy.allowPrivate || !isPrivateAddress(address)) return undefined;
  const allowed = allowList(policy);
  if (allowed.host(host) || allowed.address(address)) return undefined;
  return host === address
    ? `${address} is a private, loopback or link-local address`
    : `${host} resolves to ${address}, a private, loopback or link-local address`;
}

const ALLOW_HINT = 'set AIQSO_WEBHOOKS_ALLOW_PRIVATE=1 or list it in AIQSO_WEBHOOKS_ALLOW to allow it';

/** The URL's host without IPv6 brackets. */
export function urlHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

/**
 * Parse and check an endpoint URL at registration: http or https, no
 * credentials in it, and a host that resolves only to allowed addresses.
 */
export async function checkTarget(
  raw: string,
  policy: TargetPolicy,
  resolve: Resolver = systemResolver,
): Promise<URL> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DomainError('validation_failed', `url: "${raw}" is not a URL`, { details: { field: 'url' } });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new DomainError('validation_failed', 'url: expected an http or https URL', {
      details: { field: 'url' },
    });
  if (url.username || url.password)
    throw new DomainError('validation_failed', 'url: must not carry a user name or password', {
      details: { field: 'url' },
    });
  if (raw.length > 2000)
    throw new DomainError('validation_failed', 'url: longer than 2000 characters', {
      details: { field: 'url' },
    });
  await addressesFor(urlHost(url), policy, resolve);
  return url;
}

/**
 * The addresses `host` resolves to, every one allowed by the policy, or a
 * `bad_request` naming the address refused. A host that does not resolve is
 * refused too.
 */
export async function addressesFor(
  host: string,
  policy: TargetPolicy,
  resolve: Resolver = systemResolver,
): Promise<LookupAddress[]> {
  const family = isIP(host);
  let addresses: LookupAddress[];
  if (family !== 0) addresses = [{ address: host, family }];
  else {
    try {
      addresses = await resolve(host);
    } catch (err) {
      throw new DomainError('validation_failed', `url: ${host} does not resolve`, {
        cause: err,
        details: { field: 'url' },
      });
    }
    if (addresses.length === 0)
      throw new DomainError('validation_failed', `url: ${host} does not resolve`, {
        details: { field: 'url' },
      });
  }
  for (const a of addresses) {
    const why = refusal(policy, host, a.address);
    if (why)
      throw new DomainError('bad_request', `url: ${why}; ${ALLOW_HINT}`, {
        details: { field: 'url', address: a.address },
      });
  }
  return addresses;
}
