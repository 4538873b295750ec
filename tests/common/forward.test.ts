import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, sendError } from '../../common/http/errors.js';
import { FORWARD_MAX_BYTES, FORWARDED_HEADER, forward } from '../../common/http/forward.js';

/**
 * Forwarding a validated request to the worker (common/http/forward.ts), as a hostile client would try it: the
 * instance must reach the worker only, at the route it matched, and never follow the client or the worker
 * elsewhere.
 */
type Seen = { method: string; url: string; headers: IncomingMessage['headers'] };
const worker: Seen[] = [];
const elsewhere: Seen[] = [];
let workerServer: Server;
let otherServer: Server;
let workerUrl: string;
let otherPort: number;
let app: FastifyInstance;
let appPort: number;
/** What the worker answers next (default: 200 with the path it saw). */
let answer: ((res: import('node:http').ServerResponse) => void) | undefined;

function recorder(into: Seen[]) {
  return createServer((req, res) => {
    into.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    req.on('end', () => {
      if (into === worker && answer) return answer(res);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ at: req.url }));
    });
  });
}
const listen = async (s: Server) => {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.address() as { port: number }).port;
};

beforeAll(async () => {
  workerServer = recorder(worker);
  otherServer = recorder(elsewhere);
  workerUrl = `http://127.0.0.1:${await listen(workerServer)}`;
  otherPort = await listen(otherServer);
  app = Fastify();
  app.setErrorHandler((err, _req, reply) =>
    err instanceof ApiError ? sendError(reply, err.statusCode, err.code, err.message) : reply.send(err),
  );
  app.addHook('preHandler', (req, reply) => forward(workerUrl, req, reply, { what: 'the worker' }));
  app.post('/v1/alerts/:id/ack', async () => 'not forwarded');
  app.get('/v1/alerts', async () => 'not forwarded');
  await app.listen({ host: '127.0.0.1', port: 0 });
  appPort = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  await app.close();
  await new Promise((r) => workerServer.close(r));
  await new Promise((r) => otherServer.close(r));
});

/** A raw request line, as a client can write it (fetch would normalise it). */
function raw(requestLine: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(appPort, '127.0.0.1', () =>
      s.write(
        `${requestLine}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0k3n\r\nConnection: close\r\n\r\n`,
      ),
    );
    let out = '';
    s.on('data', (c) => {
      out += c;
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

describe('forwarding to the worker', () => {
  it('an absolute-form request target goes to the worker, never to the host it names; the token goes along', async () => {
    worker.length = 0;
    const out = await raw(`GET http://127.0.0.1:${otherPort}/v1/alerts?region=330000 HTTP/1.1`);
    expect(out).toMatch(/^HTTP\/1\.1 200/);
    expect(elsewhere).toEqual([]);
    expect(worker.map((w) => w.url)).toEqual(['/v1/alerts?region=330000']);
    expect(worker[0]!.headers.authorization).toBe('Bearer t0k3n');
    expect(worker[0]!.headers[FORWARDED_HEADER]).toBe('1');
  });

  it('a parameter is forwarded encoded, in its place; a dot segment names nothing', async () => {
    worker.length = 0;
    await raw('POST /v1/alerts/a%2Fb%3Fc/ack HTTP/1.1');
    expect(worker.map((w) => `${w.method} ${w.url}`)).toEqual(['POST /v1/alerts/a%2Fb%3Fc/ack']);
    for (const id of ['%2e%2e', '..', '.']) {
      const out = await raw(`POST /v1/alerts/${id}/ack HTTP/1.1`);
      expect(out, id).toMatch(/^HTTP\/1\.1 404/);
    }
    expect(worker).toHaveLength(1);
  });

  it('a redirect from the worker is not followed', async () => {
    answer = (res) => res.writeHead(302, { location: `http://127.0.0.1:${otherPort}/steal` }).end();
    elsewhere.length = 0;
    const r = await fetch(`http://127.0.0.1:${appPort}/v1/alerts`);
    answer = undefined;
    expect(r.status).toBe(503);
    expect(await r.json()).toMatchObject({ code: 'CFM_API_UNAVAILABLE' });
    expect(elsewhere).toEqual([]);
  });

  it('an answer larger than the limit is not read whole', async () => {
    answer = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const more = () => {
        while (sent <= FORWARD_MAX_BYTES && res.write(chunk)) sent += chunk.length;
        if (sent > FORWARD_MAX_BYTES) res.end();
        else res.once('drain', more);
      };
      more();
    };
    const r = await fetch(`http://127.0.0.1:${appPort}/v1/alerts`);
    answer = undefined;
    expect(r.status).toBe(503);
    expect(await r.json()).toMatchObject({
      code: 'CFM_API_UNAVAILABLE',
      message: expect.stringMatching(/larger/),
    });
  });

  it('a request another instance forwarded is refused (a misdirected api.alertsUrl would loop)', async () => {
    worker.length = 0;
    const r = await fetch(`http://127.0.0.1:${appPort}/v1/alerts`, { headers: { [FORWARDED_HEADER]: '1' } });
    expect(r.status).toBe(503);
    expect(await r.json()).toMatchObject({ message: expect.stringMatching(/loop/) });
    expect(worker).toEqual([]);
  });
});
