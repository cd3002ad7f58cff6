import net from 'node:net';

/** A free loopback TCP port, as the kernel hands it out. */
export function kernelLoopbackPort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A free loopback TCP port not in `taken` (other containers' ports, and the
 * platform's own listening ports: free at this moment if the platform is not
 * running, but its again once it starts).
 */
export async function freeLoopbackPort(
  taken: ReadonlySet<number>,
  pick: () => Promise<number> = kernelLoopbackPort,
): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await pick();
    if (!taken.has(port)) return port;
  }
  throw new Error('no free loopback port');
}
