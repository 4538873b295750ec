import { spawn } from 'node:child_process';
import { connect, isIP, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import { idSchema, regionPathSchema } from '../../contracts/ids.js';
import type { DeviceKind, ProbeResult } from '../../contracts/messages.js';
import { hostSchema, NETWORK_KINDS } from '../../contracts/registry.js';
import { type LookupFn, NameCache, type Resolution } from './resolve.js';

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

/** A cycle's deadline is this much before the next cycle starts (nothing of a cycle outlives it). */
const DEADLINE_MARGIN_MS = 100;

/**
 * How long fping needs for n addresses: `count` rounds, each the longer of periodMs and n × gapMs (fping sends
 * no two echoes closer than gapMs, which stretches the period), then timeoutMs for the last answers.
 */
export function fpingRunMs(
  c: { count: number; periodMs: number; gapMs: number; timeoutMs: number },
  n: number,
): number {
  return c.count * Math.max(c.periodMs, n * c.gapMs) + c.timeoutMs;
}

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
    resolveEveryS: z
      .number()
      .int()
      .min(10)
      .max(86_400)
      .default(300)
      .describe(
        'A target given by host name is looked up again (node:dns lookup) this long after its last good lookup; after a failed one, at the next cycle.',
      ),
    resolveKeepS: z
      .number()
      .int()
      .min(0)
      .max(604_800)
      .default(3_600)
      .describe(
        'A failed re-lookup keeps using the last good address while it is younger than this (a resolver outage loses no cycles).',
      ),
    resolveTimeoutMs: z
      .number()
      .int()
      .min(50)
      .max(30_000)
      .default(2_000)
      .describe(
        'A cycle waits this long at most for its host-name lookups; a name unanswered by then is a failed resolution this cycle (the lookup goes on for the next).',
      ),
    targets: z
      .array(probeTargetSchema)
      .default([])
      .describe(
        "Addresses to probe besides those derived from `poller.registryFile` (every school's uplinkDevice with an address, by its probeMethod); a configured target of the same device wins.",
      ),
  })
  .refine(
    (p) =>
      p.resolveTimeoutMs +
        fpingRunMs(p, new Set(p.targets.filter((t) => t.method === 'icmp').map((t) => t.address)).size) <
      p.intervalS * 1_000 - DEADLINE_MARGIN_MS,
    {
      message:
        'resolveTimeoutMs + count × max(periodMs, n × gapMs) + timeoutMs (n: the configured ICMP addresses) must be shorter than intervalS − 100 ms (the cycle’s deadline)',
      path: ['count'],
    },
  )
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
  /** ICMP targets a finished fping run gave no line for: nothing published for them that cycle. */
  missingResults: number;
  /**
   * fping runs that failed: could not start, exit status ≥ 3, killed at the cycle's deadline, or left an address
   * without a report line (whatever its exit status).
   */
  fpingFailures: number;
  /** fping's report beyond the output bound: ignored. */
  outputTruncated: number;
  /** Targets × cycles whose host name gave no address (does not exist, resolver failing or too slow). */
  resolveFailures: number;
  /** TCP targets × cycles whose connects had not all ended at the cycle's deadline: nothing published. */
  tcpUnfinished: number;
  /**
   * Cycles whose fping run was expected not to end by the deadline (fpingRunMs of its addresses > the time
   * left): run anyway, killed and counted in `fpingFailures` if it does not end.
   */
  fpingOverDeadline: number;
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
  resolveFailures: 0,
  tcpUnfinished: 0,
  fpingOverDeadline: 0,
});

/** fping's stderr quoted in a log line: at most this many characters. */
const STDERR_QUOTE = 1_000;

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
  /** Connects in flight, and how to end one (resolving it as aborted). */
  private readonly sockets = new Map<Socket, () => void>();
  private readonly missingLogged = new Set<string>();
  /** Per host name, the last resolution state logged (a failure code, or `ok`): logged again on a change. */
  private readonly resolveLogged = new Map<string, string>();
  private lagging = false;
  private fpingFailing = false;
  private tcpLate = false;
  private fpingLong = false;
  private lookupsQueued = false;
  private readonly names: NameCache;

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
      /** Host-name lookup instead of node:dns (tests of a resolver that fails or hangs). */
      lookup?: LookupFn;
    },
  ) {
    this.list = published(targets);
    this.names = new NameCache({
      everyMs: config.resolveEveryS * 1_000,
      keepMs: config.resolveKeepS * 1_000,
      timeoutMs: config.resolveTimeoutMs,
      lookup: deps.lookup,
      now: deps.now,
    });
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

  private get intervalMs(): number {
    return this.deps.intervalMs ?? this.config.intervalS * 1_000;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.intervalMs);
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
    // A cycle is built not to throw; should it, the poller logs it and goes on with the next.
    this.cycle().catch((err) => this.deps.log.error({ err }, 'probe cycle failed'));
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
    // Nothing of a cycle outlives it: the next would overlap it.
    const deadline = performance.now() + this.intervalMs - DEADLINE_MARGIN_MS;
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
    const targets = this.targets;
    const resolved = await this.resolveAll(targets, deadline);
    if (this.stopping) return out;
    const icmp: Resolved[] = [];
    const tcp: Resolved[] = [];
    for (const t of targets) {
      const r = resolved.get(t.address)!;
      if (r.ok) (t.method === 'icmp' ? icmp : tcp).push({ t, ip: r.address });
      else {
        this.counts.resolveFailures++;
        // The resolver says the name has no address: the configured address leads nowhere, which is what a
        // probe from here sees — a lost cycle. A resolver failing or too slow is ours: nothing is published.
        if (r.notFound) emit(t, new Array<null>(this.config.count).fill(null));
      }
    }
    await Promise.all([this.icmpCycle(icmp, emit, deadline), this.tcpCycle(tcp, emit, deadline)]);
    return out;
  }

  /** Every target's address (host names through the cache); a change of a name's state is logged once. */
  private async resolveAll(
    targets: readonly Published[],
    deadline: number,
  ): Promise<Map<string, Resolution>> {
    const waitMs = Math.min(this.config.resolveTimeoutMs, deadline - performance.now());
    const resolved = await this.names.resolve(
      targets.map((t) => t.address),
      waitMs,
    );
    let queued = 0;
    for (const [name, r] of resolved) {
      if (isIP(name)) continue;
      // Not asked yet (two lookups run at once): one line for them all, not one per name.
      if (!r.ok && r.code === 'EQUEUED') {
        queued++;
        continue;
      }
      const state = r.ok ? (r.stale ? 'stale' : 'ok') : r.code;
      const before = this.resolveLogged.get(name) ?? 'ok';
      if (state === before) continue;
      this.resolveLogged.set(name, state);
      const who = targets.filter((t) => t.address === name).map((t) => `${t.school}/${t.device}`);
      if (r.ok && !r.stale)
        this.deps.log.info({ name, address: r.address, targets: who }, 'host name resolves again');
      else if (r.ok)
        this.deps.log.warn(
          { name, address: r.address, targets: who },
          'host name lookup failing: probing its last good address (until resolveKeepS); logged once until it changes',
        );
      else
        this.deps.log.warn(
          { name, code: r.code, targets: who },
          r.notFound
            ? 'host name does not resolve: its targets’ cycles are lost cycles; logged once until it changes'
            : 'host name lookup failed or too slow: nothing published for its targets; logged once until it changes',
        );
    }
    for (const name of this.resolveLogged.keys()) if (!resolved.has(name)) this.resolveLogged.delete(name);
    if (queued > 0 && !this.lookupsQueued)
      this.deps.log.warn(
        { queued },
        'host-name lookups not yet asked by the deadline (two run at once): nothing published for their targets this cycle; logged once until none is',
      );
    this.lookupsQueued = queued > 0;
    return resolved;
  }

  /** One fping for all ICMP targets (each address once; a result fans out to every target with it). */
  private async icmpCycle(
    targets: readonly Resolved[],
    emit: (t: Published, rtts: (number | null)[]) => void,
    deadline: number,
  ): Promise<void> {
    if (targets.length === 0) return;
    const c = this.config;
    const addresses = [...new Set(targets.map((t) => t.ip))];
    // The targets' number is known only now (the registry's, names resolved): config checks the configured ones.
    const needMs = fpingRunMs(c, addresses.length);
    const leftMs = Math.round(deadline - performance.now());
    if (needMs > leftMs) {
      this.counts.fpingOverDeadline++;
      if (!this.fpingLong)
        this.deps.log.warn(
          {
            addresses: addresses.length,
            needMs,
            leftMs,
            count: c.count,
            periodMs: c.periodMs,
            gapMs: c.gapMs,
          },
          "fping cannot end by the cycle's deadline: count × max(periodMs, addresses × gapMs) + timeoutMs exceeds the time left (lower gapMs or count, or raise intervalS); a run killed at the deadline publishes nothing; logged once until a run fits",
        );
      this.fpingLong = true;
    } else this.fpingLong = false;
    const run = await this.runFping(addresses, deadline);
    if (run === undefined) return;
    const { results, badLines } = parseFping(run.text, c.count);
    this.counts.badLines += badLines;
    let missing = 0;
    for (const { t, ip } of targets) {
      const rtts = results.get(ip);
      if (rtts) emit(t, rtts);
      else {
        missing++;
        this.counts.missingResults++;
        if (!this.missingLogged.has(ip)) {
          this.missingLogged.add(ip);
          this.deps.log.warn(
            { address: ip, school: t.school, device: t.device },
            'fping reported nothing for this address: no probe result; logged once',
          );
        }
      }
    }
    // fping reports every address it was given, answered or not (exit 1: some unanswered; 2: a name not found,
    // which an address never is). A run that left one out failed, whatever its status: its silence is no
    // evidence the school is down, so nothing is published for it (docs/links.md).
    if (missing > 0)
      this.fpingFailed(
        `fping exited ${run.code} without a report line for ${missing} of ${targets.length} targets: ${run.text.slice(0, STDERR_QUOTE)}`,
      );
    else this.fpingFailing = false;
  }

  /** fping's report (stderr, bounded) and exit status; undefined when it failed. Targets on its stdin. */
  private runFping(
    addresses: readonly string[],
    deadline: number,
  ): Promise<{ text: string; code: number } | undefined> {
    const c = this.config;
    // No target on the command line: fping 5.x reads them from stdin, one a line (argv has a size limit).
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
    ];
    // A report line is the address, ` : ` and count values of at most 12 characters.
    const maxBytes = addresses.length * (260 + c.count * 12) + 64 * 1024;
    const deadlineMs = Math.max(0, Math.round(deadline - performance.now()));
    return new Promise((resolve) => {
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(c.fpingPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
      } catch (err) {
        this.fpingFailed(`cannot start ${c.fpingPath}: ${(err as Error).message}`);
        resolve(undefined);
        return;
      }
      this.children.add(child);
      // A child that exits without reading them all: EPIPE, which its exit status and report tell about.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(`${addresses.join('\n')}\n`);
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
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, deadlineMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        this.children.delete(child);
        this.fpingFailed(`cannot run ${c.fpingPath}: ${err.message}`);
        resolve(undefined);
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        this.children.delete(child);
        const text = Buffer.concat(chunks).toString('utf8');
        if (this.stopping) return resolve(undefined);
        // fping: 0 all answered, 1 some did not, 2 an address not found; 3 bad arguments, 4 system call failed.
        if (killed || code === null || code >= 3) {
          this.fpingFailed(
            killed
              ? `fping still running at the cycle's deadline (${deadlineMs} ms): killed`
              : `fping exited ${code}: ${text.slice(0, STDERR_QUOTE)}`,
          );
          return resolve(undefined);
        }
        resolve({ text, code });
      });
    });
  }

  /** Counted each time; logged once until a run succeeds. */
  private fpingFailed(message: string): void {
    this.counts.fpingFailures++;
    if (this.fpingFailing) return;
    this.fpingFailing = true;
    this.deps.log.error(
      { err: message },
      'fping run failed: no ICMP result for the targets it left out this cycle (logged once until a run succeeds)',
    );
  }

  /**
   * TCP targets: `count` connects each, one every periodMs (the targets' first ones spread over a period), at
   * most tcpConcurrency in flight. RTT: connect() to the handshake completing. A refused or timed-out connect is
   * a lost probe (a refusal means the port is wrong or closed: not what the target is probed for). At the
   * cycle's deadline the connects in flight are ended and a target whose connects had not all ended publishes
   * nothing (`tcpUnfinished`): waiting for slots is ours, not the target's.
   */
  private async tcpCycle(
    targets: readonly Resolved[],
    emit: (t: Published, rtts: (number | null)[]) => void,
    deadline: number,
  ): Promise<void> {
    if (targets.length === 0) return;
    const c = this.config;
    const gate = new Gate(c.tcpConcurrency);
    // The timer may fire a little before performance.now() reaches the deadline: its flag is what counts then.
    let over = false;
    const late = () => over || this.stopping || performance.now() >= deadline;
    const timer = setTimeout(
      () => {
        over = true;
        for (const abort of [...this.sockets.values()]) abort();
      },
      Math.max(0, deadline - performance.now()),
    );
    let unfinished = 0;
    await Promise.all(
      targets.map(async ({ t, ip }, i) => {
        const offsetMs = Math.floor((i / targets.length) * c.periodMs);
        const rtts: (number | null)[] = [];
        const started = performance.now();
        for (let k = 0; k < c.count; k++) {
          const at = started + offsetMs + k * c.periodMs;
          if (at >= deadline) break;
          const waitMs = at - performance.now();
          if (waitMs > 0) await this.sleep(waitMs);
          if (late()) break;
          const rtt = await gate.run(() =>
            late() ? Promise.resolve(undefined) : this.connectOnce(ip, t.port!, c.timeoutMs),
          );
          if (rtt === undefined) break;
          rtts.push(rtt);
        }
        if (rtts.length === c.count) emit(t, rtts);
        else if (!this.stopping) unfinished++;
      }),
    );
    clearTimeout(timer);
    this.counts.tcpUnfinished += unfinished;
    if (unfinished > 0 && !this.tcpLate)
      this.deps.log.warn(
        { unfinished, targets: targets.length, tcpConcurrency: c.tcpConcurrency },
        "TCP probes not all done by the cycle's deadline: nothing published for those targets (raise tcpConcurrency?); logged once until a cycle finishes",
      );
    this.tcpLate = unfinished > 0;
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

  /** The handshake's time in ms, null when refused or timed out, undefined when ended by the deadline or stop(). */
  private connectOnce(host: string, port: number, timeoutMs: number): Promise<number | null | undefined> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      const socket = connect({ host, port });
      const done = (rtt: number | null | undefined) => {
        if (!this.sockets.delete(socket)) return;
        socket.destroy();
        resolve(rtt);
      };
      this.sockets.set(socket, () => done(undefined));
      socket.setTimeout(timeoutMs, () => done(null));
      socket.once('connect', () => done(performance.now() - t0));
      socket.once('error', () => done(null));
      socket.once('close', () => done(null));
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    this.names.close();
    for (const child of this.children) child.kill('SIGKILL');
    for (const abort of [...this.sockets.values()]) abort();
    for (const s of this.sleeps) {
      clearTimeout(s.timer);
      s.r();
    }
    this.sleeps.clear();
    await this.running;
  }
}

/** A target and the address it is probed at this cycle. */
type Resolved = { t: Published; ip: string };

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
