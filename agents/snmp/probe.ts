import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import { idSchema, regionPathSchema } from '../../contracts/ids.js';
import type { DeviceKind, ProbeResult } from '../../contracts/messages.js';
import { hostSchema, NETWORK_KINDS } from '../../contracts/registry.js';

/**
 * Reachability and link-quality probes of the poller's targets (docs/links.md, agents/snmp/README.md):
 * every `intervalS`, ONE `fping` process (Debian's fping 5.x, count mode) for all ICMP targets, and a TCP
 * connect per attempt for the targets where ICMP is filtered. Per target per cycle: sent, received, RTT
 * min/avg/max and jitter. A cycle never overlaps the next: a tick that finds it still running is skipped and
 * counted, as the poller does for SNMP.
 */

/** One address to probe, and the device its results are published for. */
export type ProbeTarget = {
  school: string;
  device: string;
  region?: string;
  address: string;
  method?: 'icmp' | 'tcp';
  port?: number;
  /** The device's kind as published (the collector uses the registry's for a registered device). Default router. */
  kind?: DeviceKind;
};

export const probeTargetSchema = z
  .strictObject({
    school: idSchema,
    device: idSchema,
    region: regionPathSchema.optional(),
    address: hostSchema.describe('IPv4/IPv6 address or host name probed (never starting with `-`).'),
    method: z
      .enum(['icmp', 'tcp'])
      .default('icmp')
      .describe('icmp (fping) or tcp (connect time to `port`, where ICMP is filtered).'),
    port: z.number().int().min(1).max(65_535).optional().describe('TCP port (method tcp only).'),
    kind: z.enum(NETWORK_KINDS).default('router'),
  })
  .refine((t) => (t.port !== undefined) === (t.method === 'tcp'), {
    message: 'port is required with method tcp, and only then',
    path: ['port'],
  }) satisfies z.ZodType<ProbeTarget>;

export const probesConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Run the probes beside SNMP polling.'),
    intervalS: z
      .number()
      .int()
      .min(5)
      .max(3_600)
      .default(60)
      .describe('A probe cycle of every target starts every intervalS; a cycle still running is skipped.'),
    count: z
      .number()
      .int()
      .min(1)
      .max(1_000)
      .default(10)
      .describe('Probes per target per cycle (fping -C; TCP connect attempts).'),
    periodMs: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(1_000)
      .describe('Time between probes of one target (fping -p).'),
    timeoutMs: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(1_000)
      .describe('A probe not answered within this is lost (fping -t; TCP connect timeout).'),
    gapMs: z
      .number()
      .min(0.1)
      .max(1_000)
      .default(1)
      .describe(
        "Least time between any two ICMP echoes fping sends (fping -i): bounds the probe traffic's rate; with many targets it stretches the period (a round of n targets takes n × gapMs).",
      ),
    tcpConcurrency: z
      .number()
      .int()
      .min(1)
      .max(1_000)
      .default(64)
      .describe('TCP connects in flight at once; others wait (the RTT is timed from the connect call).'),
    fpingPath: z.string().min(1).default('fping').describe('The fping binary (Debian: /usr/bin/fping).'),
    targets: z
      .array(probeTargetSchema)
      .default([])
      .describe(
        "Addresses to probe besides those derived from `poller.registryFile` (every school's uplinkDevice with an address, by its probeMethod); a configured target of the same device wins.",
      ),
  })
  .refine((p) => p.count * p.periodMs + p.timeoutMs < p.intervalS * 1_000, {
    message: 'count × periodMs + timeoutMs must be shorter than intervalS',
    path: ['count'],
  })
  .prefault({})
  .describe('Reachability and link-quality probes (agents/snmp/README.md, “Probes”).');
export type ProbesConfig = z.infer<typeof probesConfigSchema>;

/** RTT summary of one target's answers (ms, null for a lost probe), in the order sent. */
export function summarise(
  rtts: readonly (number | null)[],
): Pick<ProbeResult, 'sent' | 'received' | 'rttMs' | 'jitterMs'> {
  const got = rtts.filter((r): r is number => r !== null);
  if (got.length === 0) return { sent: rtts.length, received: 0, rttMs: null, jitterMs: null };
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  let sum = 0;
  for (const r of got) {
    if (r < min) min = r;
    if (r > max) max = r;
    sum += r;
  }
  // RFC 3550 §6.4.1: D(i-1,i) is the difference of consecutive transit times; for a round trip the RTT
  // difference of consecutive answers. Its mean absolute value, without RFC 3550's 1/16 smoothing (a cycle is
  // a short sample, and a smoothed value would depend on the previous cycle).
  let jitter: number | null = null;
  if (got.length >= 2) {
    let d = 0;
    for (let i = 1; i < got.length; i++) d += Math.abs(got[i]! - got[i - 1]!);
    jitter = round3(d / (got.length - 1));
  }
  // Rounding may not reorder them: avg is clamped into [min, max].
  const avg = Math.min(round3(max), Math.max(round3(min), round3(sum / got.length)));
  return {
    sent: rtts.length,
    received: got.length,
    rttMs: { min: round3(min), avg, max: round3(max) },
    jitterMs: jitter,
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** `addr : 0.12 - 3.40` (fping -C -q, on stderr): the address as given and one value or `-` per probe. */
const FPING_LINE = /^([0-9A-Za-z.:%_-]{1,253}) +: ((?:(?:\d{1,5}(?:\.\d{1,6})?|-)(?: |$))+)$/;

export interface FpingParse {
  results: Map<string, (number | null)[]>;
  badLines: number;
}

/**
 * Parses fping's `-C count -q` report strictly: a line that is not `address : v v …` with exactly `count`
 * values, each a number of ms ≤ 60000 or `-`, is counted in `badLines` (fping's own error lines, such as
 * `x: error while sending ping`, count there too) and never throws.
 */
export function parseFping(text: string, count: number): FpingParse {
  const results = new Map<string, (number | null)[]>();
  let badLines = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    const m = FPING_LINE.exec(line);
    if (!m) {
      badLines++;
      continue;
    }
    const values = m[2]!.trim().split(' ');
    if (values.length !== count) {
      badLines++;
      continue;
    }
    const rtts = values.map((v) => (v === '-' ? null : Number(v)));
    if (rtts.some((r) => r !== null && !(r >= 0 && r <= 60_000))) {
      badLines++;
      continue;
    }
    results.set(m[1]!, rtts);
  }
  return { results, badLines };
}

export interface ProberStats {
  /** Cycles run (started). */
  probeCycles: number;
  /** Ticks skipped because the previous cycle was still running. */
  skippedCycles: number;
  /** Lines of fping's report that did not parse. */
  badLines: number;
  /** Results per method (targets × cycles). */
  icmpResults: number;
  tcpResults: number;
  /** ICMP targets fping gave no line for (an unresolvable name, fping failing): nothing published. */
  missingResults: number;
  /** fping runs that failed (could not start, exit status ≥ 3, killed at the cycle's deadline). */
  fpingFailures: number;
  /** fping's report beyond the output bound: ignored. */
  outputTruncated: number;
}

type Published = ProbeTarget & { method: 'icmp' | 'tcp' };

/** Targets with their method settled (icmp unless said otherwise). */
const published = (targets: readonly ProbeTarget[]): Published[] =>
  targets.map((t) => ({ ...t, method: t.method ?? 'icmp' }));

/** A prober's counters before its first cycle (and a poller's without probes). */
export const NO_PROBER_STATS: Readonly<ProberStats> = Object.freeze({
  probeCycles: 0,
  skippedCycles: 0,
  badLines: 0,
  icmpResults: 0,
  tcpResults: 0,
  missingResults: 0,
  fpingFailures: 0,
  outputTruncated: 0,
});

/**
 * Runs probe cycles. `publish` gets each target's result (the poller sends it through its ReliablePublisher).
 * Constructor only assigns; start() schedules; stop() cancels the cycle in flight and resolves once it ended.
 */
export class Prober {
  private readonly counts: ProberStats = { ...NO_PROBER_STATS };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopping = false;
  private readonly children = new Set<ReturnType<typeof spawn>>();
  private readonly sockets = new Set<Socket>();
  private readonly missingLogged = new Set<string>();
  private lagging = false;

  private list: readonly Published[];

  constructor(
    readonly config: ProbesConfig,
    targets: readonly ProbeTarget[],
    private readonly deps: {
      log: Logger;
      publish: (target: ProbeTarget, result: ProbeResult) => void;
      now?: () => number;
      /** Cycle period instead of intervalS (tests of the schedule). */
      intervalMs?: number;
    },
  ) {
    this.list = published(targets);
  }

  /** What is probed: from the next cycle on (a cycle running keeps the list it started with). */
  get targets(): readonly Published[] {
    return this.list;
  }

  /** Replaces the targets (the poller's registry re-derivation); from the next cycle on. */
  setTargets(targets: readonly ProbeTarget[]): void {
    this.list = published(targets);
  }

  stats(): ProberStats {
    return { ...this.counts };
  }

  start(): void {
    const intervalMs = this.deps.intervalMs ?? this.config.intervalS * 1_000;
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.tick();
  }

  private tick(): void {
    if (this.stopping) return;
    if (this.running) {
      this.counts.skippedCycles++;
      if (!this.lagging) {
        this.lagging = true;
        this.deps.log.warn(
          { targets: this.targets.length },
          'previous probe cycle still running: cycle skipped (logged once until cycles keep up)',
        );
      }
      return;
    }
    this.lagging = false;
    void this.cycle();
  }

  /** One cycle of every target; never throws. Resolves with the results published. */
  cycle(): Promise<Map<Published, ProbeResult>> {
    if (this.running) return this.running as Promise<Map<Published, ProbeResult>>;
    const p = this.cycleOnce().finally(() => {
      this.running = undefined;
    });
    this.running = p;
    return p;
  }

  private async cycleOnce(): Promise<Map<Published, ProbeResult>> {
    this.counts.probeCycles++;
    const ts = this.deps.now?.() ?? Date.now();
    const out = new Map<Published, ProbeResult>();
    const emit = (t: Published, rtts: (number | null)[]) => {
      if (this.stopping) return;
      const r: ProbeResult = {
        v: 1,
        ts,
        kind: t.kind ?? 'router',
        method: t.method,
        ...(t.method === 'tcp' ? { port: t.port } : {}),
        ...summarise(rtts),
        periodMs: this.config.periodMs,
      };
      out.set(t, r);
      if (t.method === 'icmp') this.counts.icmpResults++;
      else this.counts.tcpResults++;
      this.deps.publish(t, r);
    };
    const icmp = this.targets.filter((t) => t.method === 'icmp');
    const tcp = this.targets.filter((t) => t.method === 'tcp');
    await Promise.all([this.icmpCycle(icmp, emit), this.tcpCycle(tcp, emit)]);
    return out;
  }

  /** One fping for all ICMP targets (each address once; a result fans out to every target with it). */
  private async icmpCycle(
    targets: readonly Published[],
    emit: (t: Published, rtts: (number | null)[]) => void,
  ): Promise<void> {
    if (targets.length === 0) return;
    const c = this.config;
    const addresses = [...new Set(targets.map((t) => t.address))];
    const text = await this.runFping(addresses);
    if (text === undefined) return;
    const { results, badLines } = parseFping(text, c.count);
    this.counts.badLines += badLines;
    for (const t of targets) {
      const rtts = results.get(t.address);
      if (rtts) emit(t, rtts);
      else {
        this.counts.missingResults++;
        if (!this.missingLogged.has(t.address)) {
          this.missingLogged.add(t.address);
          this.deps.log.warn(
            { address: t.address, school: t.school, device: t.device },
            'fping reported nothing for this address (an unresolvable name?): no probe result; logged once',
          );
        }
      }
    }
  }

  /** fping's report (stderr), bounded; undefined when it failed. */
  private runFping(addresses: readonly string[]): Promise<string | undefined> {
    const c = this.config;
    const args = [
      '-C',
      String(c.count),
      '-q',
      '-p',
      String(c.periodMs),
      '-t',
      String(c.timeoutMs),
      '-i',
      String(c.gapMs),
      '-r',
      '0',
      '--',
      ...addresses,
    ];
    // A report line is the address, ` : ` and count values of at most 12 characters.
    const maxBytes = addresses.length * (260 + c.count * 12) + 64 * 1024;
    // A cycle's fping may not outlive the cycle: the next would overlap it.
    const deadlineMs = (this.deps.intervalMs ?? c.intervalS * 1_000) - 100;
    return new Promise((resolve) => {
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(c.fpingPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (err) {
        this.fpingFailed(`cannot start ${c.fpingPath}: ${(err as Error).message}`);
        resolve(undefined);
        return;
      }
      this.children.add(child);
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      child.stderr!.on('data', (b: Buffer) => {
        if (size + b.length > maxBytes) {
          if (!truncated) {
            truncated = true;
            this.counts.outputTruncated++;
          }
          return;
        }
        chunks.push(b);
        size += b.length;
      });
      let killed = false;
      const deadline = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, deadlineMs);
      child.once('error', (err) => {
        clearTimeout(deadline);
        this.children.delete(child);
        this.fpingFailed(`cannot run ${c.fpingPath}: ${err.message}`);
        resolve(undefined);
      });
      child.once('close', (code) => {
        clearTimeout(deadline);
        this.children.delete(child);
        const text = Buffer.concat(chunks).toString('utf8');
        if (this.stopping) return resolve(undefined);
        // fping: 0 all answered, 1 some did not, 2 an address not found; 3 bad arguments, 4 system call failed.
        if (killed || code === null || code >= 3) {
          this.fpingFailed(
            killed
              ? `fping still running at the cycle's deadline (${deadlineMs} ms): killed`
              : `fping exited ${code}: ${text.slice(0, 300)}`,
          );
          return resolve(undefined);
        }
        resolve(text);
      });
    });
  }

  private fpingFailed(message: string): void {
    this.counts.fpingFailures++;
    this.deps.log.error({ err: message }, 'ICMP probe cycle failed: no ICMP results this cycle');
  }

  /**
   * TCP targets: `count` connects each, one every periodMs (the targets' first ones spread over a period), at
   * most tcpConcurrency in flight. RTT: connect() to the handshake completing. A refused or timed-out connect is
   * a lost probe (a refusal means the port is wrong or closed: not what the target is probed for).
   */
  private async tcpCycle(
    targets: readonly Published[],
    emit: (t: Published, rtts: (number | null)[]) => void,
  ): Promise<void> {
    if (targets.length === 0) return;
    const c = this.config;
    const gate = new Gate(c.tcpConcurrency);
    await Promise.all(
      targets.map(async (t, i) => {
        const offsetMs = Math.floor((i / targets.length) * c.periodMs);
        const rtts: (number | null)[] = [];
        const started = performance.now();
        for (let k = 0; k < c.count; k++) {
          const waitMs = started + offsetMs + k * c.periodMs - performance.now();
          if (waitMs > 0) await this.sleep(waitMs);
          if (this.stopping) return;
          rtts.push(await gate.run(() => this.connectOnce(t.address, t.port!, c.timeoutMs)));
        }
        emit(t, rtts);
      }),
    );
  }

  /** A wait that stop() ends at once. */
  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const s = {
        timer: setTimeout(() => {
          this.sleeps.delete(s);
          r();
        }, ms),
        r,
      };
      this.sleeps.add(s);
    });
  }
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; r: () => void }>();

  private connectOnce(host: string, port: number, timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      const socket = connect({ host, port });
      this.sockets.add(socket);
      const done = (rtt: number | null) => {
        socket.destroy();
        this.sockets.delete(socket);
        resolve(rtt);
      };
      socket.setTimeout(timeoutMs, () => done(null));
      socket.once('connect', () => done(performance.now() - t0));
      socket.once('error', () => done(null));
      socket.once('close', () => done(null));
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    for (const child of this.children) child.kill('SIGKILL');
    for (const s of this.sockets) s.destroy();
    for (const s of this.sleeps) {
      clearTimeout(s.timer);
      s.r();
    }
    this.sleeps.clear();
    await this.running;
  }
}

/** At most `limit` async jobs at once; the rest wait in order. */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
