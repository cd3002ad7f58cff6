import { badRequest } from '../../core/errors.ts';

/** IPv4 subnet arithmetic for the platform's address pools. Pure. */
export interface Subnet {
  /** `10.10.10.0/24` (normalised to the network address). */
  cidr: string;
  prefix: number;
  /** The host's address on the bridge: network + 1. */
  gateway: string;
  /** Addresses containers may get: network + 2 … broadcast − 1. */
  first: number;
  last: number;
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw badRequest(`"${ip}" is not an IPv4 address`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function parseSubnet(cidr: string): Subnet {
  const [ip, bits] = cidr.split('/');
  const prefix = Number(bits);
  if (!ip || !Number.isInteger(prefix) || prefix < 16 || prefix > 30) {
    throw badRequest(`"${cidr}" is not an IPv4 CIDR between /16 and /30`);
  }
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(ip) & mask) >>> 0;
  const broadcast = (network | (~mask >>> 0)) >>> 0;
  return {
    cidr: `${intToIp(network)}/${prefix}`,
    prefix,
    gateway: intToIp(network + 1),
    first: network + 2,
    last: broadcast - 1,
  };
}

export function inSubnet(subnet: Subnet, ip: string): boolean {
  const n = ipToInt(ip);
  return n >= subnet.first && n <= subnet.last;
}

/** The lowest free container address, or undefined when the pool is full. */
export function firstFree(subnet: Subnet, taken: Iterable<string>): string | undefined {
  const used = new Set([...taken].map(ipToInt));
  for (let n = subnet.first; n <= subnet.last; n++) if (!used.has(n)) return intToIp(n);
  return undefined;
}
