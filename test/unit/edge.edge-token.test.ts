import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cookieValue, filterCookies, isPlatformCookie } from '../../src/edge/auth/cookies.ts';
import { verifyEdgeToken } from '../../src/edge/auth/edge-token.ts';
import { loginLocation } from '../../src/edge/auth/identity.ts';
import { isPublicPath, isPublicRequest, type EdgeRoute } from '../../src/edge/route-table.ts';

/**
 * The edge's own checks, by value: the edge-session token (only EdDSA, only
 * `edge+jwt`, signature, issuer, claims, time), the cookie sorting, the
 * sign-in location and public paths.
 */
const ISSUER = 'https://aiqso.test';
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const keys = (kid: string): KeyObject | undefined => (kid === 'k1' ? publicKey : undefined);
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const CLAIMS = {
  iss: ISSUER,
  sub: 'usr_1',
  aud: 'acme.aiqso.test',
  email: 'a@acme.test',
  role: 'tenant_member',
  tid: 'ten_1',
  sid: 'ses_1',
  iat: now,
  nbf: now,
  exp: now + 600,
};

function token(
  claims: Record<string, unknown> = CLAIMS,
  header: Record<string, unknown> = { alg: 'EdDSA', typ: 'edge+jwt', kid: 'k1' },
  key = privateKey,
) {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

const check = (t: string) => verifyEdgeToken(t, keys, { issuer: ISSUER });

describe('edge session token', () => {
  it('accepts a token signed with a known key, with its claims', () => {
    expect(check(token())).toEqual({
      ok: true,
      claims: {
        sub: 'usr_1',
        email: 'a@acme.test',
        role: 'tenant_member',
        tid: 'ten_1',
        sid: 'ses_1',
        aud: 'acme.aiqso.test',
        exp: now + 600,
      },
    });
  });

  it.each([
    ['alg none', () => `${b64({ alg: 'none', typ: 'edge+jwt', kid: 'k1' })}.${b64(CLAIMS)}.`, 'malformed'],
    [
      'HS256 keyed with anything',
      () => {
        const input = `${b64({ alg: 'HS256', typ: 'edge+jwt', kid: 'k1' })}.${b64(CLAIMS)}`;
        return `${input}.${createHmac('sha256', 'k1').update(input).digest('base64url')}`;
      },
      'malformed',
    ],
    ['an access token', () => token(CLAIMS, { alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }), 'malformed'],
    ['no kid', () => token(CLAIMS, { alg: 'EdDSA', typ: 'edge+jwt' }), 'malformed'],
    ['another key under the known kid', () => token(CLAIMS, undefined, other.privateKey), 'signature'],
    [
      'a changed payload',
      () => token().replace(/\.[^.]+\./, `.${b64({ ...CLAIMS, tid: 'ten_2' })}.`),
      'signature',
    ],
    ['a truncated signature', () => token().slice(0, -10), 'signature'],
    ['another issuer', () => token({ ...CLAIMS, iss: 'https://evil.test' }), 'claims'],
    ['an unknown role', () => token({ ...CLAIMS, role: 'root' }), 'claims'],
    ['no session', () => token({ ...CLAIMS, sid: undefined }), 'claims'],
    ['an audience list', () => token({ ...CLAIMS, aud: ['acme.aiqso.test'] }), 'claims'],
    ['expired', () => token({ ...CLAIMS, exp: now - 60 }), 'expired'],
    ['not yet valid', () => token({ ...CLAIMS, nbf: now + 600 }), 'expired'],
    ['four parts', () => `${token()}.x`, 'malformed'],
    ['too long', () => token({ ...CLAIMS, pad: 'x'.repeat(5000) }), 'malformed'],
  ])('refuses %s', (_what, make, reason) => {
    expect(check(make())).toMatchObject({ ok: false, reason });
  });

  it('asks for a key it does not know, by its id', () => {
    expect(check(token(CLAIMS, { alg: 'EdDSA', typ: 'edge+jwt', kid: 'k2' }))).toEqual({
      ok: false,
      reason: 'unknown_key',
      kid: 'k2',
    });
  });
});

describe('cookies, sign-in location and public paths', () => {
  it("keeps the platform's cookies for the dashboard and everything else for a service", () => {
    const header =
      'aiqso_dash=a.b; theme=dark; aiqso_edge=t; __Host-aiqso_csrf=c;  lang=en; broken; AIQSO_RT=r';
    expect(filterCookies(header, true)).toBe('aiqso_dash=a.b; aiqso_edge=t; __Host-aiqso_csrf=c; AIQSO_RT=r');
    expect(filterCookies(header, false)).toBe('theme=dark; lang=en');
    expect(filterCookies('aiqso_edge=t', false)).toBeUndefined();
    expect(isPlatformCookie('myaiqso_x')).toBe(false);
    expect(cookieValue('theme=dark; aiqso_edge=tok.en.x; aiqso_edge=second', 'aiqso_edge')).toBe('tok.en.x');
    expect(cookieValue('xaiqso_edge=no', 'aiqso_edge')).toBeUndefined();
  });

  it('sends a browser to sign in with its path and query to come back to, kept on this host', () => {
    expect(loginLocation('/notes/')).toBe('/login?next=/notes/');
    const location = loginLocation('/notes/a b?x=1&next=//evil.test#f');
    expect(location).toBe('/login?next=/notes/a%20b%3Fx%3D1%26next%3D//evil.test%23f');
    expect(new URL(location, 'http://h').searchParams.get('next')).toBe('/notes/a b?x=1&next=//evil.test#f');
  });

  it('matches a public path and what is below it, nothing else', () => {
    const route = { pathPrefix: '/cal', publicPaths: ['/booking'] } as Partial<EdgeRoute> as EdgeRoute;
    expect(
      ['/cal/booking', '/cal/booking/', '/cal/booking/42'].map((p) => isPublicRequest(route, p)),
    ).toEqual([true, true, true]);
    expect(
      ['/cal', '/cal/bookings', '/cal/x/booking', '/booking'].map((p) => isPublicRequest(route, p)),
    ).toEqual([false, false, false, false]);
    expect(['/booking', '/api/public.v1', '/a/b'].every(isPublicPath)).toBe(true);
    expect(['booking', '/', '/a/../b', '/a/./b', '/a//b', '/a%2fb', '/a b', '/a;b'].some(isPublicPath)).toBe(
      false,
    );
  });
});
