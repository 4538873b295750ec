import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';

/**
 * A PJLink class 1 projector on 127.0.0.1, over real TCP, for tests and demos (in the manner of the JBMIA
 * PJLink test software). It greets, authenticates, and answers POWR, INPT, LAMP, ERST, CLSS and the POWR/INPT
 * set commands from a mutable `state`, so a test changes the device between two reads.
 */
export interface PjlinkState {
  /** PJLink `POWR`: 0 standby, 1 on, 2 cooling down, 3 warming up. */
  power: 0 | 1 | 2 | 3;
  /** PJLink `INPT`, e.g. `31` (digital input 1). Sent verbatim, so a test can make it malformed. */
  input: string;
  /** Lamp 1 cumulative hours; null for a device without a lamp (LAMP answers ERR1). */
  lampHours: number | null;
  /** PJLink `ERST`: six digits fan, lamp, temperature, cover, filter, other (0 ok, 1 warning, 2 error). */
  errors: string;
  /** Delay before each answer (not the greeting), to simulate a slow device. */
  delayMs?: number;
  /** Accept the TCP connection but never send anything. */
  silent?: boolean;
  /** Answer these commands (e.g. `ERST`) with this raw line instead, to simulate broken firmware. */
  rawAnswers?: Partial<Record<string, string>>;
}

const DEFAULT_STATE: PjlinkState = { power: 1, input: '31', lampHours: 1873, errors: '000000' };

/** Longest command line accepted before the connection is dropped; class 1 commands are far shorter. */
const MAX_LINE_BYTES = 512;

export class PjlinkSimulator {
  state: PjlinkState;
  private readonly password: string | undefined;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private accepted = 0;

  constructor(init: Partial<PjlinkState> & { password?: string } = {}) {
    const { password, ...state } = init;
    this.password = password;
    this.state = { ...DEFAULT_STATE, ...state };
  }

  /** TCP connections accepted since `start()`. */
  get connections(): number {
    return this.accepted;
  }

  /** Listens on 127.0.0.1 (only) and resolves with the port; 0 picks a free one. */
  async start(port = 0): Promise<number> {
    if (this.server) throw new Error('PjlinkSimulator already started');
    const server = createServer((socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((e: unknown) => {
      this.server = undefined;
      throw e;
    });
    return (server.address() as { port: number }).port;
  }

  /** Closes every connection and the listener. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private onConnection(socket: Socket): void {
    this.accepted++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {}); // a client resetting the connection is normal here
    socket.setEncoding('latin1');
    if (this.state.silent) {
      socket.resume();
      return;
    }

    // Authentication (PJLink spec, "Authentication procedure"): greet with `PJLINK 1 <8 random chars>`; the
    // first command must carry md5(random + password) in lowercase hex in front of it.
    const random = this.password === undefined ? undefined : randomBytes(4).toString('hex');
    let authenticated = random === undefined;
    socket.write(random === undefined ? 'PJLINK 0\r' : `PJLINK 1 ${random}\r`);

    let buffer = '';
    let queue = Promise.resolve();
    let refused = false;
    socket.on('data', (chunk: string) => {
      if (refused) return;
      buffer += chunk;
      for (let cr = buffer.indexOf('\r'); cr >= 0; cr = buffer.indexOf('\r')) {
        let line = buffer.slice(0, cr).replace(/^\n/, '');
        buffer = buffer.slice(cr + 1);
        if (!authenticated) {
          const expected = createHash('md5').update(`${random}${this.password}`).digest('hex');
          if (line.slice(0, 32) !== expected) {
            // A wrong or missing digest is answered with `PJLINK ERRA`; the device then hangs up.
            refused = true;
            socket.end('PJLINK ERRA\r');
            return;
          }
          line = line.slice(32);
          authenticated = true;
        }
        // Answers go out in order, each after `delayMs`, as a slow device would send them.
        queue = queue.then(async () => {
          await this.delay();
          if (!socket.destroyed && socket.writable) socket.write(`${this.answer(line)}\r`);
        });
      }
      if (buffer.length > MAX_LINE_BYTES) socket.destroy();
    });
  }

  private delay(): Promise<void> {
    const ms = this.state.delayMs ?? 0;
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** The answer line (without CR) to one command line `%1XXXX <param>`. */
  private answer(line: string): string {
    const m = /^%1([A-Za-z0-9]{4}) (.*)$/.exec(line);
    // Unparseable lines get ERR1 too, under the command name they seem to carry (`????` if none).
    const command = (m?.[1] ?? /^%1([A-Za-z0-9]{4})/.exec(line)?.[1] ?? '????').toUpperCase();
    const raw = this.state.rawAnswers?.[command];
    if (raw !== undefined) return raw;
    const reply = (value: string) => `%1${command}=${value}`;
    if (!m) return reply('ERR1');
    const param = m[2]!;
    const s = this.state;
    if (param === '?') {
      switch (command) {
        case 'POWR':
          return reply(String(s.power));
        case 'INPT':
          return reply(s.power === 0 ? 'ERR3' : s.input);
        case 'LAMP':
          if (s.lampHours === null) return reply('ERR1');
          if (s.power === 0) return reply('ERR3');
          return reply(`${s.lampHours} ${s.power === 1 || s.power === 3 ? 1 : 0}`);
        case 'ERST':
          return reply(s.errors);
        case 'CLSS':
          return reply('1');
        default:
          return reply('ERR1');
      }
    }
    switch (command) {
      case 'POWR':
        if (param !== '0' && param !== '1') return reply('ERR2');
        s.power = param === '1' ? 1 : 0;
        return reply('OK');
      case 'INPT':
        if (!/^[1-5][1-9]$/.test(param)) return reply('ERR2');
        if (s.power === 0) return reply('ERR3');
        s.input = param;
        return reply('OK');
      default:
        return reply('ERR1');
    }
  }
}
