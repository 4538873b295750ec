import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trackChild } from './children.js';
import { freePort, waitFor } from './ports.js';

/**
 * Runs a real Mosquitto broker (Debian's `mosquitto` package, MQTT 3.1.1 and 5 with shared subscriptions) on a
 * loopback port: the production-style broker for tests of the collector and agents.
 */
export class Mosquitto {
  private proc: ChildProcess | undefined;
  private dir: string | undefined;
  private stderr = '';
  port = 0;

  constructor(private readonly extraConfig = 'allow_anonymous true\n') {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.dir ??= mkdtempSync(join(tmpdir(), 'cfm-mosquitto-'));
    if (!this.port) this.port = await freePort();
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      `listener ${this.port} 127.0.0.1\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nmax_inflight_messages 100\nmax_queued_messages 100000\n${this.extraConfig}`,
    );
    const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    trackChild(proc, `mosquitto ${this.url}`, this.dir);
    proc.stderr?.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-4_000);
    });
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          if (proc.exitCode !== null) throw new Error(`mosquitto exited: ${this.stderr}`);
          const s = connect(this.port, '127.0.0.1', () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      { timeoutMs: 10_000, what: `mosquitto on ${this.port}` },
    );
    return this;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
    this.proc = undefined;
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
