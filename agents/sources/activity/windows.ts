import { type ChildProcess, spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Activity, counterSchema, MAX_IDLE_S } from '../../../contracts/messages.js';
import { executableName, idleSeconds } from './activity.js';
import { LineSplitter } from './lines.js';
import { helperArgs } from './windows-script.js';

/**
 * The Windows helper's process and protocol (the script: windows-script.ts): one long-lived powershell.exe,
 * spawned at start, restarted with back-off when it dies, killed on stop. One request line per reading, one
 * JSON line back, parsed and validated here with zod: a garbled, invalid or oversized line is a clear error and
 * a counter (`badLines`), never a crash; the reading it answered goes without activity.
 *
 * Which process runs is configuration (`agent.windowsHelper.command`): the tests run this same code against a
 * small Node script standing in for powershell.exe (tests/helpers/fake-powershell.mjs) that replays recorded
 * lines (tests/fixtures/windows/).
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
  /** powershell.exe, or what stands in for it. */
  command: string;
  /** Default: helperArgs() — the script as -EncodedCommand. */
  args?: readonly string[];
  /** One request's answer. */
  timeoutMs: number;
  /** From spawn to the hello line (Add-Type compiles C# at start: seconds on a slow PC). */
  startTimeoutMs: number;
  restartMinMs?: number;
  restartMaxMs: number;
  maxLineBytes?: number;
  /** The helper's environment; default the agent's. */
  env?: NodeJS.ProcessEnv;
  log: Logger;
}

/** Default Windows PowerShell 5.1, by absolute path: a service's PATH is not to be relied on, nor hijacked. */
export function defaultPowershell(env: NodeJS.ProcessEnv = process.env): string {
  return `${env.SystemRoot ?? 'C:\\Windows'}\\System32\\WindowsPowerShell\\v1.0\\powershell.exe`;
}

interface Pending {
  id: number;
  resolve: (r: HelperResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const STDERR_TAIL_BYTES = 2_048;
/** Requests in a row left unanswered before the helper is taken for hung and restarted. */
const HUNG_AFTER_TIMEOUTS = 2;

export class WindowsHelper {
  private child: ChildProcess | undefined;
  private hello: HelperHello | undefined;
  private pending: Pending | undefined;
  private nextId = 1;
  private stopping = true;
  private restartTimer: NodeJS.Timeout | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private timeoutsInRow = 0;
  private stderrTail = '';
  private exited: Promise<void> = Promise.resolve();
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

  constructor(private readonly opts: WindowsHelperOptions) {}

  stats(): WindowsHelperStats {
    return { ...this.counts, badLines: { ...this.counts.badLines } };
  }

  /** The hello of the running helper; undefined while none is ready. */
  get ready(): HelperHello | undefined {
    return this.hello;
  }

  /** The running helper's process id (for tests and logs). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (!this.stopping) return;
    this.stopping = false;
    this.spawn();
  }

  private warnOnce(key: string, obj: Record<string, unknown>, msg: string): void {
    if (this.logged.has(key)) return;
    if (this.logged.size < 64) this.logged.add(key);
    this.opts.log.warn(obj, msg);
  }

  private spawn(): void {
    const log = this.opts.log;
    this.hello = undefined;
    this.stderrTail = '';
    this.timeoutsInRow = 0;
    let child: ChildProcess;
    try {
      child = spawn(this.opts.command, [...(this.opts.args ?? helperArgs())], {
        stdio: ['pipe', 'pipe', 'pipe'],
        windowsHide: true,
        ...(this.opts.env ? { env: this.opts.env } : {}),
      });
    } catch (err) {
      // spawn throws synchronously only for arguments it cannot pass (e.g. a NUL byte in the path).
      this.counts.starts++;
      this.counts.exits++;
      this.onExit(`cannot be started: ${(err as Error).message}`);
      return;
    }
    this.counts.starts++;
    this.child = child;
    const lines = new LineSplitter(
      this.opts.maxLineBytes ?? 256 * 1024,
      (line) => this.onLine(child, line),
      (bytes) => this.bad(child, 'too_long', `a line longer than ${bytes - 1} bytes`),
    );
    child.stdout!.on('data', (chunk: Buffer) => lines.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    // Writing to a helper that just died: the exit handler below reports it.
    child.stdin!.on('error', () => {});
    let spawnError: string | undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err.code === 'ENOENT' ? `${this.opts.command} not found` : err.message;
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.counts.exits++;
        clearTimeout(this.startTimer);
        if (this.child === child) this.child = undefined;
        const why = spawnError ?? (signal ? `killed by ${signal}` : `exited with code ${code}`);
        this.onExit(why);
        resolve();
      });
    });
    this.startTimer = setTimeout(() => {
      if (this.child === child && !this.hello) {
        this.warnOnce(
          'start-timeout',
          { command: this.opts.command },
          `windows helper: no hello within ${this.opts.startTimeoutMs} ms; restarting it`,
        );
        child.kill();
      }
    }, this.opts.startTimeoutMs);
    log.debug({ pid: child.pid }, 'windows helper started');
  }

  private onExit(why: string): void {
    this.hello = undefined;
    const tail = this.stderrTail.trim().split('\n').slice(-5).join('\n').slice(-500);
    this.failPending(new Error(`windows helper ${why}${tail ? `: ${tail}` : ''}`));
    if (this.stopping) return;
    const delayMs = Math.min(this.opts.restartMaxMs, (this.opts.restartMinMs ?? 1_000) * 2 ** this.failures);
    this.failures++;
    this.opts.log.warn(
      { command: this.opts.command, why, stderr: tail || undefined, restartInMs: delayMs },
      'windows helper stopped; restarting it',
    );
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.spawn();
    }, delayMs);
  }

  private bad(child: ChildProcess, reason: HelperBadLine, detail: string): void {
    if (child !== this.child) return;
    this.counts.badLines[reason] = (this.counts.badLines[reason] ?? 0) + 1;
    const message = `windows helper: ${detail} (${reason})`;
    this.warnOnce(`bad:${reason}`, { reason, detail: detail.slice(0, 200) }, message);
    if (!this.hello) {
      // Not speaking the protocol from its first line: not our helper, or a broken one. Start afresh.
      child.kill();
      return;
    }
    this.failPending(new Error(message));
  }

  private onLine(child: ChildProcess, line: string): void {
    if (child !== this.child) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.bad(child, 'not_json', `not JSON: ${JSON.stringify(line.slice(0, 80))}`);
      return;
    }
    if (!this.hello) {
      const h = helperHelloSchema.safeParse(value);
      if (!h.success) {
        this.bad(child, 'not_hello', `first line is not the hello: ${line.slice(0, 80)}`);
        return;
      }
      clearTimeout(this.startTimer);
      this.hello = h.data;
      this.opts.log.info({ pid: child.pid, ...h.data }, 'windows helper ready');
      if (h.data.displayWatch && h.data.displayWatch !== 'ok') {
        this.warnOnce(
          'display-watch',
          { why: h.data.displayWatch },
          'windows helper: cannot watch the display state; screenOn comes from the screen saver only',
        );
      }
      return;
    }
    const r = helperResponseSchema.safeParse(value);
    if (!r.success) {
      const i = r.error.issues[0];
      this.bad(child, 'invalid', i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid');
      return;
    }
    const p = this.pending;
    if (!p || r.data.id !== p.id) {
      if (r.data.id !== null && r.data.id < this.nextId) {
        this.counts.late++; // answers a request that already timed out
        return;
      }
      this.bad(child, 'unexpected', `an answer to no request (id ${r.data.id})`);
      return;
    }
    this.pending = undefined;
    clearTimeout(p.timer);
    this.timeoutsInRow = 0;
    if (r.data.error) {
      p.reject(new Error(`windows helper: ${r.data.error}`));
      return;
    }
    this.counts.readings++;
    this.failures = 0;
    for (const e of r.data.errors ?? []) this.warnOnce(`part:${e.slice(0, 100)}`, {}, `windows helper: ${e}`);
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
    const child = this.child;
    if (!child || !this.hello) {
      return Promise.reject(
        new Error(this.child ? 'windows helper is starting' : 'windows helper is not running'),
      );
    }
    if (this.pending) return Promise.reject(new Error('windows helper is busy with the previous reading'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.id !== id) return;
        this.pending = undefined;
        this.counts.timeouts++;
        this.timeoutsInRow++;
        if (this.timeoutsInRow >= HUNG_AFTER_TIMEOUTS && this.child === child) {
          this.opts.log.warn(
            { pid: child.pid },
            'windows helper: no answer to two readings in a row; restarting it',
          );
          child.kill();
        }
        reject(new Error(`windows helper: no answer within ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);
      this.pending = { id, resolve, reject, timer };
      child.stdin!.write(`read ${id}\n`);
    });
  }

  /** Ends the helper: stdin closed (it exits at end of input), killed if still there after `graceMs`. */
  async stop(graceMs = 2_000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.startTimer);
    this.failPending(new Error('windows helper stopped'));
    const child = this.child;
    if (!child) return;
    child.stdin!.end();
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(killer);
  }
}
