import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trackChild } from './children.js';
import { freePort, waitFor } from './ports.js';

export interface MosquittoOptions {
  /**
   * The whole configuration for a port; its listener must bind that port on 127.0.0.1. Default: a loopback
   * listener without persistence plus `extraConfig`.
   */
  config?: (port: number) => string;
  /** Appended to the default configuration (ignored with `config`). Default `allow_anonymous true`. */
  extraConfig?: string;
  /** Where the configuration file goes; default a temp dir, removed by dispose(). */
  dir?: string;
}

/**
 * Runs a real Mosquitto broker (Debian's `mosquitto` package, MQTT 3.1.1 and 5 with shared subscriptions) on a
 * loopback port: the production-style broker for tests of the collector and agents, and for the shipped
 * profile's tests (`config`).
 *
 * Started on conditions, never on timing: it is ready when it has logged "… running" (its listeners are open)
 * and its port accepts a connection. If it exits first, the error carries its log; a port taken between
 * choosing and binding it (another test's daemon or client got it) is retried on another port at the first
 * start, and on the same port (clients hold its URL) at a restart.
 */
export class Mosquitto {
  private proc: ChildProcess | undefined;
  private readonly ownDir: boolean;
  private readonly dir: string;
  private log = '';
  port = 0;

  constructor(opts: MosquittoOptions | string = {}) {
    const o = typeof opts === 'string' ? { extraConfig: opts } : opts;
    const extra = o.extraConfig ?? 'allow_anonymous true\n';
    this.config =
      o.config ??
      ((port) =>
        `listener ${port} 127.0.0.1\npersistence false\nmax_inflight_messages 100\nmax_queued_messages 100000\n${extra}\n`);
    this.ownDir = o.dir === undefined;
    this.dir = o.dir ?? mkdtempSync(join(tmpdir(), 'cfm-mosquitto-'));
  }

  private readonly config: (port: number) => string;

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** The running broker's process id (benchmarks pin it to a core and read its CPU time). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** The last 8 kB of its log. */
  get output(): string {
    return this.log;
  }

  async start(): Promise<this> {
    const restart = this.port !== 0;
    for (let attempt = 1; ; attempt++) {
      if (!restart) this.port = await freePort();
      const conf = join(this.dir, 'mosquitto.conf');
      // Mosquitto 2.0 logs its "… running" line at `information` (not `notice`); errors tell why it stopped.
      writeFileSync(
        conf,
        `log_dest stderr\nlog_type error\nlog_type warning\nlog_type information\n${this.config(this.port)}`,
      );
      const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      trackChild(proc, `mosquitto ${this.url}`, this.ownDir ? this.dir : undefined);
      this.log = '';
      const running = new Promise<void>((resolve) => {
        const onData = (b: Buffer) => {
          this.log = (this.log + b.toString()).slice(-8_000);
          if (/mosquitto version \S+ running/.test(this.log)) resolve();
        };
        proc.stderr!.on('data', onData);
      });
      // `close`, not `exit`: by then its stderr has been read to the end (the reason it stopped).
      const exited = new Promise<number | string | null>((resolve) => {
        proc.once('close', (code, signal) => resolve(code ?? signal));
        proc.once('error', (err) => resolve(err.message));
      });
      const outcome = await Promise.race([running.then(() => 'running' as const), exited]);
      if (outcome === 'running') {
        this.proc = proc;
        const died = exited.then((code) => {
          throw new Error(`mosquitto exited (${code}) right after starting:\n${this.log}`);
        });
        died.catch(() => {}); // it exits at stop() too, long after the race is decided
        await Promise.race([
          waitFor(() => accepts(this.port), { timeoutMs: 30_000, what: `mosquitto on ${this.port}` }),
          died,
        ]);
        return this;
      }
      if (attempt < 5 && /Address already in use/i.test(this.log)) {
        // A restart keeps its port: wait until whoever holds it lets go.
        if (restart)
          await waitFor(async () => !(await accepts(this.port)), {
            timeoutMs: 10_000,
            what: `port ${this.port} free`,
          });
        continue;
      }
      throw new Error(`mosquitto exited (${outcome}) before it was running:\n${this.log}`);
    }
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await gone;
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether 127.0.0.1:port accepts a TCP connection now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
