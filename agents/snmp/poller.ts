import { createSocket } from 'node:dgram';
import type { Logger } from 'pino';
import { z } from 'zod';
import { fnv1a } from '../../common/hash.js';
import type { Service } from '../../common/lifecycle.js';
import { MqttSession, mqttConfigSchema, type OutgoingMessage } from '../../common/mqtt.js';
import { regionPathSchema, regionWithin } from '../../contracts/ids.js';
import type { DeviceEvent, DeviceStatus, IfaceReadings, ProbeResult } from '../../contracts/messages.js';
import { buildTopic, type Channel } from '../../contracts/topics.js';
import {
  NO_PUBLISHER_STATS,
  type PublisherStats,
  ReliablePublisher,
  spoolConfigSchema,
} from '../publisher.js';

import { type ColumnData, SnmpClient, SnmpError, type SnmpTarget, snmpTargetSchema } from './client.js';
import { decodeText, joinColumns, num } from './join.js';
import { COLUMN, OID } from './oids.js';
import { Prober, type ProberStats, type ProbeTarget, probesConfigSchema } from './probe.js';
import { RateTracker } from './rates.js';

/**
 * The SNMP poller: polls each assigned target on its own schedule and publishes one `iface` message per poll,
 * a retained `status` for the router, and events (reboot; unreachable once, recovered once). See README.md.
 *
 * One poll per target at a time: a tick that finds the target's previous poll still running (slow, dead, or
 * waiting for a concurrency slot) is skipped, counted (`skippedTicks`) and logged once per episode, as
 * Telegraf does. Two polls of one target in flight would finish in any order, and a sysUpTime older than
 * the previous one reads as a reboot (rates.ts): a false reboot event and alert. It also bounds the queue
 * for a slot to one waiting poll per target.
 */
export const pollerConfigSchema = z
  .strictObject({
    mqtt: mqttConfigSchema,
    targets: z
      .array(snmpTargetSchema)
      .default([])
      .describe('Routers and switches to poll (credentials are secrets).'),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(1_000)
      .default(64)
      .describe(
        "Targets polled at once, default 64; a slow or dead one holds one slot for at most its timeout × tries. Other polls wait for a slot, at most one per target: a tick that finds its target's previous poll still running or waiting is skipped and counted (`skippedTicks`). Prevents a backlog without bound behind slow or dead targets, and two polls of one target finishing out of order (sysUpTime going back: a false reboot).",
      ),
    sourceAddress: z
      .ipv4()
      .optional()
      .describe(
        'Local IPv4 address the SNMP requests are sent from and their answers received on (the interface facing the routers, e.g. a management VLAN); it must be an address of this host, checked at start. Absent: 127.0.0.1 for targets on loopback, and the kernel’s choice (all interfaces, an ephemeral port) for the others.',
      ),
    spool: spoolConfigSchema.prefault({ dir: 'var/poller-spool' }),
    replayRatePerSec: z
      .number()
      .positive()
      .default(200)
      .describe("Queued messages sent per second after a reconnect (keep below the broker's poller limit)."),
    shard: z
      .strictObject({
        index: z.number().int().min(0).default(0),
        count: z.number().int().min(1).default(1),
        regions: z
          .array(regionPathSchema)
          .min(1)
          .optional()
          .describe(
            'Poll only targets whose `region` lies within one of these region paths (then index/count).',
          ),
      })
      .prefault({})
      .refine((s) => s.index < s.count, { message: 'index must be < count', path: ['index'] })
      .describe(
        'Which targets (and probe targets) this instance polls: by region, and/or the schools whose id hashes to `index` of `count`.',
      ),
    probes: probesConfigSchema,
  })
  .describe('The SNMP poller.');
export type PollerConfig = z.infer<typeof pollerConfigSchema>;

/**
 * Fails start-up when `poller.sourceAddress` is not an address of this host: net-snmp would report the failed
 * bind only as every request timing out.
 */
async function checkBindable(address: string): Promise<void> {
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, address, () => resolve());
    });
  } catch (e) {
    throw new Error(
      `poller.sourceAddress ${address}: cannot bind a UDP socket there (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): not an address of this host?`,
    );
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve())).catch(() => undefined);
  }
}

/** Stable shard of a school id (FNV-1a): a school stays with one poller, and its rate state with it. */
export function shardOf(school: string, count: number): number {
  return fnv1a(school) % count;
}

/** Whether this poller instance polls `target`: within one of `regions` (when given), and hashed to `index`. */
export function inShard(target: { school: string; region?: string }, shard: PollerConfig['shard']): boolean {
  if (
    shard.regions &&
    !shard.regions.some((r) => target.region !== undefined && regionWithin(target.region, r))
  )
    return false;
  return shardOf(target.school, shard.count) === shard.index;
}

export interface PollerStats extends PublisherStats, ProberStats {
  polls: number;
  failures: number;
  ifacePolls: number;
  overSpeed: number;
  /** Ticks skipped because the target's previous poll was still running or waiting for a slot. */
  skippedTicks: number;
  /** Polls holding a concurrency slot now (≤ `concurrency`). */
  pollsInFlight: number;
  /** Polls waiting for a slot now (at most one per target). */
  pollsWaiting: number;
}

interface TargetState {
  target: SnmpTarget;
  client: SnmpClient;
  rates: RateTracker;
  seq: number;
  reachable: boolean | undefined;
  born: boolean;
  timer?: NodeJS.Timeout;
  /** The poll in flight or waiting for a slot: there is never a second one. */
  running?: Promise<IfaceReadings | undefined>;
  /** Ticks skipped while the current (or last) poll ran. */
  skipsThisPoll: number;
  /** Ticks are being skipped (logged once at the start): since when, and how many so far. */
  lagging?: { sinceMs: number; skipped: number };
}

const NO_PROBE_STATS: ProberStats = {
  probeCycles: 0,
  skippedCycles: 0,
  badLines: 0,
  icmpResults: 0,
  tcpResults: 0,
  missingResults: 0,
  fpingFailures: 0,
  outputTruncated: 0,
};

/** The columns read from every device; the ifTable octet/speed columns only when ifXTable is missing. */
const XTABLE = [
  COLUMN.ifName,
  COLUMN.ifAlias,
  COLUMN.ifHCInOctets,
  COLUMN.ifHCOutOctets,
  COLUMN.ifHighSpeed,
  COLUMN.ifCounterDiscontinuityTime,
];
const IFTABLE = [COLUMN.ifOperStatus, COLUMN.ifInErrors, COLUMN.ifOutErrors, COLUMN.ifInDiscards];
/** What every poll walks (bench:snmp walks the same with the C tools). */
export const POLLED_COLUMNS: readonly string[] = [...XTABLE, ...IFTABLE];
const FALLBACK = [COLUMN.ifDescr, COLUMN.ifInOctets, COLUMN.ifOutOctets, COLUMN.ifSpeed];

export class Poller implements Service {
  readonly name = 'poller';
  private session: MqttSession | undefined;
  private readonly states: TargetState[] = [];
  private active = 0;
  /** Polls waiting for a slot; each is resolved with true (the slot is theirs) or false (stopping). */
  private readonly queue: ((granted: boolean) => void)[] = [];
  private stopping = false;
  private publisher: ReliablePublisher | undefined;
  private readonly counts = { polls: 0, failures: 0, ifacePolls: 0, overSpeed: 0, skippedTicks: 0 };
  /** The probes of this instance's share of `probes.targets` (when `probes.enabled`). */
  readonly prober: Prober | undefined;

  constructor(
    readonly config: PollerConfig,
    /**
     * `manual`: no schedule; the caller polls with pollAll() (tests and benchmarks). `intervalMs`: every
     * target's schedule at this period instead of its `intervalS` (tests of the schedule, which would take
     * minutes at the 5 s minimum).
     */
    private readonly deps: {
      log: Logger;
      now?: () => number;
      manual?: boolean;
      intervalMs?: number;
      /** The probe cycle's period instead of `probes.intervalS` (tests of the schedule). */
      probeIntervalMs?: number;
    },
  ) {
    for (const target of config.targets) {
      if (!inShard(target, config.shard)) continue;
      this.states.push({
        target,
        client: new SnmpClient(target, { sourceAddress: config.sourceAddress }),
        rates: new RateTracker(),
        seq: 0,
        reachable: undefined,
        born: false,
        skipsThisPoll: 0,
      });
    }
    const probes = config.probes;
    if (probes.enabled)
      this.prober = new Prober(
        probes,
        probes.targets.filter((t) => inShard(t, config.shard)),
        {
          log: deps.log.child({ part: 'probes' }),
          now: deps.now,
          intervalMs: deps.probeIntervalMs,
          publish: (t, r) => this.send(t, 'probe', r),
        },
      );
  }

  stats(): PollerStats {
    const p = this.publisher?.stats() ?? NO_PUBLISHER_STATS;
    return {
      ...p,
      ...NO_PROBE_STATS,
      ...this.prober?.stats(),
      ...this.counts,
      pollsInFlight: this.active,
      pollsWaiting: this.queue.length,
    };
  }

  /** One probe cycle of every probe target now (manual mode: tests and benchmarks); empty without probes. */
  async probeAll(): Promise<ProbeResult[]> {
    return this.prober ? [...(await this.prober.cycle()).values()] : [];
  }

  /** The targets this instance polls (after sharding). */
  get targets(): readonly SnmpTarget[] {
    return this.states.map((s) => s.target);
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  async start(): Promise<void> {
    if (this.config.sourceAddress) await checkBindable(this.config.sourceAddress);
    const session = new MqttSession(this.config.mqtt, { log: this.deps.log });
    this.session = session;
    const publisher = new ReliablePublisher(session, {
      log: this.deps.log,
      spool: this.config.spool,
      replayRatePerSec: this.config.replayRatePerSec,
    });
    await publisher.open();
    this.publisher = publisher;
    session.start();
    // Spread first polls over the interval so a thousand targets do not fire in the same second.
    if (this.deps.manual) return;
    this.prober?.start();
    this.states.forEach((s, i) => {
      const intervalMs = this.deps.intervalMs ?? s.target.intervalS * 1000;
      const firstMs = Math.floor((i / Math.max(1, this.states.length)) * intervalMs);
      s.timer = setTimeout(() => {
        this.tick(s, intervalMs);
        s.timer = setInterval(() => this.tick(s, intervalMs), intervalMs);
      }, firstMs);
    });
    this.deps.log.info(
      {
        targets: this.states.length,
        probeTargets: this.prober?.targets.length ?? 0,
        shard: this.config.shard,
      },
      'poller started',
    );
  }

  /** Resolves once connected to the broker. */
  ready(timeoutMs = 15_000): Promise<void> {
    if (!this.session) return Promise.reject(new Error('poller not started'));
    return this.session.waitConnected(timeoutMs);
  }

  /** A scheduled tick: poll the target, unless its previous poll is still running (then skip and count). */
  private tick(s: TargetState, intervalMs: number): void {
    if (this.stopping) return;
    if (s.running) {
      this.counts.skippedTicks++;
      s.skipsThisPoll++;
      if (s.lagging) s.lagging.skipped++;
      else {
        s.lagging = { sinceMs: Date.now(), skipped: 1 };
        // Once per episode, not once per tick: a dead target would otherwise log every interval.
        this.deps.log.warn(
          { target: s.client.label, intervalMs, pollsWaiting: this.queue.length },
          'previous poll still running: tick skipped (logged once until the target keeps up)',
        );
      }
      return;
    }
    if (s.lagging && s.skipsThisPoll === 0) {
      // The last poll finished within its interval: the episode is over.
      this.deps.log.info(
        {
          target: s.client.label,
          skipped: s.lagging.skipped,
          forS: Math.round((Date.now() - s.lagging.sinceMs) / 1000),
        },
        'target keeps up again: ticks skipped meanwhile',
      );
      s.lagging = undefined;
    }
    s.skipsThisPoll = 0;
    void this.poll(s);
  }

  /** The target's poll: the one in flight if there is one, so a target is never polled twice at once. */
  private poll(s: TargetState): Promise<IfaceReadings | undefined> {
    if (s.running) return s.running;
    const p = this.pollOnce(s).finally(() => {
      s.running = undefined;
    });
    s.running = p;
    return p;
  }

  /**
   * Runs `fn` within the concurrency limit. A finished poll hands its slot straight to the next in the queue
   * (so no newcomer can slip in between); undefined, without running `fn`, when the poller stops first.
   */
  private async slot<T>(fn: () => Promise<T>): Promise<T | undefined> {
    if (this.active < this.config.concurrency) this.active++;
    else if (!(await new Promise<boolean>((r) => this.queue.push(r)))) return undefined;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next(true);
      else this.active--;
    }
  }

  private send<C extends Channel>(
    t: Pick<SnmpTarget | ProbeTarget, 'school' | 'device'>,
    channel: C,
    payload: unknown,
    retain = false,
  ): void {
    const m: OutgoingMessage = {
      topic: buildTopic({ school: t.school, device: t.device, channel }),
      payload: JSON.stringify(payload),
      qos: 1,
      retain,
    };
    // Through the disk spool when the broker is away; appends keep their call order.
    this.publisher
      ?.send(m)
      .catch((err: unknown) => this.deps.log.error({ err, topic: m.topic }, 'could not queue message'));
  }

  private event(
    t: SnmpTarget,
    type: DeviceEvent['type'],
    severity: DeviceEvent['severity'],
    subject: string,
    message: string,
  ) {
    const e: DeviceEvent = {
      v: 1,
      ts: this.now(),
      type,
      severity,
      kind: t.kind,
      subject,
      message: message.slice(0, 500),
    };
    this.send(t, 'event', e);
  }

  private status(t: SnmpTarget, state: 'online' | 'offline', info?: DeviceStatus['info']) {
    const s: DeviceStatus = {
      v: 1,
      ts: this.now(),
      state,
      reason: 'birth',
      kind: t.kind,
      heartbeatS: t.intervalS,
    };
    if (info) s.info = info;
    this.send(t, 'status', s, true);
  }

  /**
   * Polls every target once, concurrently within the limit; undefined where a target failed. A target whose
   * poll is already running is not polled again: its running poll's result is returned.
   */
  pollAll(): Promise<(IfaceReadings | undefined)[]> {
    return Promise.all(this.states.map((s) => this.poll(s)));
  }

  /** One poll of one target; never throws (errors become events and counters). */
  private async pollOnce(s: TargetState): Promise<IfaceReadings | undefined> {
    return this.slot(async () => {
      if (this.stopping) return undefined;
      const t = s.target;
      const started = performance.now();
      this.counts.polls++;
      try {
        const reading = await this.read(s);
        if (s.reachable === false)
          this.event(t, 'recovered', 'info', 'snmp', `${s.client.label} answers again`);
        s.reachable = true;
        reading.pollMs = Math.round(performance.now() - started);
        this.counts.ifacePolls += reading.ifaces.length;
        this.send(t, 'iface', reading);
        return reading;
      } catch (err) {
        // Cancelled by stop(): not the target's fault, no event.
        if (this.stopping) return undefined;
        this.counts.failures++;
        const message =
          err instanceof SnmpError ? err.message : `SNMP ${s.client.label}: ${(err as Error).message}`;
        if (s.reachable !== false) {
          // Once per outage, not once per poll: the alert is the event, the log line says which target.
          this.deps.log.warn({ target: s.client.label, err: message }, 'target unreachable');
          this.event(t, 'unreachable', 'warning', 'snmp', message);
          if (s.born) this.status(t, 'offline');
          s.born = false;
        }
        s.reachable = false;
        return undefined;
      }
    });
  }

  private async read(s: TargetState): Promise<IfaceReadings> {
    const t = s.target;
    const first = !s.born;
    // sysUpTime travels in the same GetBulk as the first rows, so the agent stamps it with the counters.
    const walked = await s.client.walk(
      POLLED_COLUMNS,
      first ? [OID.sysUpTime, OID.sysName, OID.sysDescr] : [OID.sysUpTime],
    );
    const { scalars, firstAnswerAtMs: atMs } = walked;
    const sysUpTimeTicks = num(scalars[0]);
    if (sysUpTimeTicks === undefined) throw new SnmpError(s.client.label, 'protocol', 'no sysUpTime.0');
    let cols: ColumnData = walked.columns;
    const hc = cols.get(COLUMN.ifHCInOctets)!.size > 0;
    if (!hc) {
      if (this.stopping) throw new SnmpError(s.client.label, 'other', 'poller stopping');
      // A device without ifXTable (or without the HC counters): the 32-bit ifTable counters and ifSpeed.
      const more = await s.client.walkColumns(FALLBACK);
      cols = new Map([...cols, ...more]);
    }
    if (first) {
      s.born = true;
      this.status(t, 'online', {
        sysName: decodeText(scalars[1])?.slice(0, 255),
        sysDescr: decodeText(scalars[2])?.slice(0, 1024),
        address: `${t.address}:${t.port}`,
      });
    }
    const { rows, samples } = joinColumns(cols, hc, t.uplink);

    const r = s.rates.update({ sysUpTimeTicks, atMs, ifaces: samples });
    this.counts.overSpeed += r.overSpeed;
    for (const row of rows) {
      const rate = r.rates.get(row.index);
      row.inBps = rate?.inBps ?? null;
      row.outBps = rate?.outBps ?? null;
    }
    if (r.rebooted) {
      this.event(t, 'reboot', 'warning', 'device', `${s.client.label} restarted (sysUpTime went back)`);
    }
    return { v: 1, ts: this.now(), seq: s.seq++, kind: t.kind, sysUpTimeTicks, ifaces: rows.slice(0, 1024) };
  }

  /**
   * Stops ticking, cancels the polls in flight (closing a client fails its request at once, so a dead target
   * does not hold the shutdown for its timeout × tries) and those waiting for a slot, and resolves once none
   * is left. A cancelled poll publishes nothing.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.states) {
      clearTimeout(s.timer);
      clearInterval(s.timer);
    }
    for (const release of this.queue.splice(0)) release(false);
    for (const s of this.states) s.client.close();
    await Promise.all([...this.states.map((s) => s.running), this.prober?.stop()]);
    await this.publisher?.close(); // stats stay readable after stop
    await this.session?.stop();
    this.session = undefined;
  }
}
