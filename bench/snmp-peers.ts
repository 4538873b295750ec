// The peers bench/snmp.ts measures beside our poller, on the same simulated routers in the same run: collectd's
// snmp plugin (Debian collectd-core 5.12) and Prometheus' snmp_exporter (Debian prometheus-snmp-exporter 0.21),
// both from `deploy/install-deps.sh --bench`. Each is configured for the ten IF-MIB columns our poller reads
// (POLLED_COLUMNS) and counted by the interface rows it actually delivered, not by what it was asked for.
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { COLUMN } from '../agents/snmp/oids.js';
import { trackChild } from '../dev/children.js';
import { freePort, waitFor } from '../dev/ports.js';

export const CLK_TCK = 100; // USER_HZ on Linux (getconf CLK_TCK)

/** User + system CPU seconds of a /proc `stat` file: its own (fields 14 and 15) and its reaped children's (16, 17). */
function statCpuSeconds(path: string): { own: number; children: number } {
  const stat = readFileSync(path, 'utf8');
  // After the command name in parentheses (which may hold spaces): field 3 onwards.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    own: (Number(f[11]) + Number(f[12])) / CLK_TCK,
    children: (Number(f[13]) + Number(f[14])) / CLK_TCK,
  };
}

/**
 * CPU seconds (user + system, all threads) a live process has used (`own`) and those of its children it reaped
 * (`children`).
 */
export function processCpuSeconds(pid: number | 'self'): { own: number; children: number } {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/**
 * CPU seconds of this process's main thread and of all its other threads (V8's GC and compiler helpers, libuv's
 * pool): /proc/self/task/<tid>/stat. A thread that ended since is not counted.
 */
export function threadCpuSeconds(): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    let own: number;
    try {
      own = statCpuSeconds(`/proc/self/task/${tid}/stat`).own;
    } catch {
      continue; // a thread that ended
    }
    if (Number(tid) === process.pid) main += own;
    else other += own;
  }
  return { main, other };
}

/** CPU seconds (user + system, all threads) a live process has used. */
export function cpuSeconds(pid: number): number {
  return processCpuSeconds(pid).own;
}

/** Seconds until process `pid` used under 5 % of a core over one second (polled; at most `maxS`). */
export async function settled(pid: number, maxS: number): Promise<number> {
  const t0 = performance.now();
  let last = cpuSeconds(pid);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const now = cpuSeconds(pid);
    if (now - last < 0.05 || performance.now() - t0 > maxS * 1000) return (performance.now() - t0) / 1000;
    last = now;
  }
}

/** CPU seconds of this process's reaped children. */
export function reapedChildrenCpuSeconds(): number {
  return processCpuSeconds('self').children;
}

export interface BenchTarget {
  device: string;
  port: number;
}

/** A peer process under measurement: its pid, the interface polls it delivered so far, and its end. */
export interface Peer {
  name: string;
  pid: number;
  ifacePolls(): number;
  /** What went wrong so far (bad answers, a dead process), shown beside its figure. */
  problems(): string[];
  stop(): Promise<void>;
}

function spawnDaemon(cmd: string, args: string[], what: string, dir: string): ChildProcess {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  trackChild(proc, what, dir);
  return proc;
}

function captureLog(proc: ChildProcess): () => string {
  let log = '';
  const keep = (b: Buffer) => {
    log = (log + b.toString()).slice(-4_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  return () => log;
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
  });
}

const dotted = (oid: string) => `.${oid}`;

/**
 * collectd.conf for the targets: one Data block per collectd type. collectd's snmp plugin walks each Data block's
 * columns (its Values and instance OIDs) with GETNEXT until they leave their subtree, so a block that names its
 * rows by ifName re-walks ifName: only the octets block does (with ifAlias as its plugin instance), the others are
 * named by ifIndex — the cheapest configuration that reads each of the ten columns once, the hardest peer to
 * beat. Values go to the `network` plugin, to a UDP socket of the bench that counts them: the cheapest write
 * path collectd has (binary packets of many value lists, no disk).
 */
export function collectdConfig(opts: {
  targets: readonly BenchTarget[];
  intervalS: number;
  networkPort: number;
  dir: string;
}): string {
  const c = COLUMN;
  const data = (name: string, type: string, values: string[], extra = '') =>
    `  <Data "${name}">\n    Type "${type}"\n    Table true\n${extra}    Values ${values.map((v) => `"${dotted(v)}"`).join(' ')}\n  </Data>`;
  const blocks = [
    data(
      'octets',
      'if_octets',
      [c.ifHCInOctets, c.ifHCOutOctets],
      `    TypeInstanceOID "${dotted(c.ifName)}"\n    PluginInstanceOID "${dotted(c.ifAlias)}"\n`,
    ),
    data('errors', 'if_errors', [c.ifInErrors, c.ifOutErrors]),
    data('discards', 'derive', [c.ifInDiscards], '    TypeInstancePrefix "discards-"\n'),
    data('speed', 'gauge', [c.ifHighSpeed], '    TypeInstancePrefix "speed-"\n'),
    data('oper', 'gauge', [c.ifOperStatus], '    TypeInstancePrefix "oper-"\n'),
    data(
      'discontinuity',
      'gauge',
      [c.ifCounterDiscontinuityTime],
      '    TypeInstancePrefix "discontinuity-"\n',
    ),
  ];
  const hosts = opts.targets.map(
    (t) =>
      `  <Host "${t.device}">\n    Address "127.0.0.1:${t.port}"\n    Version 2\n    Community "public"\n    Collect "octets" "errors" "discards" "speed" "oper" "discontinuity"\n    Interval ${opts.intervalS}\n    Timeout 5\n    Retries 1\n  </Host>`,
  );
  return [
    'Hostname "bench"',
    'FQDNLookup false',
    `BaseDir "${opts.dir}"`,
    `PIDFile "${join(opts.dir, 'collectd.pid')}"`,
    'PluginDir "/usr/lib/collectd"',
    'TypesDB "/usr/share/collectd/types.db"',
    `Interval ${opts.intervalS}`,
    'ReadThreads 8',
    'WriteThreads 1',
    'LoadPlugin network',
    'LoadPlugin snmp',
    `<Plugin network>\n  Server "127.0.0.1" "${opts.networkPort}"\n</Plugin>`,
    '<Plugin snmp>',
    ...blocks,
    ...hosts,
    '</Plugin>',
    '',
  ].join('\n');
}

/**
 * Counts the `if_octets` value lists in collectd's binary network protocol (collectd's src/network.c): a packet is
 * a sequence of parts, [type u16][length u16, including these 4 bytes][payload]; TYPE (0x0004) is a
 * NUL-terminated string that holds until the next TYPE part in the same packet; each VALUES part (0x0006) is
 * one value list — here one interface's octet counters from one read.
 */
export function countIfOctets(packet: Buffer): number {
  let type = '';
  let n = 0;
  for (let pos = 0; pos + 4 <= packet.length; ) {
    const partType = packet.readUInt16BE(pos);
    const len = packet.readUInt16BE(pos + 2);
    if (len < 4 || pos + len > packet.length) break;
    if (partType === 0x0004) type = packet.toString('latin1', pos + 4, pos + len - 1);
    else if (partType === 0x0006 && type === 'if_octets') n++;
    pos += len;
  }
  return n;
}

export async function startCollectd(opts: {
  targets: readonly BenchTarget[];
  intervalS: number;
  dir: string;
}): Promise<Peer> {
  if (!existsSync('/usr/sbin/collectd') || !existsSync('/usr/lib/collectd/snmp.so'))
    throw new Error('collectd or its snmp plugin is not installed (deploy/install-deps.sh --bench)');
  const sink: Socket = createSocket('udp4');
  let values = 0;
  sink.on('message', (m) => {
    values += countIfOctets(m);
  });
  await new Promise<void>((resolve) => sink.bind(0, '127.0.0.1', () => resolve()));
  const conf = join(opts.dir, 'collectd.conf');
  writeFileSync(conf, collectdConfig({ ...opts, networkPort: sink.address().port }));
  // -f: foreground (a child we can measure and stop).
  const proc = spawnDaemon('/usr/sbin/collectd', ['-f', '-C', conf], 'collectd', opts.dir);
  const log = captureLog(proc);
  await waitFor(() => values > 0 || proc.exitCode !== null, { timeoutMs: 30_000, what: 'collectd values' });
  if (proc.exitCode !== null) {
    sink.close();
    throw new Error(`collectd exited (${proc.exitCode}): ${log().trim().slice(-500)}`);
  }
  return {
    name: 'collectd',
    pid: proc.pid!,
    ifacePolls: () => values,
    problems: () => {
      const errs = log()
        .split('\n')
        .filter((l) => /error|fail|timeout/i.test(l));
      return proc.exitCode !== null ? [`exited ${proc.exitCode}`, ...errs] : errs.slice(-3);
    },
    stop: async () => {
      await stopProcess(proc);
      sink.close();
    },
  };
}

/**
 * snmp.yml for snmp_exporter 0.21 (module-level `version` and `auth`, the format before 0.23's separate
 * `auths`): one module walking the ten columns, each a metric indexed by ifIndex with ifName and ifAlias
 * looked up, as the generator's stock `if_mib` module labels them, and sysUpTime read with a GET.
 */
export function exporterConfig(maxRepetitions: number): string {
  const c = COLUMN;
  const lookups = [
    ['ifName', c.ifName],
    ['ifAlias', c.ifAlias],
  ]
    .map(
      ([label, oid]) =>
        `    - labels: [ifIndex]\n      labelname: ${label}\n      oid: ${oid}\n      type: DisplayString`,
    )
    .join('\n');
  const metric = (name: string, oid: string, type: string) =>
    `  - name: ${name}\n    oid: ${oid}\n    type: ${type}\n    help: IF-MIB ${name}\n    indexes:\n    - labelname: ifIndex\n      type: gauge\n    lookups:\n${lookups}`;
  const metrics = [
    metric('ifHCInOctets', c.ifHCInOctets, 'counter'),
    metric('ifHCOutOctets', c.ifHCOutOctets, 'counter'),
    metric('ifHighSpeed', c.ifHighSpeed, 'gauge'),
    metric('ifCounterDiscontinuityTime', c.ifCounterDiscontinuityTime, 'gauge'),
    metric('ifOperStatus', c.ifOperStatus, 'gauge'),
    metric('ifInErrors', c.ifInErrors, 'counter'),
    metric('ifOutErrors', c.ifOutErrors, 'counter'),
    metric('ifInDiscards', c.ifInDiscards, 'counter'),
  ];
  return [
    'if_mib:',
    '  walk:',
    ...[
      c.ifName,
      c.ifAlias,
      c.ifHCInOctets,
      c.ifHCOutOctets,
      c.ifHighSpeed,
      c.ifCounterDiscontinuityTime,
      c.ifOperStatus,
      c.ifInErrors,
      c.ifOutErrors,
      c.ifInDiscards,
    ].map((o) => `  - ${o}`),
    '  get:',
    '  - 1.3.6.1.2.1.1.3.0',
    '  metrics:',
    '  - name: sysUpTime\n    oid: 1.3.6.1.2.1.1.3\n    type: gauge\n    help: SNMPv2-MIB sysUpTime',
    ...metrics,
    '  version: 2',
    `  max_repetitions: ${maxRepetitions}`,
    '  retries: 1',
    '  timeout: 5s',
    '  auth:',
    '    community: public',
    '',
  ].join('\n');
}

/**
 * snmp_exporter, scraped by this process over HTTP like Prometheus would: each target once per interval, the
 * scrapes spread over it. An interface poll is an `ifHCInOctets{…}` sample in a scrape.
 */
export async function startExporter(opts: {
  targets: readonly BenchTarget[];
  intervalS: number;
  maxRepetitions: number;
  dir: string;
}): Promise<Peer> {
  const bin = '/usr/bin/prometheus-snmp-exporter';
  if (!existsSync(bin))
    throw new Error('prometheus-snmp-exporter is not installed (deploy/install-deps.sh --bench)');
  const conf = join(opts.dir, 'snmp.yml');
  writeFileSync(conf, exporterConfig(opts.maxRepetitions));
  const port = await freePort();
  const proc = spawnDaemon(
    bin,
    [`--config.file=${conf}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    'snmp_exporter',
    opts.dir,
  );
  const log = captureLog(proc);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => proc.exitCode !== null || (await fetch(`${base}/`)).ok, {
    timeoutMs: 30_000,
    what: 'snmp_exporter listening',
  });
  if (proc.exitCode !== null)
    throw new Error(`snmp_exporter exited (${proc.exitCode}): ${log().trim().slice(-500)}`);

  let polls = 0;
  const problems: string[] = [];
  const scrape = async (t: BenchTarget) => {
    try {
      const res = await fetch(`${base}/snmp?module=if_mib&target=127.0.0.1:${t.port}`);
      const body = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${body.slice(0, 200)}`);
      let n = 0;
      for (let i = body.indexOf('\nifHCInOctets{'); i !== -1; i = body.indexOf('\nifHCInOctets{', i + 1)) n++;
      polls += n;
    } catch (e) {
      if (problems.length < 5) problems.push(`${t.device}: ${(e as Error).message}`);
    }
  };
  const intervalMs = opts.intervalS * 1000;
  const timers: NodeJS.Timeout[] = [];
  let running = true;
  opts.targets.forEach((t, i) => {
    const first = Math.floor((i / opts.targets.length) * intervalMs);
    timers.push(
      setTimeout(() => {
        if (!running) return;
        void scrape(t);
        timers.push(setInterval(() => void scrape(t), intervalMs));
      }, first),
    );
  });
  return {
    name: 'snmp_exporter',
    pid: proc.pid!,
    ifacePolls: () => polls,
    problems: () => (proc.exitCode !== null ? [`exited ${proc.exitCode}`, ...problems] : problems),
    stop: async () => {
      running = false;
      for (const t of timers) {
        clearTimeout(t);
        clearInterval(t);
      }
      await stopProcess(proc);
    },
  };
}
