import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load.ts';

const cwd = mkdtempSync(path.join(os.tmpdir(), 'aiqso-config-'));
const load = (env: Record<string, string>, dir = cwd) => loadConfig(env, dir);
const errorOf = (env: Record<string, string>, dir = cwd) => {
  try {
    load(env, dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a configuration error');
};

describe('configuration', () => {
  it('has working defaults with nothing set', () => {
    const config = load({});
    expect(config.http).toEqual({ bind: '127.0.0.1', port: 8080 });
    expect(config.dataDir).toBe(path.join(cwd, '.aiqso'));
    expect(config.baseDomain).toBe('localhost');
    expect(config.publicUrl).toBe('http://localhost:8080');
    expect(config.driver).toBe('process');
    expect(config.edge).toBe('builtin');
    expect(config.databaseUrl).toBeUndefined();
    expect(config.graceDays).toBe(90);
    expect(config.lxc).toEqual({ subnet: '10.10.0.0/20', bridge: 'aiqsobr0', path: '/var/lib/lxc' });
    expect(config.hostCapacity).toEqual({ reserveMb: 2048, overcommit: 1 });
  });

  it('reads the host reserve and overcommit, refusing an overcommit below 1', () => {
    expect(load({ AIQSO_HOST_RESERVE_MB: '512', AIQSO_HOST_OVERCOMMIT: '1.5' }).hostCapacity).toEqual({
      reserveMb: 512,
      overcommit: 1.5,
    });
    expect(errorOf({ AIQSO_HOST_OVERCOMMIT: '0.5' })).toBe(
      'AIQSO_HOST_OVERCOMMIT: expected a ratio of at least 1, got "0.5"',
    );
    expect(errorOf({ AIQSO_HOST_RESERVE_MB: '-1' })).toBe(
      'AIQSO_HOST_RESERVE_MB: expected a number of MB ≥ 0, got "-1"',
    );
  });

  it('names the variable and what it expects for a bad port', () => {
    expect(errorOf({ AIQSO_HTTP_PORT: 'abc' })).toBe(
      'AIQSO_HTTP_PORT: expected a TCP port number (1-65535), got "abc"',
    );
    expect(errorOf({ AIQSO_HTTP_PORT: '70000' })).toMatch(/^AIQSO_HTTP_PORT: expected a TCP port/);
  });

  it('rejects unknown drivers, bad URLs and malformed Stripe keys with one line each', () => {
    expect(errorOf({ AIQSO_DRIVER: 'docker' })).toBe(
      'AIQSO_DRIVER: expected process, lxc or proxmox, got "docker"',
    );
    expect(errorOf({ DATABASE_URL: 'mysql://x' })).toMatch(
      /^DATABASE_URL: expected a postgres:\/\/ connection URL/,
    );
    expect(errorOf({ AIQSO_EDGE_PLATFORM_URL: 'https://10.0.0.2:8443' })).toMatch(
      /^AIQSO_EDGE_PLATFORM_URL: expected an http:\/\/ URL of a platform listener/,
    );
    // A secret's value is never echoed back.
    expect(errorOf({ STRIPE_SECRET_KEY: 'pk_test_abc' })).toBe(
      'STRIPE_SECRET_KEY: expected a Stripe secret key (sk_test_… or sk_live_…), got "…"',
    );
  });

  it('picks the billing mode: stripe with a Stripe key, local without, AIQSO_BILLING when set', () => {
    const stripe = { STRIPE_SECRET_KEY: 'sk_test_abc', STRIPE_WEBHOOK_SECRET: 'whsec_abc' };
    expect(load({}).billing).toEqual({ mode: 'local', explicit: false });
    expect(load(stripe).billing).toEqual({ mode: 'stripe', explicit: false });
    expect(load({ ...stripe, AIQSO_BILLING: 'local' }).billing).toEqual({ mode: 'local', explicit: true });
    expect(load({ AIQSO_BILLING: 'local' }).billing).toEqual({ mode: 'local', explicit: true });
    expect(errorOf({ AIQSO_BILLING: 'stripe' })).toBe(
      'STRIPE_SECRET_KEY: required when AIQSO_BILLING=stripe, got nothing',
    );
    expect(errorOf({ AIQSO_BILLING: 'free' })).toBe(
      'AIQSO_BILLING: expected local (simulated payments) or stripe, got "free"',
    );
  });

  it('bounds signups: the hourly limit per address and the hours an unpaid signup is kept', () => {
    expect(load({})).toMatchObject({ signupRatePerIp: 10, pendingSignupHours: 24 });
    expect(load({ AIQSO_SIGNUP_RATE_IP: '0', AIQSO_PENDING_SIGNUP_HOURS: '2' })).toMatchObject({
      signupRatePerIp: 0,
      pendingSignupHours: 2,
    });
    expect(errorOf({ AIQSO_SIGNUP_RATE_IP: '-1' })).toMatch(
      /^AIQSO_SIGNUP_RATE_IP: expected signups per hour/,
    );
    expect(errorOf({ AIQSO_PENDING_SIGNUP_HOURS: '0' })).toBe(
      'AIQSO_PENDING_SIGNUP_HOURS: expected at least 1 hour, got "0"',
    );
  });

  it('requires variables that only make sense together', () => {
    expect(errorOf({ AIQSO_HTTPS_PORT: '8443' })).toBe(
      'AIQSO_TLS_CERT: required when AIQSO_HTTPS_PORT is set, got nothing',
    );
    expect(errorOf({ AIQSO_DRIVER: 'proxmox' })).toMatch(/^PROXMOX_URL: required when AIQSO_DRIVER=proxmox/);
  });

  it('derives the public URL from HTTPS settings', () => {
    const config = load({
      AIQSO_BASE_DOMAIN: 'aiqso.io',
      AIQSO_HTTPS_PORT: '443',
      AIQSO_TLS_CERT: '/c.pem',
      AIQSO_TLS_KEY: '/k.pem',
    });
    expect(config.publicUrl).toBe('https://aiqso.io');
  });

  it('reads aiqso.config.yaml and lets the environment win', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-config-'));
    writeFileSync(
      path.join(dir, 'aiqso.config.yaml'),
      'AIQSO_HTTP_PORT: 9000\nAIQSO_BASE_DOMAIN: example.test\n',
    );
    expect(load({}, dir).http.port).toBe(9000);
    expect(load({}, dir).baseDomain).toBe('example.test');
    expect(load({ AIQSO_HTTP_PORT: '9001' }, dir).http.port).toBe(9001);
  });

  it('names the file for an unknown setting or bad YAML', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-config-'));
    const file = path.join(dir, 'aiqso.config.yaml');
    writeFileSync(file, 'AIQSO_HTTP_PROT: 9000\n');
    expect(errorOf({}, dir)).toBe(`${file}: unknown setting AIQSO_HTTP_PROT`);
    writeFileSync(file, 'a: [unclosed\n');
    expect(errorOf({}, dir)).toMatch(/not valid YAML/);
  });

  it('configures the ACME DNS-01 hook: an absolute path, only with a directory, without the platform settings', () => {
    const acme = { AIQSO_ACME_DIRECTORY_URL: 'https://acme.example/directory' };
    expect(load({}).certRenewDays).toBe(30);
    expect(load(acme).acme?.dnsHook).toBeUndefined();
    const config = load({
      ...acme,
      AIQSO_ACME_DNS_HOOK: '/etc/aiqso/dns-hook',
      AIQSO_ACME_DNS_PROPAGATION_SECONDS: '0',
      AIQSO_CERT_RENEW_DAYS: '20',
      DATABASE_URL: 'postgres://aiqso@db/aiqso',
      DNS_PROVIDER_TOKEN: 'operator-token',
    });
    expect(config.acme?.dnsHook).toEqual({
      path: '/etc/aiqso/dns-hook',
      propagationSeconds: 0,
      env: { DNS_PROVIDER_TOKEN: 'operator-token' },
    });
    expect(config.certRenewDays).toBe(20);
    expect(load({ ...acme, AIQSO_ACME_DNS_HOOK: '/x' }).acme?.dnsHook?.propagationSeconds).toBe(30);
    expect(errorOf({ ...acme, AIQSO_ACME_DNS_HOOK: 'dns-hook.sh' })).toBe(
      'AIQSO_ACME_DNS_HOOK: expected the absolute path of an executable, got "dns-hook.sh"',
    );
    expect(errorOf({ AIQSO_ACME_DNS_HOOK: '/etc/aiqso/dns-hook' })).toBe(
      'AIQSO_ACME_DIRECTORY_URL: required when AIQSO_ACME_DNS_HOOK is set, got nothing',
    );
    expect(errorOf({ AIQSO_CERT_RENEW_DAYS: '0' })).toMatch(
      /^AIQSO_CERT_RENEW_DAYS: expected between 1 and 365 days/,
    );
  });

  it('treats empty environment values as unset', () => {
    expect(load({ AIQSO_HTTP_PORT: '' }).http.port).toBe(8080);
  });
});
