import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import { DISPLAY_ERROR_KEYS, type DisplayHealth, type LEVELS } from '../../contracts/messages.js';

/**
 * PJLink class 1 display source (JBMIA "PJLink Specifications", class 1). Projectors and many interactive
 * panels speak it on TCP 4352. One read opens ONE connection, sends four queries in turn (POWR, INPT, LAMP,
 * ERST), closes it, and maps the answers onto `displaySchema`.
 *
 * Every failure rejects with `PJLink host:port: reason`; the whole read, connect included, is bounded by
 * `timeoutMs`. The password never appears in a message or a log line.
 */

/** PJLink's TCP port (IANA-registered `pjlink`, 4352), fixed by the spec. */
export const PJLINK_PORT = 4352;
const DEFAULT_TIMEOUT_MS = 3000;

/** Class 1 answers are a few dozen bytes; a longer run without CR is not PJLink, so stop buffering. */
const MAX_LINE_BYTES = 512;
/** Raw lines quoted in error messages are cut to this many characters. */
const MAX_QUOTED_CHARS = 100;

export interface PjlinkOptions {
  host: string;
  /** Default 4352. */
  port?: number;
  /** Needed only when the device greets with `PJLINK 1 <random>` (authentication enabled). */
  password?: string;
  /** Bound on the whole read: connect, greeting and all four answers. Default 3000. */
  timeoutMs?: number;
}

/**
 * The authentication digest: lowercase hex MD5 of the 8-character random the device sent in its greeting
 * followed by the password (spec, "Authentication procedure"; its worked example: random `498e4a67`,
 * password `JBMIAProjectorLink` → `5d8409bc1c3fa39749434aa3a5c38682`).
 */
export function pjlinkDigest(random: string, password: string): string {
  return createHash('md5')
    .update(random + password, 'utf8')
    .digest('hex');
}

type Level = (typeof LEVELS)[number];
type Command = 'POWR' | 'INPT' | 'LAMP' | 'ERST';

/** Answer parameter shapes (spec, class 1 command descriptions). */
const ANSWER_SHAPES: Record<Command, RegExp> = {
  // 0 standby, 1 lamp on / power on, 2 cooling down, 3 warming up.
  POWR: /^[0-3]$/,
  // Input type 1–5 (RGB, VIDEO, DIGITAL, STORAGE, NETWORK) then input number 1–9; class 2 devices answering a
  // class 1 query may use 1–Z for the number and type 6 (INTERNAL).
  INPT: /^[1-6][1-9A-Z]$/,
  // Up to eight lamps, each "<cumulative hours> <0 off|1 on>". The spec caps hours at 99999; a few more
  // digits are accepted rather than losing the whole reading to one out-of-range counter.
  LAMP: /^\d{1,9} [01](?: \d{1,9} [01]){0,7}$/,
  // Six digits: fan, lamp, temperature, cover open, filter, other; 0 ok, 1 warning, 2 error.
  ERST: /^[0-2]{6}$/,
};

/**
 * PJLink error answers: ERR1 undefined command, ERR2 out of parameter, ERR3 unavailable time (e.g. INPT in
 * standby), ERR4 projector/display failure.
 */
const ERROR_ANSWER = /^ERR[1-4]$/;

const POWER_STATES = ['off', 'on', 'cooling', 'warming'] as const;
const ERST_LEVELS: Record<string, Level> = { '0': 'ok', '1': 'warning', '2': 'error' };

/** A failure whose message is the reason only; `readPjlink` prefixes the target. */
class PjlinkFailure extends Error {}

export async function readPjlink(opts: PjlinkOptions): Promise<DisplayHealth> {
  const port = opts.port ?? PJLINK_PORT;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const target = `${opts.host}:${port}`;
  const conn = new LineConnection();
  const timer = setTimeout(
    () => conn.abort(new PjlinkFailure(`timed out after ${timeoutMs} ms waiting for ${conn.waitingFor}`)),
    timeoutMs,
  );
  try {
    conn.connect(opts.host, port);
    return await session(conn, opts.password);
  } catch (e) {
    const reason = e instanceof PjlinkFailure ? e.message : `unexpected failure: ${(e as Error).message}`;
    throw new Error(`PJLink ${target}: ${reason}`, { cause: e });
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

async function session(conn: LineConnection, password: string | undefined): Promise<DisplayHealth> {
  // Spec, "Authentication procedure": the device speaks first. `PJLINK 0` = no authentication;
  // `PJLINK 1 <random>` = the connection must authenticate with the digest in front of its first command.
  // `PJLINK ERRA` here is a device refusing us outright.
  const greeting = await conn.next('the greeting');
  let digest: string | undefined;
  if (greeting === 'PJLINK ERRA') throw new PjlinkFailure('authentication failed (PJLINK ERRA)');
  if (greeting !== 'PJLINK 0') {
    const m = /^PJLINK 1 ([!-~]{8})$/.exec(greeting);
    if (!m) throw new PjlinkFailure(`unexpected greeting ${quote(greeting)}`);
    if (password === undefined) {
      throw new PjlinkFailure('the device requires authentication (PJLINK 1) and no password is configured');
    }
    digest = pjlinkDigest(m[1]!, password);
  }

  // Sequential on purpose: a class 1 device handles one command at a time and answers in order.
  const answers = {} as Record<Command, Answer>;
  for (const command of ['POWR', 'INPT', 'LAMP', 'ERST'] as const) {
    answers[command] = await query(conn, command, digest);
    digest = undefined; // the digest goes in front of the first command of the connection only
  }

  const health: DisplayHealth = { source: 'pjlink', power: 'unknown' };
  const errorCodes: string[] = [];
  for (const a of Object.values(answers)) {
    // ERR1 (no such command, e.g. LAMP on a lamp-less panel) and ERR3 (not now, e.g. INPT in standby) are
    // normal and just leave the field out; ERR2/ERR4 are worth keeping, verbatim.
    if (a.kind === 'error' && (a.code === 'ERR2' || a.code === 'ERR4')) errorCodes.push(a.raw);
  }
  const { POWR, INPT, LAMP, ERST } = answers;
  if (POWR.kind === 'value') health.power = POWER_STATES[Number(POWR.value)]!;
  if (INPT.kind === 'value') health.input = INPT.value;
  if (LAMP.kind === 'value') health.lampHours = Number(LAMP.value.split(' ')[0]);
  if (ERST.kind === 'value') {
    const errors: NonNullable<DisplayHealth['errors']> = {};
    DISPLAY_ERROR_KEYS.forEach((key, i) => {
      errors[key] = ERST_LEVELS[ERST.value[i]!]!;
    });
    health.errors = errors;
  }
  if (errorCodes.length > 0) health.errorCodes = errorCodes;
  return health;
}

type Answer = { kind: 'value'; value: string } | { kind: 'error'; code: string; raw: string };

async function query(conn: LineConnection, command: Command, digest: string | undefined): Promise<Answer> {
  const line = `%1${command} ?`;
  conn.send(`${digest ?? ''}${line}\r`);
  const raw = await conn.next(`the answer to ${line}`);
  // A wrong digest is answered with `PJLINK ERRA` instead of the command's answer.
  if (raw === 'PJLINK ERRA') throw new PjlinkFailure('authentication failed (PJLINK ERRA)');
  // Answer: "%1" + the command's four characters + "=" + parameter (spec, "Response" format).
  const m = /^%1([A-Za-z0-9]{4})=(.*)$/.exec(raw);
  if (!m || m[1]!.toUpperCase() !== command) {
    throw new PjlinkFailure(`malformed answer to ${line}: ${quote(raw)}`);
  }
  const value = m[2]!;
  if (ERROR_ANSWER.test(value)) return { kind: 'error', code: value, raw };
  if (!ANSWER_SHAPES[command].test(value)) {
    throw new PjlinkFailure(`malformed answer to ${line}: ${quote(raw)}`);
  }
  return { kind: 'value', value };
}

function quote(raw: string): string {
  return raw.length > MAX_QUOTED_CHARS
    ? `${JSON.stringify(raw.slice(0, MAX_QUOTED_CHARS))}…`
    : JSON.stringify(raw);
}

const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the device',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection closed by the device',
};

/**
 * A TCP connection read as CR-terminated lines (spec: every command and answer ends with CR, 0x0D). `next()`
 * rejects once the connection fails, closes, or is aborted; the first failure wins and sticks.
 */
class LineConnection {
  private readonly socket = new Socket();
  private buffer = '';
  private readonly lines: string[] = [];
  private failure: Error | undefined;
  private waiter: { resolve: (line: string) => void; reject: (e: Error) => void } | undefined;
  private connected = false;
  private what = '';

  constructor() {
    this.socket.setNoDelay(true);
    // PJLink is ASCII (class 1); latin1 maps bytes 1:1, so a chunk boundary never splits a character.
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => this.onData(chunk));
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      const reason = (e.code && SOCKET_ERRORS[e.code]) ?? 'connection error';
      this.abort(
        new PjlinkFailure(`${reason} (${e.code ?? e.message}) while waiting for ${this.waitingFor}`),
      );
    });
    this.socket.on('close', () => {
      this.abort(new PjlinkFailure(`connection closed by the device before ${this.waitingFor}`));
    });
  }

  /** What the read is waiting for, for error messages. */
  get waitingFor(): string {
    return this.connected ? this.what : 'the TCP connection';
  }

  connect(host: string, port: number): void {
    this.socket.connect({ host, port }, () => {
      this.connected = true;
    });
  }

  send(data: string): void {
    if (this.failure) return; // the pending next() reports it
    this.socket.write(data, 'latin1');
  }

  next(what: string): Promise<string> {
    this.what = what;
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  abort(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.socket.destroy();
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
  }

  close(): void {
    if (!this.failure) this.failure = new PjlinkFailure('connection closed');
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    if (this.failure) return;
    this.buffer += chunk;
    for (let cr = this.buffer.indexOf('\r'); cr >= 0; cr = this.buffer.indexOf('\r')) {
      // Tolerate a stray LF after the CR from devices that send CRLF.
      const line = this.buffer.slice(0, cr).replace(/^\n/, '');
      this.buffer = this.buffer.slice(cr + 1);
      const w = this.waiter;
      if (w) {
        this.waiter = undefined;
        w.resolve(line);
      } else {
        this.lines.push(line);
      }
    }
    if (this.buffer.length > MAX_LINE_BYTES) {
      this.abort(
        new PjlinkFailure(
          `no CR within ${MAX_LINE_BYTES} bytes while waiting for ${this.waitingFor}: ${quote(this.buffer)}`,
        ),
      );
    }
  }
}
