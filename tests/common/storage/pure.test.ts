import { HttpError } from '@influxdata/influxdb-client';
import { describe, expect, it } from 'vitest';
import { iql, quoteIdent, quoteString, regexLiteral, timeMs } from '../../../common/storage/influxql.js';
import { PointSchemaError, toLine } from '../../../common/storage/line-protocol.js';
import { toV1WritePath } from '../../../common/storage/transport.js';
import { classifyWriteError, offendingLines, parseRetryAfter } from '../../../common/storage/write-errors.js';

const http = (status: number, body = '', headers: Record<string, string> = {}) =>
  new HttpError(status, 'x', body, undefined, 'application/json', undefined, headers);

describe('line protocol', () => {
  it('serialises typed fields in their definition order and sorts tags', () => {
    const line = toLine({
      measurement: 'iface',
      tags: { school: 'S 1', device: 'gw', uplink: 'true', region: '' },
      fields: {
        in_octets: 18446744073709551615n,
        in_bps: 1.5,
        oper_up: 1,
        oper_status: 'up',
        speed_mbps: 1000,
      },
      ts: 1_788_000_000_000,
    });
    // uint64 max → two's complement −1; empty tag omitted; fields as contracts/influx.ts lists them; ms timestamp
    expect(line).toBe(
      'iface,device=gw,school=S\\ 1,uplink=true in_octets=-1i,in_bps=1.5,speed_mbps=1000,oper_up=1i,oper_status="up" 1788000000000',
    );
  });

  it('refuses undefined tags, fields and measurements, and wrong types', () => {
    expect(() =>
      toLine({ measurement: 'host', tags: { serial: 'x' } as never, fields: { cpu_pct: 1 }, ts: 1 }),
    ).toThrow(PointSchemaError);
    expect(() => toLine({ measurement: 'host', tags: {}, fields: { nope: 1 } as never, ts: 1 })).toThrow(
      /not defined/,
    );
    expect(() => toLine({ measurement: 'nope' as 'host', tags: {}, fields: {}, ts: 1 })).toThrow(
      /unknown measurement/,
    );
    expect(() => toLine({ measurement: 'host', tags: {}, fields: { cpu_pct: '1' as never }, ts: 1 })).toThrow(
      /number/,
    );
    expect(() => toLine({ measurement: 'host', tags: {}, fields: { cpu_pct: 1 }, ts: 1.5 })).toThrow(
      /integer/,
    );
  });

  it('writes counters given as decimal strings, and refuses other strings for integer fields', () => {
    expect(
      toLine({
        measurement: 'nic',
        tags: {},
        fields: { rx_bytes: '123', tx_bytes: '18446744073709551615' },
        ts: 1,
      }),
    ).toBe('nic rx_bytes=123i,tx_bytes=-1i 1');
    expect(() => toLine({ measurement: 'nic', tags: {}, fields: { rx_bytes: '12x' }, ts: 1 })).toThrow(
      /not decimal/,
    );
  });

  it('drops a trailing backslash from a tag value instead of swallowing the next tag', () => {
    expect(
      toLine({ measurement: 'nic', tags: { nic: 'eth0\\', school: 's1' }, fields: { rx_bps: 1 }, ts: 1 }),
    ).toBe('nic,nic=eth0,school=s1 rx_bps=1 1');
  });

  it('caches series keys without mixing up tag sets', () => {
    const a = toLine({
      measurement: 'host',
      tags: { school: 'a', device: 'd' },
      fields: { cpu_pct: 1 },
      ts: 1,
    });
    const b = toLine({ measurement: 'host', tags: { school: 'a d' }, fields: { cpu_pct: 1 }, ts: 1 });
    const c = toLine({
      measurement: 'host',
      tags: { school: 'a', device: 'd' },
      fields: { cpu_pct: 2 },
      ts: 2,
    });
    expect([a, b, c]).toEqual([
      'host,device=d,school=a cpu_pct=1 1',
      'host,school=a\\ d cpu_pct=1 1',
      'host,device=d,school=a cpu_pct=2 2',
    ]);
  });

  it('skips non-finite floats and returns nothing for a point without fields', () => {
    expect(toLine({ measurement: 'host', tags: {}, fields: { cpu_pct: Number.NaN }, ts: 1 })).toBeUndefined();
    expect(toLine({ measurement: 'host', tags: {}, fields: { cpu_pct: Infinity, uptime_s: 3 }, ts: 1 })).toBe(
      'host uptime_s=3i 1',
    );
  });

  it('writes every defined field whatever the order or the gaps, and still refuses one among defined ones', () => {
    // The fields writer is generated per measurement (line-protocol.ts compileFields): nulls and undefined
    // values are gaps, and an undefined field hidden among defined ones is still found.
    expect(
      toLine({
        measurement: 'display',
        tags: {},
        fields: {
          err_other: 'ok',
          power: 'on',
          on: 1,
          idle_s: undefined,
          foreground: null as never,
          lamp_hours: 7,
        },
        ts: 5,
      }),
    ).toBe('display power="on",on=1i,lamp_hours=7i,err_other="ok" 5');
    expect(() =>
      toLine({ measurement: 'display', tags: {}, fields: { power: 'on', evil: 1, on: 1 } as never, ts: 5 }),
    ).toThrow(/field "evil" is not defined/);
    expect(() =>
      toLine({ measurement: 'display', tags: {}, fields: { power: 'on', evil: undefined } as never, ts: 5 }),
    ).toThrow(/field "evil" is not defined/);
    expect(
      toLine({ measurement: 'display', tags: {}, fields: { power: undefined, on: null as never }, ts: 5 }),
    ).toBeUndefined();
  });
});

describe('InfluxQL quoting', () => {
  it('quotes values so that input cannot change the statement', () => {
    expect(quoteString("实验'; DROP DATABASE x; --")).toBe("'实验\\'; DROP DATABASE x; --'");
    expect(quoteString('a\\')).toBe("'a\\\\'");
    expect(quoteIdent('my "db"')).toBe('"my \\"db\\""');
    expect(regexLiteral('330000/330100', 'prefix')).toBe('/^330000\\/330100/');
    expect(regexLiteral('a.b', 'exact')).toBe('/^a\\.b$/');
    expect(iql`SELECT * FROM host WHERE school = ${"o'k"} AND x > ${3} AND time > ${timeMs(5)}`).toBe(
      "SELECT * FROM host WHERE school = 'o\\'k' AND x > 3 AND time > 5ms",
    );
  });
});

describe('write error classification', () => {
  it('follows the table: retry, split, drop, fatal', () => {
    expect(classifyWriteError(http(429), 10)).toMatchObject({ kind: 'retry' });
    expect(classifyWriteError(http(503, '', { 'retry-after': '7' }), 10)).toEqual(
      expect.objectContaining({ kind: 'retry', retryAfterMs: 7_000 }),
    );
    expect(classifyWriteError(http(500), 10)).toMatchObject({ kind: 'retry' });
    expect(classifyWriteError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), 10)).toMatchObject({
      kind: 'retry',
      why: 'ECONNREFUSED',
    });
    expect(classifyWriteError(http(413), 10)).toMatchObject({ kind: 'split' });
    expect(classifyWriteError(http(413), 1)).toMatchObject({ kind: 'drop', reason: 'too_large' });
    expect(classifyWriteError(http(401), 10)).toMatchObject({ kind: 'fatal', status: 401 });
    expect(classifyWriteError(http(403), 10)).toMatchObject({ kind: 'fatal', status: 403 });
    expect(classifyWriteError(http(404, '{"error":"database not found: \\"x\\""}'), 10)).toMatchObject({
      kind: 'fatal',
      why: 'database not found: "x"',
    });
    expect(
      classifyWriteError(http(400, '{"error":"partial write: field type conflict: … dropped=3"}'), 10),
    ).toMatchObject({ kind: 'drop', reason: 'rejected', dropped: 3 });
    expect(classifyWriteError(http(422, '{"message":"bad"}'), 4)).toMatchObject({ kind: 'drop', dropped: 4 });
    expect(classifyWriteError(new Error('Max retry time exceeded.'), 4)).toMatchObject({
      kind: 'drop',
      reason: 'expired',
    });
  });

  it('parses Retry-After as seconds or an HTTP date, capped', () => {
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3_000);
    expect(parseRetryAfter('Mon, 23 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Mon, 23 Nov 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('999999', now)).toBe(15 * 60_000);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('finds the offending lines in InfluxDB 1.x messages', () => {
    const lines = ['host,school=a cpu_pct=1 1', 'host,school=b cpu_pct="x" 2', 'nic,school=b rx_bps=1 2'];
    expect(offendingLines("unable to parse 'bad line': missing fields", lines)).toEqual(['bad line']);
    expect(
      offendingLines(
        'partial write: field type conflict: input field "cpu_pct" on measurement "host" is type string, already exists as type float dropped=1',
        lines,
      ),
    ).toEqual(['host,school=b cpu_pct="x" 2']);
    expect(
      offendingLines(
        'field type conflict: input field "cpu_pct" on measurement "host" is type float, already exists',
        lines,
      ),
    ).toEqual(['host,school=a cpu_pct=1 1']);
  });
});

describe('InfluxDB 1.x write path', () => {
  it('maps /api/v2/write to /write', () => {
    expect(toV1WritePath('/api/v2/write?org=-&bucket=cfm&precision=ms')).toBe('/write?db=cfm&precision=ms');
    expect(toV1WritePath('/api/v2/write?org=-&bucket=cfm%2Fweek&precision=ns')).toBe(
      '/write?db=cfm&rp=week&precision=n',
    );
    expect(toV1WritePath('/query?q=x')).toBe('/query?q=x');
  });
});
