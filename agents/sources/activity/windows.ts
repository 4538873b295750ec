import type { Logger } from 'pino';
import { z } from 'zod';
import { type Activity, counterSchema, MAX_IDLE_S } from '../../../contracts/messages.js';
import { executableName, idleSeconds } from './activity.js';
import { LineSplitter } from './lines.js';
import { type HelperLink, type HelperTransport, ProcessTransport } from './windows-link.js';
import { helperArgs } from './windows-script.js';

/**
 * The Windows helper's protocol (the script: windows-script.ts): one long-lived helper, reached over a link
 * (windows-link.ts) — the powershell.exe the agent starts, or the session helper's named pipe — opened at start,
 * opened again with back-off when it ends, ended on stop. One request line per reading, one JSON line back,
 * parsed and validated here with zod: a garbled, invalid or oversized line is a clear error and a counter
 * (`badLines`), never a crash; the reading it answered goes without activity.
 *
 * Which process runs, or which pipe is connected to, is configuration (`agent.windowsHelper`): the tests run
 * this same code against a small Node script standing in for powershell.exe and for the session helper's pipe
 * (tests/helpers/fake-powershell.mjs) that replays recorded lines (tests/fixtures/windows/).
 */

const uint32 = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 1);

export const helperHelloSchema = z.object({
  hello: z.literal('cfm-windows-helper'),
  v: z.literal(1),
  /** $PSVersionTable.PSVersion. */
  ps: z.string().max(64).optional(),
  /** `ok`, or why the display-state watcher could not start (the screen state is then unknown). */
  displayWatch: z.string().max(1_000).optional(),
});
export type HelperHello = z.infer<typeof helperHelloSchema>;

export const helperNicSchema = z.object({
  name: z.string().min(1).max(256),
  rx: counterSchema,
  tx: counterSchema,
});

export const helperResponseSchema = z.object({
  id: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable(),
  /** The request was not understood. */
  error: z.string().max(1_000).optional(),
  /** GetTickCount when read (ms since boot, 32 bits: wraps after 49.7 days). */
  tick: uint32.nullable().optional(),
  /** LASTINPUTINFO.dwTime: the tick of the session's last input. */
  lastInput: uint32.nullable().optional(),
  /** The helper's session and the console's (WTSGetActiveConsoleSessionId). */
  session: uint32.nullable().optional(),
  console: uint32.nullable().optional(),
  /** A user is logged on at the console session (WTSQuerySessionInformationW, WTSUserName not empty). */
  consoleUser: z.boolean().nullable().optional(),
  fg: z
    .object({
      pid: uint32,
      exe: z.string().max(1_024).nullable().optional(),
      title: z.string().max(4_096).nullable().optional(),
    })
    .nullable()
    .optional(),
  /** SPI_GETSCREENSAVERRUNNING. */
  saver: z.boolean().nullable().optional(),
  /** The input desktop's name: `Default` in an unlocked session; null when it cannot be opened. */
  desktop: z.string().max(256).nullable().optional(),
  /** GUID_CONSOLE_DISPLAY_STATE: 0 off, 1 on, 2 dimmed. */
  display: z.number().int().min(0).max(2).nullable().optional(),
  nics: z.array(helperNicSchema).max(256).nullable().optional(),
  /** Parts the helper could not read, e.g. `nics: …`. */
  errors: z.array(z.string().max(1_000)).max(32).optional(),
});
export type HelperResponse = z.infer<typeof helperResponseSchema>;

/**
 * The activity in one helper response. Input and windows belong to a session: they are the user's only when
 * the helper runs in the console's session — a helper in session 0 (the agent as a LocalSystem service) reads
 * no user's input, so idle time, foreground and screen are then absent (`sessionMismatch`), never guessed.
 * On a desktop other than `Default` (locked, the secure desktop of a UAC prompt) the user's windows are not
 * shown: no foreground, no teaching site.
 */
export function windowsActivity(
  r: HelperResponse,
  match: (title: string | undefined) => string | undefined,
): { activity: Activity; sessionMismatch?: { session: number | null; console: number | null } } {
  const activity: Activity = { source: 'windows' };
  const session = r.session ?? null;
  const consoleSession = r.console ?? null;
  if (session === null || consoleSession === null || session !== consoleSession) {
    return { activity, sessionMismatch: { session, console: consoleSession } };
  }
  if (r.tick != null && r.lastInput != null) {
    // Both are 32-bit millisecond ticks: the difference modulo 2^32 survives the wrap every 49.7 days.
    activity.idleS = idleSeconds((r.tick - r.lastInput + 2 ** 32) % 2 ** 32, MAX_IDLE_S);
  }
  if (r.fg && r.desktop === 'Default') {
    const fg = executableName(r.fg.exe);
    if (fg) activity.foreground = fg;
    const site = match(r.fg.title ?? undefined);
    if (site) activity.teachingSite = site;
  }
  if (r.saver === true || r.display === 0) activity.screenOn = false;
  else if (r.display === 1 || r.display === 2) activity.screenOn = true; // dimmed is on
  return { activity };
}

/** The NIC byte counters in one helper response (null: the helper could not read them). */
export function helperNics(r: HelperResponse): Map<string, { rx: bigint; tx: bigint }> {
  const out = new Map<string, { rx: bigint; tx: bigint }>();
  for (const n of r.nics ?? []) out.set(n.name, { rx: BigInt(n.rx), tx: BigInt(n.tx) });
  return out;
}

export type HelperBadLine = 'not_json' | 'invalid' | 'too_long' | 'not_hello' | 'unexpected';

export interface WindowsHelperStats {
  /** Processes started, and how many of them ended (crashed, killed when hung, or stopped). */
  starts: number;
  exits: number;
  /** Readings answered. */
  readings: number;
  /** Requests not answered within `timeoutMs`. */
  timeouts: number;
  /** Lines refused, by reason. */
  badLines: Partial<Record<HelperBadLine, number>>;
  /** Answers that came after their request had timed out, dropped. */
  late: number;
}

export interface WindowsHelperOptions {
  /** How the helper is reached: a process it starts (`helperProcess`), or a pipe (`SocketTransport`). */
  transport: HelperTransport;
  /** In logs and errors: `windows helper` (default), `session helper`. */
  name?: string;
  /** One request's answer. */
  timeoutMs: number;
  /** From start (or connection) to the hello line (Add-Type compiles C# at start: seconds on a slow PC). */
  startTimeoutMs: number;
  restartMinMs?: number;
  restartMaxMs: number;
  maxLineBytes?: number;
  log: Logger;
}

/** Default Windows PowerShell 5.1, by absolute path: a service's PATH is not to be relied on, nor hijacked. */
export function defaultPowershell(env: NodeJS.ProcessEnv = process.env): string {
  return `${env.SystemRoot ?? 'C:\\Windows'}\\System32\\WindowsPowerShell\\v1.0\\powershell.exe`;
}

/** The helper as a process the agent starts: `command` (powershell.exe) with the script as -EncodedCommand. */
export function helperProcess(o: {
  command: string;
  args?: readonly string[];
  env?: NodeJS.ProcessEnv | undefined;
}): ProcessTransport {
  return new ProcessTransport({ command: o.command, args: o.args ?? helperArgs(), env: o.env });
}

interface Pending {
  id: number;
  resolve: (r: HelperResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const DIAGNOSTIC_TAIL_BYTES = 2_048;
/** Requests in a row left unanswered before the helper is taken for hung and restarted. */
const HUNG_AFTER_TIMEOUTS = 2;
/**
 * Refused lines in a row (not JSON, invalid, too long, answering no request) before the link is dropped: a
 * peer flooding the agent is not the helper. A real helper's bad line is one per request at most.
 */
const MAX_BAD_LINES_IN_ROW = 16;
/** Timed-out requests whose late answers are still recognised as such. */
const LATE_IDS_KEPT = 4;

/**
 * One helper, over one link at a time: opened at start, opened again with back-off when it ends (1 s doubling
 * to `restartMaxMs`; reset by an answered reading), ended on stop.
 */
export class WindowsHelper {
  private link: HelperLink | undefined;
  private hello: HelperHello | undefined;
  private pending: Pending | undefined;
  private nextId = 1;
  private timedOut: number[] = [];
  private stopping = true;
  private restartTimer: NodeJS.Timeout | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private timeoutsInRow = 0;
  private badInRow = 0;
  /** Links ended by the agent (hung, hostile, retargeted): what they still send is not read. */
  private readonly dropped = new WeakSet<HelperLink>();
  /** Links not yet closed, each with its close. */
  private readonly unclosed = new Set<Promise<void>>();
  private diagnosticTail = '';
  private readyWaiters: (() => void)[] = [];
  private readonly name: string;
  private readonly counts: WindowsHelperStats = {
    starts: 0,
    exits: 0,
    readings: 0,
    timeouts: 0,
    badLines: {},
    late: 0,
  };
  /** Distinct problems already logged (bounded), so a helper failing every 10 s logs each once. */
  private readonly logged = new Set<string>();

  constructor(private readonly opts: WindowsHelperOptions) {
    this.name = opts.name ?? 'windows helper';
  }

  stats(): WindowsHelperStats {
    return { ...this.counts, badLines: { ...this.counts.badLines } };
  }

  /** The hello of the running helper; undefined while none is ready. */
  get ready(): HelperHello | undefined {
    return this.hello;
  }

  /** The running helper's process id, when it is a process (for tests and logs). */
  get pid(): number | undefined {
    return this.link?.pid;
  }

  /** Whether `start()` was called and `stop()` was not. */
  get started(): boolean {
    return !this.stopping;
  }

  start(): void {
    if (!this.stopping) return;
    this.stopping = false;
    this.open();
  }

  /**
   * Ends the current link, if any, and opens a new one now, without back-off: the transport's target changed
   * (the console moved to another session's pipe).
   */
  restart(): void {
    if (this.stopping) return;
    this.failures = 0;
    clearTimeout(this.restartTimer);
    clearTimeout(this.startTimer);
    const old = this.link;
    this.link = undefined;
    this.hello = undefined;
    this.failPending(new Error(`${this.name}: ${this.opts.transport.target} is the one to read now`));
    if (old) this.drop(old);
    this.open();
  }

  /** Ends a link for good: nothing more is read from it, and it is not ready from now on. */
  private drop(link: HelperLink): void {
    this.dropped.add(link);
    if (this.link === link) this.hello = undefined;
    link.kill();
  }

  /**
   * Resolves true once the helper said hello, false when the link ends first or `ms` pass — and at once when no
   * link is open (waiting to open one again).
   */
  whenReady(ms: number): Promise<boolean> {
    if (this.hello) return Promise.resolve(true);
    if (this.stopping || !this.link) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(this.hello !== undefined);
      };
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      this.readyWaiters.push(done);
    });
  }

  private wakeWaiters(): void {
    for (const w of this.readyWaiters.splice(0)) w();
  }

  private warnOnce(key: string, obj: Record<string, unknown>, msg: string): void {
    if (this.logged.has(key)) return;
    if (this.logged.size < 64) this.logged.add(key);
    this.opts.log.warn(obj, msg);
  }

  private open(): void {
    const log = this.opts.log;
    this.hello = undefined;
    this.diagnosticTail = '';
    this.timeoutsInRow = 0;
    this.badInRow = 0;
    this.counts.starts++;
    let link: HelperLink | undefined;
    const lines = new LineSplitter(
      this.opts.maxLineBytes ?? 256 * 1024,
      (line) => link && this.onLine(link, line),
      (bytes) => link && this.bad(link, 'too_long', `a line longer than ${bytes - 1} bytes`),
    );
    let closed!: () => void;
    const exited = new Promise<void>((resolve) => {
      closed = resolve;
    });
    this.unclosed.add(exited);
    link = this.opts.transport.open({
      data: (chunk) => lines.push(chunk),
      diagnostic: (chunk) => {
        this.diagnosticTail = (this.diagnosticTail + chunk.toString('utf8')).slice(-DIAGNOSTIC_TAIL_BYTES);
      },
      closed: (why) => {
        this.counts.exits++;
        this.unclosed.delete(exited);
        closed();
        if (this.link !== link) return; // replaced already (restart)
        clearTimeout(this.startTimer);
        this.link = undefined;
        this.onExit(why);
      },
    });
    this.link = link;
    const opened = link;
    this.startTimer = setTimeout(() => {
      if (this.link === opened && !this.hello) {
        this.warnOnce(
          'start-timeout',
          { target: this.opts.transport.target },
          `${this.name}: no hello within ${this.opts.startTimeoutMs} ms; ${this.opts.transport.again}`,
        );
        this.drop(opened);
      }
    }, this.opts.startTimeoutMs);
    log.debug({ pid: link.pid, target: this.opts.transport.target }, `${this.name} started`);
  }

  private onExit(why: string): void {
    this.hello = undefined;
    this.wakeWaiters();
    const tail = this.diagnosticTail.trim().split('\n').slice(-5).join('\n').slice(-500);
    this.failPending(new Error(`${this.name} ${why}${tail ? `: ${tail}` : ''}`));
    if (this.stopping) return;
    const delayMs = Math.min(this.opts.restartMaxMs, (this.opts.restartMinMs ?? 1_000) * 2 ** this.failures);
    this.failures++;
    // Each distinct reason once as a warning; again and again (a pipe nobody serves all day) only as debug.
    const key = `exit:${why.slice(0, 100)}`;
    const level = this.logged.has(key) ? 'debug' : 'warn';
    if (this.logged.size < 64) this.logged.add(key);
    this.opts.log[level](
      { target: this.opts.transport.target, why, stderr: tail || undefined, restartInMs: delayMs },
      `${this.name} stopped; ${this.opts.transport.again}`,
    );
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.open();
    }, delayMs);
  }

  private bad(link: HelperLink, reason: HelperBadLine, detail: string): void {
    if (link !== this.link || this.dropped.has(link)) return;
    this.counts.badLines[reason] = (this.counts.badLines[reason] ?? 0) + 1;
    const message = `${this.name}: ${detail} (${reason})`;
    this.warnOnce(`bad:${reason}`, { reason, detail: detail.slice(0, 200) }, message);
    if (!this.hello) {
      // Not speaking the protocol from its first line: not our helper, or a broken one. Start afresh.
      this.drop(link);
      return;
    }
    this.failPending(new Error(message));
    if (++this.badInRow >= MAX_BAD_LINES_IN_ROW) {
      this.warnOnce(
        'flood',
        { lines: this.badInRow },
        `${this.name}: ${this.badInRow} refused lines in a row; ${this.opts.transport.again}`,
      );
      this.drop(link);
    }
  }

  private onLine(link: HelperLink, line: string): void {
    if (link !== this.link || this.dropped.has(link)) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.bad(link, 'not_json', `not JSON: ${JSON.stringify(line.slice(0, 80))}`);
      return;
    }
    if (!this.hello) {
      const h = helperHelloSchema.safeParse(value);
      if (!h.success) {
        this.bad(link, 'not_hello', `first line is not the hello: ${line.slice(0, 80)}`);
        return;
      }
      clearTimeout(this.startTimer);
      this.hello = h.data;
      this.opts.log.info(
        { pid: link.pid, target: this.opts.transport.target, ...h.data },
        `${this.name} ready`,
      );
      if (h.data.displayWatch && h.data.displayWatch !== 'ok') {
        this.warnOnce(
          'display-watch',
          { why: h.data.displayWatch },
          `${this.name}: cannot watch the display state; screenOn comes from the screen saver only`,
        );
      }
      this.wakeWaiters();
      return;
    }
    const r = helperResponseSchema.safeParse(value);
    if (!r.success) {
      const i = r.error.issues[0];
      this.bad(link, 'invalid', i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid');
      return;
    }
    const p = this.pending;
    if (!p || r.data.id !== p.id) {
      const late = r.data.id === null ? -1 : this.timedOut.indexOf(r.data.id);
      if (late >= 0) {
        this.timedOut.splice(late, 1);
        this.counts.late++; // answers a request that already timed out
        return;
      }
      this.bad(link, 'unexpected', `an answer to no request (id ${r.data.id})`);
      return;
    }
    this.pending = undefined;
    clearTimeout(p.timer);
    this.timeoutsInRow = 0;
    this.badInRow = 0;
    if (r.data.error) {
      p.reject(new Error(`${this.name}: ${r.data.error}`));
      return;
    }
    this.counts.readings++;
    this.failures = 0;
    for (const e of r.data.errors ?? []) this.warnOnce(`part:${e.slice(0, 100)}`, {}, `${this.name}: ${e}`);
    p.resolve(r.data);
  }

  private failPending(err: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.reject(err);
  }

  /** One reading: a request line, its answer. Rejects when the helper is not ready, fails, or is too slow. */
  read(): Promise<HelperResponse> {
    const link = this.link;
    if (!link || !this.hello) {
      return Promise.reject(new Error(`${this.name} ${this.link ? 'is starting' : 'is not running'}`));
    }
    if (this.pending) return Promise.reject(new Error(`${this.name} is busy with the previous reading`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.id !== id) return;
        this.pending = undefined;
        this.counts.timeouts++;
        this.timeoutsInRow++;
        this.timedOut.push(id);
        if (this.timedOut.length > LATE_IDS_KEPT) this.timedOut.shift();
        if (this.timeoutsInRow >= HUNG_AFTER_TIMEOUTS && this.link === link) {
          this.opts.log.warn(
            { pid: link.pid, target: this.opts.transport.target },
            `${this.name}: no answer to two readings in a row; ${this.opts.transport.again}`,
          );
          this.drop(link);
        }
        reject(new Error(`${this.name}: no answer within ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);
      this.pending = { id, resolve, reject, timer };
      link.write(`read ${id}\n`);
    });
  }

  /** Ends the helper: end of input (its loop ends), and ended for good if still there after `graceMs`. */
  async stop(graceMs = 2_000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.startTimer);
    this.failPending(new Error(`${this.name} stopped`));
    this.wakeWaiters();
    this.link?.end(graceMs);
    await Promise.all(this.unclosed);
  }
}
