import { createServer, request, type Server } from 'node:http';

/**
 * A fault-injecting HTTP proxy in front of a real InfluxDB (in the manner of toxiproxy): it forwards every
 * request unchanged, except that the next `n` requests matching a path are answered with a chosen status and
 * headers. It produces what a real server under load or behind a gateway sends (429/503 with Retry-After) and
 * a local influxd never does on demand; the data still lands in the real database.
 */
export class FaultProxy {
  private server: Server | undefined;
  private faults: { path: RegExp; remaining: number; status: number; headers: Record<string, string> }[] = [];
  private stalls: { path: RegExp; remaining: number; headers: boolean }[] = [];
  /** Arrival time (ms) of every request whose path matched `/write` or `/api/v2/write`. */
  readonly writeArrivals: number[] = [];
  /** With `recordForwarded`, every forwarded request: its path, the encodings it accepted and the reply's. */
  readonly forwarded: { path: string; acceptEncoding?: string; contentEncoding?: string }[] = [];
  recordForwarded = false;
  /** With `recordWrites`, the body of every write request forwarded, as it was sent. */
  readonly writeBodies: Buffer[] = [];
  recordWrites = false;
  port = 0;

  constructor(private readonly target: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  failNext(
    n: number,
    status: number,
    headers: Record<string, string> = {},
    path = /^\/(write|api\/v2\/write)/,
  ): void {
    this.faults.push({ path, remaining: n, status, headers });
  }

  /**
   * The next `n` requests matching `path` get 200 and their headers and the first bytes of a JSON body at once,
   * then nothing more until the client gives up: a database that answers and then stalls mid-reply. With
   * `headers: false`, not even the headers come.
   */
  stallNext(n: number, opts: { path?: RegExp; headers?: boolean } = {}): void {
    this.stalls.push({ path: opts.path ?? /^\/query/, remaining: n, headers: opts.headers ?? true });
  }

  /** Forwards everything again (pending faults and stalls dropped). */
  clear(): void {
    this.faults = [];
    this.stalls = [];
  }

  async start(): Promise<this> {
    const t = new URL(this.target);
    this.server = createServer((req, res) => {
      const url = req.url ?? '/';
      if (/^\/(write|api\/v2\/write)/.test(url)) this.writeArrivals.push(Date.now());
      const stall = this.stalls.find((f) => f.remaining > 0 && f.path.test(url));
      if (stall) {
        stall.remaining--;
        req.resume();
        if (!stall.headers) return;
        res.writeHead(200, { 'content-type': 'application/json', 'x-influxdb-version': '1.6.7' });
        res.write('{"results":[');
        return;
      }
      const fault = this.faults.find((f) => f.remaining > 0 && f.path.test(url));
      if (fault) {
        fault.remaining--;
        req.resume();
        req.on('end', () => {
          res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
          res.end(JSON.stringify({ error: `injected ${fault.status}` }));
        });
        return;
      }
      const up = request(
        { host: t.hostname, port: t.port, method: req.method, path: url, headers: req.headers },
        (r) => {
          if (this.recordForwarded)
            this.forwarded.push({
              path: url,
              acceptEncoding: req.headers['accept-encoding'],
              contentEncoding: r.headers['content-encoding'],
            });
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      if (this.recordWrites && /^\/(write|api\/v2\/write)/.test(url)) {
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => this.writeBodies.push(Buffer.concat(parts)));
      }
      req.pipe(up);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}
