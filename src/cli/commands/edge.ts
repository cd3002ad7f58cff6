import type { CommandContext } from '../context.ts';

/**
 * `aiqso edge`: the edge alone (edge-serve.ts), on the main thread. Its heap
 * is sized like any Node.js process's, from NODE_OPTIONS (e.g.
 * `--max-old-space-size=256`; docs/running.md).
 */
export async function edge(ctx: CommandContext): Promise<void> {
  return (await import('./edge-serve.ts')).serveEdge(ctx);
}
