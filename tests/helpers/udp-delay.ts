import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';

interface Upstream {
  socket: Socket;
  /** Numbers of the requests sent and not yet answered, oldest first. */
  pending: number[];
}

/**
 * A UDP relay on 127.0.0.1 in front of an SNMP agent that holds each answer back for `delayMs(n)` (n: the
 * request's number, from 0), as a slow or congested device would — and, with a delay that varies, answers
 * out of order. Without `upstreamPort` it answers nothing: a dead device. Either way it records when and from
 * where each request arrived and how many were waiting for an answer at once.
 *
 * The agent behind it answers at once, so the values (sysUpTime) are those of the moment the request
 * arrived; only the answer is late.
 */
export class UdpDelayProxy {
  port = 0;
  /** Arrival time (performance.now()) of every request. */
  readonly arrivals: number[] = [];
  /** The address every request came from. */
  readonly sources: string[] = [];
  /** Requests answered by the agent and not yet relayed back… */
  outstanding = 0;
  /** …and the most there ever were. */
  maxOutstanding = 0;
  private front: Socket | undefined;
  private readonly upstreams = new Map<string, Promise<Upstream>>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: { upstreamPort?: number; delayMs?: (n: number) => number } = {}) {}

  async start(): Promise<this> {
    const front = createSocket('udp4');
    front.on('message', (msg, from) => {
      const n = this.arrivals.length;
      this.arrivals.push(performance.now());
      this.sources.push(from.address);
      if (this.opts.upstreamPort === undefined) return; // dead: nothing answers
      this.outstanding++;
      this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
      this.upstream(from.address, from.port).then(
        (up) => {
          up.pending.push(n);
          up.socket.send(msg, this.opts.upstreamPort!, '127.0.0.1');
        },
        () => this.outstanding--,
      );
    });
    await new Promise<void>((r) => front.bind(0, '127.0.0.1', () => r()));
    this.front = front;
    this.port = front.address().port;
    return this;
  }

  /** One socket towards the agent per client, so each answer goes back to the client that asked. */
  private upstream(address: string, port: number): Promise<Upstream> {
    const key = `${address}:${port}`;
    let up = this.upstreams.get(key);
    if (!up) {
      const socket = createSocket('udp4');
      const pending: number[] = [];
      socket.on('message', (answer) => {
        // The agent answers requests in the order they came.
        const n = pending.shift() ?? 0;
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.outstanding--;
          this.front?.send(answer, port, address);
        }, this.opts.delayMs?.(n) ?? 0);
        this.timers.add(t);
      });
      up = new Promise((r) => socket.bind(0, '127.0.0.1', () => r({ socket, pending })));
      this.upstreams.set(key, up);
    }
    return up;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const sockets = [this.front, ...(await Promise.all(this.upstreams.values())).map((u) => u.socket)];
    this.front = undefined;
    this.upstreams.clear();
    await Promise.all(sockets.map((s) => s && new Promise<void>((r) => s.close(() => r()))));
  }
}
