import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A school's uplink for the simulated city: a TCP relay on 127.0.0.1 between the school's agents and the
 * broker. `cut()` is a fibre cut: every connection through it dies at once (no MQTT DISCONNECT, so the broker
 * publishes the agents' wills) and new ones are refused until `restore()`; the agents spool their readings to
 * disk meanwhile and replay them once they are through again.
 */
export class UplinkRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private up = true;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    const server = createServer((client) => {
      if (!this.up) {
        client.destroy();
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    return this;
  }

  get isUp(): boolean {
    return this.up;
  }

  cut(): void {
    this.up = false;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.up = true;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
