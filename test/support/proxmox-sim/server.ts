import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { ensureBridge, removeBridge } from '../../../src/compute/lxc/bridge.ts';
import { parseSubnet } from '../../../src/compute/shared/subnet.ts';
import { Cluster, PveFailure } from './cluster.ts';
import { HANDLERS } from './handlers.ts';
import { ApiSchema, checkReturn } from './schema.ts';
import { Workloads } from './workloads.ts';

const SCHEMA_FILE = fileURLToPath(new URL('../../fixtures/proxmox-api-subset.json', import.meta.url));

export interface ProxmoxSimulator {
  url: string;
  cluster: Cluster;
  tokenId: string;
  tokenSecret: string;
  /** PEM of the self-signed certificate (usable as the CA file). */
  certFile: string;
  fingerprint: string;
  /** Every request that reached the API (after authentication), for assertions. */
  requests: { method: string; path: string; params: Record<string, string>; status: number }[];
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1, like a fresh Proxmox node's. */
function makeCertificate(dir: string): { key: string; cert: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=pve-sim',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { key, cert };
}

async function readParams(
  req: import('node:http').IncomingMessage,
  url: URL,
): Promise<Record<string, string>> {
  const params: Record<string, string> = {};
  for (const [k, v] of url.searchParams) params[k] = v;
  if (req.method === 'POST' || req.method === 'PUT') {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const type = req.headers['content-type'] ?? '';
    const body = type.startsWith('multipart/') ? '' : raw.toString();
    if (type.startsWith('multipart/form-data')) {
      // pve-http-server's upload: the file goes to a temporary file, named by `tmpfilename`.
      const form = await new Response(raw, { headers: { 'content-type': type } }).formData();
      for (const [k, v] of form) {
        if (typeof v === 'string') params[k] = v;
        else {
          const tmp = `/var/tmp/pveupload-${randomBytes(8).toString('hex')}`;
          await writeFile(tmp, Buffer.from(await v.arrayBuffer()), { mode: 0o600 });
          params[k] = v.name;
          params.tmpfilename = tmp;
        }
      }
    } else if (type.startsWith('application/json') && body) {
      for (const [k, v] of Object.entries(JSON.parse(body) as Record<string, unknown>)) {
        params[k] = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
      }
    } else for (const [k, v] of new URLSearchParams(body)) params[k] = v;
  }
  return params;
}

export interface SimulatorOptions {
  /** containers-registries.conf the nodes pull OCI images with (a local registry marked insecure). */
  registriesConf?: string;
  /**
   * The bridge (made on this host, the subnet's .1 on it) that containers made
   * from OCI images join when they start; without it they cannot start.
   */
  network?: { bridge: string; subnet: string };
}

/**
 * An HTTPS server on loopback that answers like the Proxmox VE API and
 * validates every request against its schema; containers made from OCI
 * images really run (`workloads.ts`).
 */
export async function startProxmoxSimulator(options: SimulatorOptions = {}): Promise<ProxmoxSimulator> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-pve-sim-'));
  const { key, cert } = makeCertificate(dir);
  const schema = new ApiSchema(SCHEMA_FILE);
  const cluster = new Cluster();
  const subnet = options.network && parseSubnet(options.network.subnet);
  if (options.network) await ensureBridge(options.network.bridge, subnet!);
  cluster.workloads = new Workloads(
    path.join(dir, 'node'),
    options.registriesConf,
    options.network && { bridge: options.network.bridge, prefix: subnet!.prefix },
  );
  const tokenId = 'aiqso@pve!control';
  const tokenSecret = '3f1c2a9e-5b7d-4c1e-9a2b-6d8e0f1a2b3c';
  const requests: ProxmoxSimulator['requests'] = [];

  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    const send = (status: number, body: unknown, reason?: string) => {
      res.statusCode = status;
      if (reason) res.statusMessage = reason.replace(/[^\x20-\x7e]/g, ' ');
      res.setHeader('content-type', 'application/json;charset=UTF-8');
      res.end(JSON.stringify(body));
    };
    void (async () => {
      const url = new URL(req.url ?? '/', 'https://sim');
      if (!url.pathname.startsWith('/api2/json/')) return send(404, { data: null }, 'Not Found');
      if (req.headers.authorization !== `PVEAPIToken=${tokenId}=${tokenSecret}`) {
        return send(401, { data: null }, 'authentication failure');
      }
      const apiPath = url.pathname.slice('/api2/json'.length);
      const method = req.method ?? 'GET';
      const params = await readParams(req, url);
      const { endpoint, params: pathParams, methods } = schema.match(method, apiPath);
      const record = (status: number) => requests.push({ method, path: apiPath, params, status });
      if (!endpoint) {
        record(methods.length ? 501 : 404);
        return methods.length
          ? send(501, { data: null }, `Method '${method} ${apiPath}' not implemented`)
          : send(404, { data: null }, 'Not Found');
      }
      const all = { ...params, ...pathParams };
      const errors = schema.validate(endpoint, all);
      if (Object.keys(errors).length) {
        record(400);
        return send(
          400,
          { data: null, errors, message: 'Parameter verification failed.\n' },
          'Parameter verification failed.',
        );
      }
      try {
        if (pathParams.node) cluster.node(pathParams.node);
        if (cluster.takeFault('lock', method, apiPath))
          throw cluster.lockTimeout(Number(pathParams.vmid ?? 0));
        const handler = HANDLERS[`${method} ${endpoint.path}`];
        if (!handler) throw new PveFailure(501, `simulator does not implement ${method} ${endpoint.path}`);
        const data = handler(cluster, all, cluster.takeFault('task', method, apiPath));
        const problems = checkReturn(endpoint.returns, data);
        if (problems.length)
          throw new PveFailure(500, `simulator response violates schema: ${problems.join('; ')}`);
        record(200);
        send(200, { data });
      } catch (err) {
        const status = err instanceof PveFailure ? err.status : 500;
        record(status);
        const message = (err as Error).message;
        send(
          status,
          {
            data: null,
            message: `${message}\n`,
            ...(err instanceof PveFailure && err.errors ? { errors: err.errors } : {}),
          },
          message,
        );
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    cluster,
    tokenId,
    tokenSecret,
    certFile: cert,
    fingerprint: new X509Certificate(readFileSync(cert)).fingerprint256,
    requests,
    async close() {
      await cluster.workloads?.close();
      if (options.network) await removeBridge(options.network.bridge);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
