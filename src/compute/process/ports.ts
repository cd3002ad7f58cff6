import net from 'node:net';

/** A free loopback TCP port not in `taken`, as the kernel hands it out. */
export async function freeLoopbackPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    if (!taken.has(port)) return port;
  }
  throw new Error('no free loopback port');
}
