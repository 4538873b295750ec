import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trackChild } from './children.js';
import { waitFor } from './ports.js';

/**
 * Runs a real net-snmp agent (Debian's `snmpd`, 5.9) on 127.0.0.1 with its own configuration and persistent
 * folder: the SNMP peer of the poller's tests and of the quickstart. It serves net-snmp's default modules, so
 * IF-MIB ifTable/ifXTable (RFC 2863) describe this machine's interfaces, `lo` included.
 * Nothing listens beyond 127.0.0.1.
 */
export interface SnmpdOptions {
  /** SNMPv2c read-only community, accepted from 127.0.0.1 only. Default `public`. */
  community?: string;
  /**
   * One SNMPv3 user (RFC 3414 USM): SHA authentication and AES privacy, read-only, authPriv required.
   * net-snmp refuses passphrases shorter than 8 characters.
   */
  v3?: { user: string; authPassword: string; privPassword: string };
  /** SNMPv2-MIB sysName.0 (1.3.6.1.2.1.1.5.0); the host name when absent. */
  sysName?: string;
  /** SNMPv2-MIB sysDescr.0 (1.3.6.1.2.1.1.1.0); `uname -a` when absent. */
  sysDescr?: string;
  /** SNMPv2-MIB sysLocation.0 (1.3.6.1.2.1.1.6.0); net-snmp's placeholder when absent. */
  sysLocation?: string;
  /** The agent; `/usr/sbin/snmpd` when absent (Debian does not put /usr/sbin on a user's PATH). */
  binary?: string;
  /**
   * The loopback address it listens on, default 127.0.0.1: several agents on 127.0.0.x share one port, as a
   * fleet of routers all answer on 161 (the poller's registry targets have one port).
   */
  host?: string;
}

/** SNMPv2-MIB::sysUpTime.0: every agent answers it, so a GET of it is the readiness probe. */
const SYS_UPTIME_OID = '1.3.6.1.2.1.1.3.0';
const START_TIMEOUT_MS = 15_000;
const STOP_KILL_AFTER_MS = 5_000;

export class Snmpd {
  private proc: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  private stderr = '';
  private dir: string | undefined;
  /** UDP port on 127.0.0.1; 0 until the first start(). A restart keeps it, so a poller sees the same target. */
  port = 0;

  constructor(private readonly opts: SnmpdOptions = {}) {}

  /** `127.0.0.1:<port>`: the agent as the net-snmp tools address it. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  get host(): string {
    return this.opts.host ?? '127.0.0.1';
  }

  get community(): string {
    return this.opts.community ?? 'public';
  }

  /**
   * Starts snmpd and waits until it answers a real SNMP GET of sysUpTime.0. A restart reuses the folder (engine
   * ID, engineBoots and the v3 user's keys persist there) and the port; sysUpTime starts again from 0.
   */
  async start(): Promise<this> {
    validate(this.opts);
    this.dir ??= mkdtempSync(join(tmpdir(), 'cfm-snmpd-'));
    const fixedPort = this.port !== 0;
    for (let attempt = 0; ; attempt++) {
      if (!fixedPort) this.port = await freeUdpPort();
      try {
        await this.spawnOnce(this.dir);
        return this;
      } catch (err) {
        // The port was free a moment ago; another process may have taken it since.
        if (attempt >= 3 || fixedPort || !/Error opening specified endpoint/.test(this.stderr)) throw err;
      }
    }
  }

  private async spawnOnce(dir: string): Promise<void> {
    const conf = join(dir, 'snmpd.conf');
    const persistentDir = join(dir, 'persist');
    writeFileSync(conf, snmpdConf(this.opts, this.port, persistentDir));
    this.stderr = '';
    const proc = spawn(
      this.opts.binary ?? '/usr/sbin/snmpd',
      [
        '-f', // foreground: we own the process, no fork, no pid file
        '-C', // no /etc/snmp/snmpd.conf, ~/.snmp, snmp.conf: only the file below
        '-c',
        conf,
        '-LE',
        '3', // stderr, priority err and above: no per-request "Connection from" lines
        '-m',
        '', // load no MIB files: the agent needs none, and Debian ships only net-snmp's own (the IETF ones are non-free)
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        // Also set here: the variable is read before any config line, so nothing is ever written to /var/lib/snmp.
        env: { ...process.env, SNMP_PERSISTENT_DIR: persistentDir },
        // Its own process group: a Ctrl-C in the terminal reaches us, and we stop snmpd in order.
        // If we die, the exit hook still takes it down.
        detached: false,
      },
    );
    this.proc = proc;
    trackChild(proc, `snmpd ${this.address}`, this.dir);
    proc.stderr?.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-8_000);
    });
    let dead = false;
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code) => {
        dead = true;
        resolve(code);
      }),
    );
    // A spawn failure (no binary) emits 'error' and no 'exit'.
    proc.once('error', (err) => {
      dead = true;
      this.stderr += `\n${err.message}`;
    });
    const started = await waitFor(() => dead || this.answers(), {
      timeoutMs: START_TIMEOUT_MS,
      what: `snmpd on ${this.address}`,
    }).then(
      () => (dead ? new Error('exited') : undefined),
      (err: unknown) => err as Error,
    );
    if (started) {
      if (!dead) proc.kill('SIGKILL');
      throw new Error(`snmpd did not start (${started.message}): ${this.stderr.slice(-2_000).trim()}`);
    }
  }

  /** One SNMPv2c GET of sysUpTime.0 with the net-snmp tool: true when the agent answers a real request. */
  private answers(): Promise<boolean> {
    const args = ['-v2c', '-c', this.community, '-t', '0.3', '-r', '0', '-Oqv', this.address, SYS_UPTIME_OID];
    return new Promise((resolve) => execFile('snmpget', args, { timeout: 5_000 }, (err) => resolve(!err)));
  }

  /** Stops snmpd (SIGTERM, then SIGKILL after 5 s) and waits for it to exit; the folder stays for a restart. */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), STOP_KILL_AFTER_MS);
    await this.exited;
    clearTimeout(t);
  }

  /** Stops snmpd and removes its folder. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

/** The generated snmpd.conf (snmpd.conf(5)). Exported so the quickstart can show what it runs. */
export function snmpdConf(opts: SnmpdOptions, port: number, persistentDir: string): string {
  const lines = [
    `agentAddress udp:${opts.host ?? '127.0.0.1'}:${port}`,
    // No AgentX master socket: nothing else registers with this agent, and /var/agentx needs root.
    'master no',
    // A library (snmp.conf) token, hence `[snmp]`; SNMP_PERSISTENT_DIR in start() says the same earlier.
    `[snmp] persistentDir ${persistentDir}`,
    `rocommunity ${opts.community ?? 'public'} 127.0.0.1`,
  ];
  if (opts.v3) {
    const { user, authPassword, privPassword } = opts.v3;
    // Read once at start-up; net-snmp replaces the line with a localized usmUser entry in persistentDir.
    lines.push(`createUser ${user} SHA "${authPassword}" AES "${privPassword}"`, `rouser ${user} priv`);
  }
  if (opts.sysName !== undefined) lines.push(`sysName ${opts.sysName}`);
  if (opts.sysDescr !== undefined) lines.push(`sysDescr ${opts.sysDescr}`);
  if (opts.sysLocation !== undefined) lines.push(`sysLocation ${opts.sysLocation}`);
  return `${lines.join('\n')}\n`;
}

/** Values go into snmpd.conf lines; reject what would change the meaning of the file. */
function validate(o: SnmpdOptions): void {
  const oneLine = /^[^\s"][^\r\n"]*$/;
  const text = { sysName: o.sysName, sysDescr: o.sysDescr, sysLocation: o.sysLocation };
  for (const [key, value] of Object.entries(text)) {
    if (value !== undefined && !oneLine.test(value))
      throw new Error(`Snmpd: ${key} must be one line, without quotes or leading space`);
  }
  if (o.host !== undefined && !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(o.host))
    throw new Error('Snmpd: host must be a loopback address 127.x.y.z');
  const words = { community: o.community, 'v3.user': o.v3?.user };
  for (const [key, value] of Object.entries(words)) {
    if (value !== undefined && !/^[^\s"#\\]+$/.test(value))
      throw new Error(`Snmpd: ${key} must be one word without quotes, # or backslashes`);
  }
  if (o.v3) {
    for (const key of ['authPassword', 'privPassword'] as const) {
      // usm refuses passphrases under 8 characters (USM_LENGTH_P_MIN) and would start without the user.
      if (o.v3[key].length < 8 || /["\\\r\n]/.test(o.v3[key]))
        throw new Error(`Snmpd: v3.${key} must be at least 8 characters, without quotes or backslashes`);
    }
  }
}

/** A UDP port on 127.0.0.1 that was free a moment ago (ports.ts's freePort finds TCP ones). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.unref();
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}
