import { readFile, writeFile } from 'node:fs/promises';
import { run, runOk } from '../shared/run.ts';
import {
  renderAdmission,
  renderPolicy,
  tableName,
  type NetworkPolicy,
  type PolicyMember,
} from './netpolicy.ts';

/** The thin apply of `netpolicy.ts`: `nft -f -` (one transaction), the policy on stdin. */

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

export async function applyNetworkPolicy(policy: NetworkPolicy): Promise<void> {
  await runOk('nft', ['-f', '-'], { stdin: renderPolicy(policy) });
  // Masquerading needs the host to route. Turned on, never off: other parts of the host may route too.
  if (policy.egress === 'nat' && (await readFile(IP_FORWARD, 'utf8')).trim() !== '1')
    await writeFile(IP_FORWARD, '1\n');
}

/**
 * Add containers to a bridge's policy in place (`renderAdmission`): one `nft -f`
 * transaction, all or nothing. Throws when the bridge has no policy to add to.
 */
export async function admitToNetworkPolicy(bridge: string, members: PolicyMember[]): Promise<void> {
  await runOk('nft', ['-f', '-'], { stdin: renderAdmission(bridge, members) });
}

/** Remove both tables of a bridge; missing ones are fine. */
export async function removeNetworkPolicy(bridge: string): Promise<void> {
  for (const family of ['bridge', 'inet'])
    await run('nft', ['delete', 'table', family, tableName(bridge)]).catch(() => undefined);
}

/** What is in force on a bridge now (for `aiqso doctor`), or undefined when no policy is applied. */
export async function inspectNetworkPolicy(
  bridge: string,
): Promise<{ containers: number; reach: string[]; egress: 'none' | 'nat' } | undefined> {
  const out = await run('nft', ['list', 'table', 'inet', tableName(bridge)]).catch(() => undefined);
  if (out?.exitCode !== 0) return undefined;
  const reach = /set reach \{[^}]*?elements = \{([^}]*)\}/s.exec(out.stdout)?.[1] ?? '';
  const pairs = reach
    .split(',')
    .map((s) => s.trim().replace(/\s+/g, ' '))
    .filter(Boolean);
  const bridgeTable = await run('nft', ['list', 'set', 'bridge', tableName(bridge), 'addrs']).catch(
    () => undefined,
  );
  const members = /elements = \{([^}]*)\}/s.exec(bridgeTable?.stdout ?? '')?.[1] ?? '';
  return {
    containers: members.split(',').filter((s) => s.trim()).length,
    reach: pairs,
    egress: /masquerade/.test(out.stdout) ? 'nat' : 'none',
  };
}

/**
 * Runs an apply so that every request is followed by an apply that started
 * after it; requests made while one runs share the next run, which gets all
 * their items (a burst of twenty ensures costs two applies, not twenty).
 */
export class Coalesced<T = void> {
  private running?: Promise<void>;
  private next?: { items: T[]; done: Promise<void> };

  constructor(private readonly work: (items: T[]) => Promise<void>) {}

  request(...items: T[]): Promise<void> {
    if (this.next) {
      this.next.items.push(...items);
      return this.next.done;
    }
    if (!this.running) return this.start(items);
    const next = { items, done: Promise.resolve() };
    next.done = this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.start(next.items);
      });
    this.next = next;
    return next.done;
  }

  private start(items: T[]): Promise<void> {
    const run = this.work(items).finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }
}
