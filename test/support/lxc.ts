import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** Whether real LXC containers can run here: root, the lxc tools, and nft for the bridge's walls. */
export function lxcAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('lxc-start', ['--version'], { stdio: 'ignore' });
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A bridge name and /24 of its own for one test file or benchmark, so runs never share a network. */
export function privateNetwork(tag: string, prefix: 20 | 24 = 24): { bridge: string; subnet: string } {
  const b = randomBytes(2);
  // A /20 (4,093 containers, for the density benchmark) starts on a multiple of 16.
  const third = prefix === 20 ? b[1]! & 0xf0 : b[1]!;
  return {
    bridge: `aiqso${tag}${b.toString('hex')}`.slice(0, 15),
    subnet: `10.${200 + (b[0]! % 50)}.${third}.0/${prefix}`,
  };
}
