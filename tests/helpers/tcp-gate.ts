import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay on 127.0.0.1 in front of a real server that a test opens and closes: closed, it refuses
 * connections and cuts the ones it relayed, as a classroom's link going down would; open, it relays bytes
 * unchanged. The server behind it (a broker) keeps running for the clients connected to it directly (the
 * collector, an observer), so a test can take one agent's broker away without taking everyone's.
 */
export class TcpGate {
  /** Fixed by the first open() (or reserve()), kept across close() → open(). */
  port = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly targetPort: number,
    private readonly tap?: (chunk: Buffer, connection: Socket) => void,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Picks the port and leaves the gate closed. */
  async reserve(): Promise<this> {
    await this.open();
    await this.close();
    return this;
  }

  async open(): Promise<this> {
    if (this.server) return this;
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      const tap = this.tap;
      if (tap) client.on('data', (chunk: Buffer) => tap(chunk, client));
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    if (typeof addr === 'object' && addr) this.port = addr.port;
    this.server = server;
    return this;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
