import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { calculateJwkThumbprint, flattenedVerify, importJWK, type FlattenedJWSInput, type JWK } from 'jose';

/**
 * A small ACME CA (RFC 8555) for tests, holding to the contract as far as
 * acme-client drives it: every POST is a flattened JWS whose signature is
 * checked against the account key (`jwk` only for newAccount, `kid` after),
 * whose nonce was issued by this CA and is used once, and whose `url` is the
 * URL posted to; an HTTP-01 challenge is validated by fetching
 * `/.well-known/acme-challenge/<token>` with the identifier as Host from
 * `validateAt` and comparing it with `<token>.<account key thumbprint>`; a
 * DNS-01 challenge by looking up the TXT records of
 * `_acme-challenge.<identifier>` through `options.txt` (there is no DNS server
 * here: the test's hook writes the records where that lookup reads them) and
 * requiring one of them to be base64url(SHA-256(<token>.<thumbprint>)). As a
 * real CA, a wildcard identifier's authorisation names the base domain with
 * `wildcard: true` and offers DNS-01 only; a failed validation carries the
 * problem on the challenge. An order is finalised only once its
 * authorisations are valid, and only with a CSR for exactly its identifiers;
 * the certificate is signed by this CA's key (openssl), valid `validityDays`.
 */
export interface FakeAcmeOptions {
  /** TXT records at a name, for DNS-01 validation. */
  txt?: (name: string) => string[] | Promise<string[]>;
}

export interface FakeAcme {
  directoryUrl: string;
  /** PEM of the CA certificate that signs issued certificates. */
  caPem: string;
  /** Validations made: challenge type, identifier, token, and whether the answer was right. */
  validations: { type: ChallengeType; identifier: string; token: string; ok: boolean }[];
  /** Orders placed (new-order requests accepted). */
  ordered: number;
  issued: number;
  /** Validity of the certificates issued from now on (default 1 day). */
  validityDays: number;
  close(): Promise<void>;
}

type Status = 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
type ChallengeType = 'http-01' | 'dns-01';
interface Challenge {
  type: ChallengeType;
  token: string;
  status: Status;
  authz: string;
  error?: { type: string; detail: string };
}
interface Authz {
  /** The name validated: a wildcard's base domain. */
  identifier: string;
  wildcard: boolean;
  status: Status;
  account: string;
  challenges: string[];
}
interface Order {
  identifiers: string[];
  status: Status;
  authzs: string[];
  account: string;
  certificate?: string;
}

function openssl(args: string[]) {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

export async function startFakeAcme(
  validateAt: { host: string; port: number },
  options: FakeAcmeOptions = {},
): Promise<FakeAcme> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-fake-acme-'));
  const caKey = path.join(dir, 'ca.key');
  const caCrt = path.join(dir, 'ca.crt');
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=AIQSO test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', caKey, '-out', caCrt,
  ]); // prettier-ignore
  const caPem = readFileSync(caCrt, 'utf8');

  const nonces = new Set<string>();
  const accounts = new Map<string, JWK>();
  const orders = new Map<string, Order>();
  const authzs = new Map<string, Authz>();
  const challenges = new Map<string, Challenge>();
  const certificates = new Map<string, string>();
  const validations: FakeAcme['validations'] = [];
  let issued = 0;
  let ordered = 0;
  let validityDays = 1;
  let base = '';
  const id = () => randomBytes(8).toString('hex');
  const nonce = () => {
    const n = randomBytes(16).toString('base64url');
    nonces.add(n);
    return n;
  };

  class Problem extends Error {
    constructor(
      readonly status: number,
      readonly type: string,
      detail: string,
    ) {
      super(detail);
    }
  }

  /** Verify a request's JWS; returns the account URL (or the new account's JWK) and the payload. */
  async function verify(req: http.IncomingMessage, url: string, body: string) {
    if (req.headers['content-type'] !== 'application/jose+json')
      throw new Problem(415, 'malformed', 'content type must be application/jose+json');
    const jws = JSON.parse(body) as FlattenedJWSInput;
    const header = JSON.parse(Buffer.from(jws.protected!, 'base64url').toString()) as {
      alg: string;
      nonce: string;
      url: string;
      jwk?: JWK;
      kid?: string;
    };
    if (!nonces.delete(header.nonce)) throw new Problem(400, 'badNonce', 'unknown or used nonce');
    if (header.url !== url) throw new Problem(401, 'unauthorized', 'url in the JWS header is not this URL');
    if (Boolean(header.jwk) === Boolean(header.kid))
      throw new Problem(400, 'malformed', 'need exactly one of jwk, kid');
    const newAccount = url === `${base}/new-account`;
    if (header.jwk && !newAccount) throw new Problem(400, 'malformed', 'jwk is only for newAccount');
    const jwk = header.jwk ?? accounts.get(header.kid!);
    if (!jwk) throw new Problem(400, 'accountDoesNotExist', 'no such account');
    const { payload } = await flattenedVerify(jws, await importJWK(jwk, header.alg)).catch(() => {
      throw new Problem(400, 'malformed', 'JWS signature does not verify');
    });
    const text = Buffer.from(payload).toString();
    return { account: header.kid, jwk, payload: text === '' ? undefined : (JSON.parse(text) as unknown) };
  }

  function ownedBy<T extends { account: string }>(map: Map<string, T>, key: string, account?: string): T {
    const item = map.get(key);
    if (!item) throw new Problem(404, 'malformed', 'not found');
    if (item.account !== account) throw new Problem(403, 'unauthorized', 'not this account');
    return item;
  }

  const orderJson = (o: Order, key: string) => ({
    status: o.status,
    identifiers: o.identifiers.map((value) => ({ type: 'dns', value })),
    authorizations: o.authzs.map((a) => `${base}/authz/${a}`),
    finalize: `${base}/order/${key}/finalize`,
    ...(o.certificate ? { certificate: `${base}/cert/${o.certificate}` } : {}),
  });
  const authzJson = (a: Authz) => ({
    status: a.status,
    identifier: { type: 'dns', value: a.identifier },
    ...(a.wildcard ? { wildcard: true } : {}),
    challenges: a.challenges.map(challengeJson),
  });
  const challengeJson = (key: string) => {
    const c = challenges.get(key)!;
    return {
      type: c.type,
      url: `${base}/chall/${key}`,
      token: c.token,
      status: c.status,
      ...(c.error ? { error: c.error } : {}),
    };
  };

  async function fetchHttp01(a: Authz, c: Challenge): Promise<string> {
    return new Promise<string>((resolve) => {
      const r = http.get(
        {
          host: validateAt.host,
          port: validateAt.port,
          path: `/.well-known/acme-challenge/${c.token}`,
          headers: { host: a.identifier },
        },
        (res) => {
          let b = '';
          res.on('data', (chunk: Buffer) => (b += chunk.toString()));
          res.on('end', () => resolve(res.statusCode === 200 ? b : ''));
        },
      );
      r.on('error', () => resolve(''));
    });
  }

  async function validate(c: Challenge, jwk: JWK) {
    const a = authzs.get(c.authz)!;
    const keyAuthorization = `${c.token}.${await calculateJwkThumbprint(jwk)}`;
    let ok: boolean;
    if (c.type === 'http-01') {
      ok = (await fetchHttp01(a, c)).trim() === keyAuthorization;
      if (!ok)
        c.error = { type: 'urn:ietf:params:acme:error:unauthorized', detail: 'invalid HTTP-01 response' };
    } else {
      const name = `_acme-challenge.${a.identifier}`;
      const expected = createHash('sha256').update(keyAuthorization).digest('base64url');
      const found = options.txt ? await options.txt(name) : [];
      ok = found.includes(expected);
      if (!ok)
        c.error = {
          type: 'urn:ietf:params:acme:error:unauthorized',
          detail:
            found.length === 0
              ? `No TXT record found at ${name}`
              : `Incorrect TXT record "${found[0]}" found at ${name}`,
        };
    }
    validations.push({ type: c.type, identifier: a.identifier, token: c.token, ok });
    c.status = a.status = ok ? 'valid' : 'invalid';
    for (const o of orders.values()) {
      if (!o.authzs.includes(c.authz) || o.status !== 'pending') continue;
      const states = o.authzs.map((k) => authzs.get(k)!.status);
      if (states.includes('invalid')) o.status = 'invalid';
      else if (states.every((s) => s === 'valid')) o.status = 'ready';
    }
  }

  function issue(o: Order, csrB64: string): string {
    const work = mkdtempSync(path.join(dir, 'csr-'));
    const der = Buffer.from(csrB64, 'base64url');
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    writeFileSync(path.join(work, 'req.csr'), pem);
    try {
      openssl(['req', '-in', path.join(work, 'req.csr'), '-noout', '-verify']);
      openssl([
        'x509', '-req', '-in', path.join(work, 'req.csr'), '-CA', caCrt, '-CAkey', caKey,
        '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', String(validityDays), '-copy_extensions', 'copy',
        '-out', path.join(work, 'cert.pem'),
      ]); // prettier-ignore
    } catch {
      throw new Problem(400, 'badCSR', 'CSR does not verify');
    }
    const cert = readFileSync(path.join(work, 'cert.pem'), 'utf8');
    const names = (new X509Certificate(cert).subjectAltName ?? '')
      .split(', ')
      .map((n) => n.replace(/^DNS:/, ''))
      .sort();
    if (names.join(',') !== [...o.identifiers].sort().join(','))
      throw new Problem(400, 'badCSR', 'CSR names are not the order identifiers');
    return cert + caPem;
  }

  async function handle(req: http.IncomingMessage, body: string, res: http.ServerResponse) {
    const url = `${base}${req.url}`;
    const send = (status: number, json: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'replay-nonce': nonce(), ...headers });
      res.end(JSON.stringify(json));
    };
    if (req.url === '/directory') {
      return send(200, {
        newNonce: `${base}/new-nonce`,
        newAccount: `${base}/new-account`,
        newOrder: `${base}/new-order`,
        revokeCert: `${base}/revoke-cert`,
        keyChange: `${base}/key-change`,
        meta: { termsOfService: `${base}/terms` },
      });
    }
    if (req.url === '/new-nonce') {
      res.writeHead(req.method === 'HEAD' ? 200 : 204, {
        'replay-nonce': nonce(),
        'cache-control': 'no-store',
      });
      return res.end();
    }
    if (req.method !== 'POST') throw new Problem(405, 'malformed', 'POST only');
    const { account, jwk, payload } = await verify(req, url, body);
    const parts = req.url!.split('/').filter(Boolean);
    if (req.url === '/new-account') {
      const p = payload as { termsOfServiceAgreed?: boolean };
      if (!p.termsOfServiceAgreed) throw new Problem(403, 'userActionRequired', 'agree to the terms');
      const thumb = await calculateJwkThumbprint(jwk);
      const accountUrl = `${base}/acct/${thumb}`;
      const existed = accounts.has(accountUrl);
      accounts.set(accountUrl, jwk);
      return send(existed ? 200 : 201, { status: 'valid' }, { location: accountUrl });
    }
    if (parts[0] === 'acct') {
      // Account update or POST-as-GET (RFC 8555 §7.3.2): a returning account (a renewal) does this first.
      if (account !== url) throw new Problem(403, 'unauthorized', 'not this account');
      const contact = (payload as { contact?: string[] } | undefined)?.contact;
      return send(200, { status: 'valid', ...(contact ? { contact } : {}) }, { location: url });
    }
    if (req.url === '/new-order') {
      const p = payload as { identifiers: { type: string; value: string }[] };
      if (!p.identifiers?.length || p.identifiers.some((i) => i.type !== 'dns'))
        throw new Problem(400, 'rejectedIdentifier', 'dns identifiers only');
      const key = id();
      const order: Order = {
        identifiers: p.identifiers.map((i) => i.value),
        status: 'pending',
        authzs: [],
        account: account!,
      };
      for (const identifier of order.identifiers) {
        const a = id();
        const wildcard = identifier.startsWith('*.');
        const types: ChallengeType[] = wildcard ? ['dns-01'] : ['http-01', 'dns-01'];
        const keys = types.map((type) => {
          const c = id();
          challenges.set(c, {
            type,
            token: randomBytes(16).toString('base64url'),
            status: 'pending',
            authz: a,
          });
          return c;
        });
        authzs.set(a, {
          identifier: identifier.replace(/^\*\./, ''),
          wildcard,
          status: 'pending',
          account: account!,
          challenges: keys,
        });
        order.authzs.push(a);
      }
      orders.set(key, order);
      ordered++;
      return send(201, orderJson(order, key), { location: `${base}/order/${key}` });
    }
    if (parts[0] === 'authz') {
      const a = ownedBy(authzs, parts[1]!, account);
      if ((payload as { status?: string } | undefined)?.status === 'deactivated') a.status = 'invalid';
      return send(200, authzJson(a));
    }
    if (parts[0] === 'chall') {
      const c = challenges.get(parts[1]!);
      if (!c) throw new Problem(404, 'malformed', 'not found');
      ownedBy(authzs, c.authz, account);
      const a = authzs.get(c.authz)!;
      if (payload !== undefined && c.status === 'pending' && a.status === 'pending') await validate(c, jwk);
      return send(200, challengeJson(parts[1]!));
    }
    if (parts[0] === 'order' && parts[2] === 'finalize') {
      const o = ownedBy(orders, parts[1]!, account);
      if (o.status !== 'ready') throw new Problem(403, 'orderNotReady', `order is ${o.status}`);
      const chain = issue(o, (payload as { csr: string }).csr);
      const certKey = id();
      certificates.set(certKey, chain);
      o.certificate = certKey;
      o.status = 'valid';
      issued++;
      return send(200, orderJson(o, parts[1]!), { location: `${base}/order/${parts[1]}` });
    }
    if (parts[0] === 'order') return send(200, orderJson(ownedBy(orders, parts[1]!, account), parts[1]!));
    if (parts[0] === 'cert') {
      const chain = certificates.get(parts[1]!);
      if (!chain) throw new Problem(404, 'malformed', 'not found');
      res.writeHead(200, { 'content-type': 'application/pem-certificate-chain', 'replay-nonce': nonce() });
      return res.end(chain);
    }
    throw new Problem(404, 'malformed', 'not found');
  }

  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      handle(req, body, res).catch((err: unknown) => {
        const p = err instanceof Problem ? err : new Problem(500, 'serverInternal', String(err));
        res.writeHead(p.status, { 'content-type': 'application/problem+json', 'replay-nonce': nonce() });
        res.end(JSON.stringify({ type: `urn:ietf:params:acme:error:${p.type}`, detail: p.message }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    directoryUrl: `${base}/directory`,
    caPem,
    validations,
    get ordered() {
      return ordered;
    },
    get issued() {
      return issued;
    },
    get validityDays() {
      return validityDays;
    },
    set validityDays(days: number) {
      validityDays = days;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
