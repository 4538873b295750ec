import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trackChild } from './children.js';
import { freePort, waitFor } from './ports.js';

/**
 * Runs a real `influxd` (InfluxDB 1.x, Debian's `influxdb` package) on loopback ports with its own data folder.
 * Used by the tests and by the quickstart. Nothing listens beyond 127.0.0.1.
 */
export interface InfluxdOptions {
  /** Data folder; a temporary one (removed on dispose) when absent. */
  dataDir?: string;
  /** HTTP port; a free one when absent. */
  port?: number;
  authEnabled?: boolean;
  /** `[http] max-body-size` in bytes (0 = unlimited); small values make influxd answer 413. */
  maxBodySize?: number;
  /** `[http] max-row-limit` (0 = unlimited, the default); a limit makes influxd cut large answers short. */
  maxRowLimit?: number;
  binary?: string;
  /**
   * Run in its own process group, so that a Ctrl-C in the terminal reaches only us and we can flush our
   * buffers into influxd before stopping it (the quickstart). Tests leave it in ours.
   */
  detached?: boolean;
}

export class Influxd {
  private proc: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  private stderr = '';
  private tempDir: string | undefined;
  port = 0;
  private rpcPort = 0;
  private dir = '';

  constructor(private readonly opts: InfluxdOptions = {}) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The running influxd's process id (for CPU accounting in the benchmarks); undefined when not running. */
  get pid(): number | undefined {
    return this.proc?.exitCode === null ? this.proc.pid : undefined;
  }

  /** Starts influxd and waits until /ping answers. On a restart, reuses the same folder and ports. */
  async start(): Promise<this> {
    if (!this.dir) {
      if (!this.opts.dataDir) this.tempDir = mkdtempSync(join(tmpdir(), 'cfm-influxd-'));
      this.dir = this.opts.dataDir ?? this.tempDir!;
      mkdirSync(this.dir, { recursive: true });
    }
    // A restart keeps its ports: its clients hold the URL. Another process may hold the port for a moment
    // (a test elsewhere probing for a free port gets the one just freed): the same port is tried again. A first
    // start takes other free ports instead.
    const restart = this.port !== 0;
    for (let attempt = 0; ; attempt++) {
      if (!restart && (!this.port || attempt > 0)) this.port = this.opts.port ?? (await freePort());
      if (!restart && (!this.rpcPort || attempt > 0)) this.rpcPort = await freePort();
      try {
        await this.spawnOnce();
        return this;
      } catch (err) {
        const inUse = /address already in use/.test(this.stderr);
        if (!inUse || (restart ? attempt >= 50 : attempt >= 3 || this.opts.port)) throw err;
        if (restart) await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async spawnOnce(): Promise<void> {
    const d = this.dir;
    const conf = join(d, 'influxdb.conf');
    writeFileSync(
      conf,
      `reporting-disabled = true
bind-address = "127.0.0.1:${this.rpcPort}"
[meta]
  dir = "${join(d, 'meta')}"
  logging-enabled = false
[data]
  dir = "${join(d, 'data')}"
  wal-dir = "${join(d, 'wal')}"
  query-log-enabled = false
  trace-logging-enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:${this.port}"
  auth-enabled = ${this.opts.authEnabled ? 'true' : 'false'}
  log-enabled = false
  max-body-size = ${this.opts.maxBodySize ?? 25_000_000}
  max-row-limit = ${this.opts.maxRowLimit ?? 0}
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "error"
`,
    );
    this.stderr = '';
    const proc = spawn(this.opts.binary ?? 'influxd', ['run', '-config', conf], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, INFLUXDB_REPORTING_DISABLED: 'true' },
      detached: this.opts.detached ?? false,
    });
    this.proc = proc;
    trackChild(proc, `influxd ${this.url}`, this.tempDir);
    proc.stderr?.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-8_000);
    });
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    let dead = false;
    void this.exited.then(() => {
      dead = true;
    });
    await waitFor(
      async () => {
        if (dead) throw new Error('exited');
        const r = await fetch(`${this.url}/ping`);
        return r.status === 204;
      },
      { timeoutMs: 30_000, what: `influxd on ${this.url}` },
    ).catch((err: unknown) => {
      if (!dead) proc.kill('SIGKILL');
      throw new Error(`influxd did not start (${(err as Error).message}): ${this.stderr.slice(-2_000)}`);
    });
  }

  /** Stops influxd (SIGTERM, then SIGKILL after 10 s); data stays for a restart. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
    this.proc = undefined;
  }

  /** Stops influxd and removes a temporary data folder. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.tempDir) rmSync(this.tempDir, { recursive: true, force: true });
  }

  /** Runs InfluxQL directly over HTTP: an independent check of what the storage layer wrote. */
  async query(q: string, db?: string, auth?: { username: string; password: string }): Promise<unknown> {
    const form = new URLSearchParams({ q, epoch: 'ms' });
    if (db) form.set('db', db);
    // influxd reads u/p from the URL or Basic auth, not from a form body.
    const headers: Record<string, string> = auth
      ? { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` }
      : {};
    const r = await fetch(`${this.url}/query`, { method: 'POST', body: form, headers });
    return r.json();
  }
}
