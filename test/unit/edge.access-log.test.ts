import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createAccessLog, millis, str } from '../../src/edge/access-log.ts';
import { createLogger } from '../../src/observability/logger.ts';

describe('edge access log', () => {
  it('quotes a string exactly as JSON.stringify does, for every UTF-16 code unit', () => {
    const differ: number[] = [];
    for (let c = 0; c <= 0xffff; c++) {
      const s = `a${String.fromCharCode(c)}b`;
      if (str(s) !== JSON.stringify(s)) differ.push(c);
    }
    expect(differ).toEqual([]);
    for (const s of ['', '/p?q="x"', 'tab\there', '\ud83d\ude00', '\ude00\ud83d', 'é/€']) {
      expect(str(s)).toBe(JSON.stringify(s));
    }
    expect(str(null)).toBeUndefined();
    expect(str(undefined)).toBeUndefined();
  });

  it('writes a duration to a tenth of a millisecond, as String(Math.round(ms * 10) / 10) does', () => {
    const differ: number[] = [];
    const check = (ms: number) => {
      if (millis(ms) !== String(Math.round(ms * 10) / 10)) differ.push(ms);
    };
    for (let i = 0; i <= 200_000; i++) check(i / 100); // 0 to 2 s in hundredths
    for (let i = 0; i < 100_000; i++) check(Math.random() * 120_000); // up to two minutes, any fraction
    for (const ms of [0, 0.04, 0.05, 0.95, 0.96, 9.95, 59_999.95, 3_600_000.04]) check(ms);
    expect(differ).toEqual([]);
  });

  it('writes one parseable line per request, whatever the client put in host and path', () => {
    const written: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        written.push(chunk.toString());
        done();
      },
    });
    const log = createLogger('info', sink);
    const access = createAccessLog(log, 60_000)!;
    const path = '/a"b\\c\n\u0001\ud800?x=é';
    access.write({
      tenantId: 'ten_1',
      route: 'rte_1',
      host: 'acme.example',
      method: 'GET',
      path,
      status: 200,
      ms: 1.46,
    });
    access.write({
      tenantId: null,
      route: undefined,
      host: undefined,
      method: 'POST',
      path: '/',
      status: 404,
      ms: 0,
    });
    access.close();
    const lines = written
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: 'info',
      service: 'aiqso',
      tenantId: 'ten_1',
      route: 'rte_1',
      host: 'acme.example',
      method: 'GET',
      path: JSON.parse(JSON.stringify(path)) as string,
      status: 200,
      ms: 1.5,
      msg: 'edge request',
    });
    expect(lines[1]).not.toHaveProperty('tenantId');
    expect(lines[1]).toMatchObject({ method: 'POST', path: '/', status: 404 });
  });

  it('redacts checkout ids and credentials in query strings', () => {
    const written: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        written.push(chunk.toString());
        done();
      },
    });
    const access = createAccessLog(createLogger('info', sink), 60_000)!;
    const entry = { tenantId: null, route: undefined, host: 'localhost', method: 'GET', status: 200, ms: 1 };
    access.write({ ...entry, path: '/billing/checkout/cs_local0123456789abcdefghijklmnop/pay' });
    access.write({ ...entry, path: '/x?token=sekrit&page=2' });
    access.close();
    const text = written.join('');
    expect(text).not.toContain('cs_local0123456789abcdefghijklmnop');
    expect(text).not.toContain('sekrit');
    const paths = text
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { path: string }).path);
    expect(paths).toEqual(['/billing/checkout/[redacted]/pay', '/x?token=[redacted]&page=2']);
  });
});
