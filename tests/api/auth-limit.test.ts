import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { addressKey, FailureLimiter } from '../../common/failure-limit.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import { influxConfigSchema } from '../../common/storage/config.js';
import { Storage } from '../../common/storage/storage.js';
import { testApp } from '../helpers/api.js';
import { captureLogger, waitFor } from '../helpers/influx.js';

/**
 * Requests without a valid token are limited per client address: real HTTP requests to the API on loopback,
 * from 127.0.0.1 and from 127.0.0.2 (also loopback on Linux: a second client address on one machine). The
 * routes used never reach InfluxDB, so the storage is configured but not started.
 */
const LIMIT = 5;
let dir: string;
let app: Awaited<ReturnType<typeof testApp>>;
let port: number;
let token: string;
let logLines: Record<string, unknown>[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-api-auth-limit-'));
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  token = tokens.add('城域网运维', 'ops').token;
  const captured = captureLogger('api');
  logLines = captured.lines;
  app = await testApp({
    registry: new RegistryStore(join(dir, 'registry.json')).load(),
    calendars: new Calendars([]),
    tokens,
    storage: new Storage(influxConfigSchema.parse({ database: 'cfm' }), { log: silentLogger() }),
    live: new LiveState(undefined, silentLogger()),
    authFailures: LIMIT,
    timeWindowMs: 2_000,
    log: captured.log,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** GET `path` from the client address `from`, with `bearer` if given. */
function get(
  path: string,
  bearer?: string,
  from = '127.0.0.1',
): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        localAddress: from,
        headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            retryAfter: res.headers['retry-after'] as string | undefined,
            body,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('failed authentications per address', () => {
  it('after the limit a wrong or missing token gets 429 with Retry-After; a valid token is still served; other addresses are not affected', async () => {
    for (let i = 0; i < LIMIT; i++) expect((await get('/v1/profiles', `cfm_wrong-${i}`)).status).toBe(401);
    const limited = await get('/v1/profiles', 'cfm_wrong-again');
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.body)).toEqual({
      status: 'error',
      code: 'CFM_API_AUTH_LIMITED',
      message: expect.stringMatching(/^too many failed authentications from this address; retry in [12] s$/),
    });
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(limited.retryAfter)).toBeLessThanOrEqual(2);
    expect((await get('/v1/profiles')).status).toBe(429); // no token at all: the same
    // The operator behind the same address is not locked out.
    expect((await get('/v1/profiles', token)).status).toBe(200);
    // Another address has its own budget.
    expect((await get('/v1/profiles', 'cfm_wrong', '127.0.0.2')).status).toBe(401);

    const metrics = (await get('/metrics')).body;
    expect(metrics).toContain(`cfm_api_auth_failures_total{outcome="refused"} ${LIMIT + 1}`);
    expect(metrics).toContain('cfm_api_auth_failures_total{outcome="limited"} 2');
    const warnings = logLines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ address: '127.0.0.1', failures: LIMIT, windowMs: 2_000 });
    // Tokens, right or wrong, are never logged.
    expect(JSON.stringify(logLines)).not.toContain('cfm_wrong');
    expect(JSON.stringify(logLines)).not.toContain(token.slice(4));

    // Limited until the window ends (asking meanwhile does not extend it), then answered 401 again.
    let later = 429;
    await waitFor(
      async () => {
        later = (await get('/v1/profiles', 'cfm_wrong-later')).status;
        return later !== 429;
      },
      {
        what: 'the window to end',
        timeoutMs: Number(limited.retryAfter) * 1000 + 1_000,
        intervalMs: 100,
      },
    );
    expect(later).toBe(401);
  });
});

describe('FailureLimiter', () => {
  it('forgets the oldest address when it tracks as many as it may', () => {
    let now = 0;
    const l = new FailureLimiter({ max: 2, windowMs: 1_000, maxKeys: 3 }, () => now);
    for (const a of ['a', 'b', 'c']) expect([l.fail(a), l.fail(a)]).toEqual([false, true]);
    expect(l.limitedForMs('a')).toBe(1_000);
    l.fail('d');
    expect(l.size).toBe(3);
    expect(l.limitedForMs('a')).toBe(0); // forgotten: a budget again, never memory
    expect(l.limitedForMs('b')).toBe(1_000);
    now = 1_000;
    expect(l.limitedForMs('b')).toBe(0);
  });

  it('keys IPv4 by address and IPv6 by /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:a:b:1:2:3:4')).toBe('2001:db8:a:b::/64');
    expect(addressKey('2001:db8:a:b::99')).toBe('2001:db8:a:b::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
  });
});
