import { BlockList, isIPv4 } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { filterCookies } from './auth/cookies.ts';
import type { Grant } from './auth/gate.ts';
import { isEdgeHeader } from './auth/identity.ts';

/** Client addresses, forwarding headers and per-route IP lists. */

export function plainIp(address: string | undefined): string {
  if (!address) return '0.0.0.0';
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function family(ip: string): 'ipv4' | 'ipv6' {
  return isIPv4(ip) ? 'ipv4' : 'ipv6';
}

/** A BlockList of CIDRs (or single addresses); entries that do not parse are ignored, and reported by `invalid`. */
export function compileCidrs(cidrs: readonly string[]): { list: BlockList; invalid: string[] } {
  const list = new BlockList();
  const invalid: string[] = [];
  for (const entry of cidrs) {
    const [addr, bits] = entry.split('/');
    try {
      const fam = family(addr!);
      const prefix = bits === undefined ? (fam === 'ipv4' ? 32 : 128) : Number(bits);
      list.addSubnet(addr!, prefix, fam);
    } catch {
      invalid.push(entry);
    }
  }
  return { list, invalid };
}

export function inList(list: BlockList, ip: string): boolean {
  return list.check(ip, family(ip));
}

/**
 * The client's address: the socket peer, unless that peer is a trusted proxy,
 * in which case the right-most untrusted entry of its X-Forwarded-For.
 */
export function clientIp(req: IncomingMessage, trusted: BlockList | undefined): string {
  const peer = plainIp(req.socket.remoteAddress);
  if (!trusted || !inList(trusted, peer)) return peer;
  const header = req.headers['x-forwarded-for'];
  const chain = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(plainIp);
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = chain[i]!;
    if (!/^[0-9a-f.:]+$/i.test(hop)) return peer;
    if (!inList(trusted, hop)) return hop;
  }
  return chain[0] ?? peer;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1), not forwarded in either direction
 * (each side frames its body itself), and Expect: this edge's server answers
 * 100-continue itself.
 */
export const isHopByHop = (name: string): boolean => HOP_BY_HOP.has(name);

/** What a client may send that only this edge may set for an upstream. */
const FORWARDING = new Set([
  'host',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-real-ip',
]);

/**
 * The request headers for the upstream, as name, value, name, value…: the
 * client's, without hop-by-hop ones (`isHopByHop`, and any its Connection
 * header names), without any `x-aiqso-*` (only this edge sets those) and
 * without the forwarding headers it sent, which are set
 * (`pushForwardingHeaders`) as `setForwardingHeaders` sets them. For a
 * tenant's upstream, `grant` says which cookies it gets and who the user is.
 */
export function upstreamRequestHeaders(
  req: IncomingMessage,
  ip: string,
  host: string,
  grant?: Grant,
): string[] {
  const h = req.headers;
  const connection = h.connection;
  const named =
    connection && connection !== 'keep-alive' && connection !== 'close'
      ? new Set(connection.toLowerCase().split(/\s*,\s*/))
      : undefined;
  const out: string[] = [];
  for (const name in h) {
    const value = h[name];
    if (value === undefined || FORWARDING.has(name) || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    if (isEdgeHeader(name)) continue;
    if (typeof value === 'string') {
      if (name === 'cookie' && grant) {
        const kept = filterCookies(value, grant.cookies === 'platform');
        if (kept !== undefined) out.push(name, kept);
      } else out.push(name, value);
    } else for (const v of value) out.push(name, v); // set-cookie, the one header Node keeps as a list
  }
  if (grant?.identity) out.push(...grant.identity.headers);
  pushForwardingHeaders(out, req, ip, host);
  return out;
}

/** The forwarding headers this edge sets, appended to `out` as name, value, name, value… */
function pushForwardingHeaders(out: string[], req: IncomingMessage, ip: string, host: string): void {
  const proto = (req.socket as TLSSocket).encrypted === true ? 'https' : 'http';
  out.push('host', host, 'x-forwarded-for', ip, 'x-forwarded-proto', proto);
  out.push('x-forwarded-host', host, 'x-real-ip', ip);
}

/**
 * Overwrite whatever forwarding headers the client sent: the upstream sees the
 * client address, scheme and normalised host as this edge saw them (a trusted
 * proxy's view of the client is taken via `clientIp`). Client `x-aiqso-*`
 * headers go, and `grant` applies as in `upstreamRequestHeaders`.
 */
export function setForwardingHeaders(req: IncomingMessage, ip: string, host: string, grant?: Grant): void {
  const h = req.headers;
  for (const name of FORWARDING) delete h[name];
  for (const name in h) if (isEdgeHeader(name)) delete h[name];
  if (grant && h.cookie !== undefined) {
    const kept = filterCookies(h.cookie, grant.cookies === 'platform');
    if (kept === undefined) delete h.cookie;
    else h.cookie = kept;
  }
  const set: string[] = grant?.identity ? [...grant.identity.headers] : [];
  pushForwardingHeaders(set, req, ip, host);
  for (let i = 0; i < set.length; i += 2) h[set[i]!] = set[i + 1];
}
