import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import { testApp } from '../helpers/api.js';
import { testStorage } from '../helpers/influx.js';

/**
 * How the API serves the console (`/console/…`, api/routes/system.ts) to a hostile client: exactly three files,
 * nothing else under any name. Requests are written to the socket as they are (fetch and inject would resolve
 * `../` and `%2e%2e/` before sending), over loopback.
 */
const root = new URL('../../', import.meta.url).pathname;
const FILES = {
  '/console/': { file: 'console/index.html', type: 'text/html; charset=utf-8' },
  '/console/app.js': { file: 'console/dist/app.js', type: 'text/javascript; charset=utf-8' },
  '/console/app.css': { file: 'console/dist/app.css', type: 'text/css; charset=utf-8' },
};
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** What must never come back: files beside and above console/dist, and the system's. */
const SECRETS = [
  readFileSync(join(root, 'package.json'), 'utf8').slice(0, 60),
  readFileSync(join(root, 'console/build.ts'), 'utf8').slice(0, 60),
  readFileSync(join(root, 'console/src/main.tsx'), 'utf8').slice(0, 60),
  'root:x:0:0',
];

let dir: string;
let app: Awaited<ReturnType<typeof testApp>>;
let port: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-serve-'));
  app = await testApp({
    registry: new RegistryStore(join(dir, 'registry.json')).load(),
    calendars: new Calendars([]),
    tokens: new TokenStore(join(dir, 'tokens.json')).load(),
    // Never started: serving the console reads no database.
    storage: testStorage('http://127.0.0.1:9').storage,
    live: new LiveState(undefined, silentLogger()),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One GET with `target` written as it is, byte for byte: status, headers (lower-case) and body. */
function rawGet(target: string): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const [statusLine = '', ...lines] = all.subarray(0, split).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(
        lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      let body = all.subarray(split + 4);
      if (headers['transfer-encoding'] === 'chunked') {
        const parts: Buffer[] = [];
        for (let i = 0; ; ) {
          const eol = body.indexOf('\r\n', i);
          const n = Number.parseInt(body.subarray(i, eol).toString(), 16);
          if (!n) break;
          parts.push(body.subarray(eol + 2, eol + 2 + n));
          i = eol + 2 + n + 2;
        }
        body = Buffer.concat(parts);
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    });
    socket.write(
      Buffer.concat([
        Buffer.from('GET '),
        Buffer.from(target, 'latin1'),
        Buffer.from(' HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'),
      ]),
    );
  });
}

describe('/console/ serves its three files and nothing else', () => {
  it('the known files: 200, the committed bytes, their type, the strict CSP, nosniff, no referrer', async () => {
    for (const [target, { file, type }] of Object.entries(FILES)) {
      for (const t of [target, `${target}?v=../../package.json`]) {
        const r = await rawGet(t);
        expect(r.status, t).toBe(200);
        expect(r.headers['content-type'], t).toBe(type);
        expect(r.headers['content-security-policy'], t).toBe(CSP);
        expect(r.headers['x-content-type-options'], t).toBe('nosniff');
        expect(r.headers['referrer-policy'], t).toBe('no-referrer');
        expect(r.body.equals(readFileSync(join(root, file))), t).toBe(true);
      }
    }
    expect((await rawGet('/console')).headers.location).toBe('/console/');
  });

  const hostile = [
    // Traversal, plain and encoded once, twice, in upper case, with backslashes and overlong UTF-8.
    '/console/../package.json',
    '/console/../../../../etc/passwd',
    '/console/..%2fpackage.json',
    '/console/%2e%2e%2fpackage.json',
    '/console/%2E%2E%2F%2E%2E%2Fpackage.json',
    '/console/%2e%2e/package.json',
    '/console/%252e%252e%252fpackage.json',
    '/console/..%5c..%5cpackage.json',
    '/console/..%c0%af..%c0%afpackage.json',
    '/console/dist/../../package.json',
    '/console/./app.js/../../package.json',
    // Absolute paths.
    '/console//etc/passwd',
    '/console/%2fetc%2fpasswd',
    '/console/C:%5cWindows%5cwin.ini',
    '/console/file:%2f%2f%2fetc%2fpasswd',
    // Null bytes, encoded.
    '/console/%00',
    '/console/app.js%00',
    '/console/app.js%00.png',
    '/console/%00../package.json',
    // Very long names.
    `/console/${'a'.repeat(5_000)}`,
    `/console/app.js${'/'.repeat(2_000)}`,
    `/console/${'..%2f'.repeat(1_000)}package.json`,
    // Unknown names, near misses and the sources beside the bundle.
    '/console/index.html',
    '/console/APP.JS',
    '/console/app.js.map',
    '/console/app.js/',
    '/console/app.css.bak',
    '/console/dist/app.js',
    '/console/build.ts',
    '/console/src/main.tsx',
    '/console/README.md',
    '/console/.env',
    '/console/%20',
    // Names an object lookup would find on its prototype.
    '/console/constructor',
    '/console/__proto__',
    '/console/toString',
    '/console/hasOwnProperty',
    '/console/valueOf',
  ];
  it.each(hostile.map((t) => [t.length > 60 ? `${t.slice(0, 60)}… (${t.length} chars)` : t, t]))(
    '%s: 404 or 400, no file',
    async (_name, target) => {
      const r = await rawGet(target);
      expect([400, 404]).toContain(r.status);
      expect(r.headers['content-type'] ?? '').not.toMatch(/javascript|css|html/);
      const text = r.body.toString('utf8');
      for (const secret of SECRETS) expect(text).not.toContain(secret);
      for (const { file } of Object.values(FILES))
        expect(text).not.toContain(readFileSync(join(root, file), 'utf8').slice(0, 40));
    },
  );

  it('a raw null byte or control character in the target is refused by the HTTP parser (400)', async () => {
    for (const target of ['/console/app.js\u0000', '/console/\u0000../package.json', '/console/app\u0001.js'])
      expect((await rawGet(target)).status, JSON.stringify(target)).toBe(400);
  });

  it('an unknown name is the API 404 with its stable code', async () => {
    const r = await rawGet('/console/%2e%2e%2fpackage.json');
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ status: 'error', code: 'CFM_API_NOT_FOUND' });
  });
});
