import { createSocket } from 'node:dgram';
import type { Logger } from 'pino';
import { z } from 'zod';
import { exposedMode } from '../../common/credentials-file.js';
import { FileWatch } from '../../common/json-file.js';
import type { Service } from '../../common/lifecycle.js';
import { MqttSession, mqttConfigSchema, type OutgoingMessage } from '../../common/mqtt.js';
import { rememberSecrets, secretValues } from '../../common/redact.js';
import { RegistryStore } from '../../common/registry/store.js';
import { inShard, shardOf, shardSchema } from '../../common/shard.js';
import type { DeviceEvent, DeviceStatus, IfaceReadings, ProbeResult } from '../../contracts/messages.js';
import { buildTopic, type Channel } from '../../contracts/topics.js';
import {
  NO_PUBLISHER_STATS,
  type PublisherStats,
  ReliablePublisher,
  spoolConfigSchema,
} from '../publisher.js';

import { type ColumnData, SnmpClient, SnmpError, type SnmpTarget, snmpTargetSchema } from './client.js';
import {
  CredentialsFileError,
  readCredentialsFile,
  type SnmpCredential,
  snmpCredentialSchema,
} from './credentials.js';
import { decodeText, joinColumns, num } from './join.js';
import { COLUMN, OID } from './oids.js';
import { NO_PROBER_STATS, Prober, type ProberStats, type ProbeTarget, probesConfigSchema } from './probe.js';
import { RateTracker } from './rates.js';
import { type Derivation, deriveTargets, probeTargets } from './targets.js';

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
    shard: shardSchema,
    registryFile: z
      .string()
      .optional()
      .describe(
        "The fleet registry (the API's `registryFile`, e.g. `var/registry.json`): every router/switch that is its school's `uplinkDevice` with `mgmtAddress` and `credentialRef` is a target (agents/snmp/README.md § Targets). Watched: an import takes effect within `registryCheckMs`. A registry that cannot be read or is invalid fails start-up; later, the last good one is kept (logged, counted). A missing file is an empty registry (warned).",
      ),
    credentialsFile: z
      .string()
      .optional()
      .describe(
        "The SNMP credentials the registry's `credentialRef`s name (YAML or JSON, `snmp: {<ref>: {version: '2c', community} | {version: '3', user, …}}`; keep it mode 0600: a file group or others may read is warned of). Watched like `registryFile`; missing or invalid at start fails start-up, later the last good one is kept.",
      ),
    registryCheckMs: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(1_000)
      .describe(
        'How often `registryFile` and `credentialsFile` are looked at for a change (modification time, size).',
      ),
    registryTargets: z
      .strictObject({
        port: z
          .number()
          .int()
          .min(1)
          .max(65_535)
          .default(161)
          .describe('The SNMP port of a device whose registry row gives no `snmpPort`.'),
        intervalS: z.number().int().min(5).max(3_600).default(60).describe('Poll interval.'),
        timeoutMs: z.number().int().min(100).max(60_000).default(2_000).describe('Per-request timeout.'),
        retries: z
          .number()
          .int()
          .min(0)
          .max(5)
          .default(1)
          .describe('Re-sends of a request that got no answer.'),
        maxRepetitions: z.number().int().min(1).max(200).default(25).describe('GetBulk max-repetitions.'),
      })
      .prefault({})
      .describe('What every target derived from `registryFile` gets that the registry does not say.'),
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

export { inShard, shardOf };

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
  /** Targets polled now (configured and derived from the registry, after sharding). */
  targets: number;
  /** Of those, derived from the registry. */
  registryTargets: number;
  /** Registry devices of the shard with an address and a credential name that are not polled now (why: logged). */
  targetsSkipped: number;
  /** Re-reads of `registryFile` that failed (the last good registry was kept). */
  registryErrors: number;
  /** Re-reads of `credentialsFile` that failed (the last good credentials were kept). */
  credentialsErrors: number;
}

interface TargetState {
  /** `${school}/${device}`. */
  key: string;
  target: SnmpTarget;
  /** Derived from the registry (else configured in `poller.targets`). */
  fromRegistry: boolean;
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
  /** No longer a target (the registry dropped it, or it was restarted): its poll publishes nothing. */
  removed?: boolean;
}

const keyOf = (t: { school: string; device: string }) => `${t.school}/${t.device}`;

/** The fields a target's SNMP session is made of: a change restarts the target (new session, new rate state). */
const sessionOf = (t: SnmpTarget) =>
  JSON.stringify([t.address, t.port, t.version, t.community, t.v3, t.timeoutMs, t.retries, t.maxRepetitions]);

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
  /** By `${school}/${device}`, in the order they were added. */
  private readonly states = new Map<string, TargetState>();
  /** The configured targets of this shard (`poller.targets`), by key, with their index in the list. */
  private readonly configured = new Map<string, { target: SnmpTarget; index: number }>();
  private active = 0;
  /** Polls waiting for a slot; each is resolved with true (the slot is theirs) or false (stopping). */
  private readonly queue: ((granted: boolean) => void)[] = [];
  private stopping = false;
  private started = false;
  private publisher: ReliablePublisher | undefined;
  private readonly counts = {
    polls: 0,
    failures: 0,
    ifacePolls: 0,
    overSpeed: 0,
    skippedTicks: 0,
    registryErrors: 0,
    credentialsErrors: 0,
  };
  private registry: RegistryStore | undefined;
  private credentialsWatch: FileWatch | undefined;
  private credentials: ReadonlyMap<string, SnmpCredential> | undefined;
  /** The last failed re-read of each file (an error is logged once until the file is good again). */
  private registryError: Error | undefined;
  private credentialsError: string | undefined;
  private modeWarned = false;
  /** `${key} ${reason}` of the skipped devices already logged (once while the reason lasts). */
  private skipsLogged = new Set<string>();
  private skippedNow = 0;
  private watchTimer: NodeJS.Timeout | undefined;
  /** The probes of this instance's share of `probes.targets` and of the registry (when `probes.enabled`). */
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
    config.targets.forEach((target, index) => {
      if (!inShard(target, config.shard)) return;
      this.configured.set(keyOf(target), { target, index });
      this.add(target, false);
    });
    const probes = config.probes;
    if (probes.enabled)
      this.prober = new Prober(probes, this.configuredProbes(), {
        log: deps.log.child({ part: 'probes' }),
        now: deps.now,
        intervalMs: deps.probeIntervalMs,
        publish: (t, r) => this.send(t, 'probe', r),
      });
  }

  /** This instance's share of `probes.targets`. */
  private configuredProbes(): ProbeTarget[] {
    return this.config.probes.targets.filter((t) => inShard(t, this.config.shard));
  }

  /**
   * The probe targets: the configured ones, and each school's uplink device the registry gives an address
   * (`probeAddress`, else `mgmtAddress`; docs/links.md) — a configured target of the same device wins.
   */
  private applyProbes(): void {
    if (!this.prober || !this.registry) return;
    const configured = this.configuredProbes();
    const have = new Set(configured.map(keyOf));
    const derived = probeTargets(this.registry.index, this.config.shard).filter((t) => !have.has(keyOf(t)));
    this.prober.setTargets([...configured, ...derived]);
  }

  stats(): PollerStats {
    const p = this.publisher?.stats() ?? NO_PUBLISHER_STATS;
    let registryTargets = 0;
    for (const s of this.states.values()) if (s.fromRegistry) registryTargets++;
    return {
      ...p,
      ...NO_PROBER_STATS,
      ...this.prober?.stats(),
      ...this.counts,
      pollsInFlight: this.active,
      pollsWaiting: this.queue.length,
      targets: this.states.size,
      registryTargets,
      targetsSkipped: this.skippedNow,
    };
  }

  /** One probe cycle of every probe target now (manual mode: tests and benchmarks); empty without probes. */
  async probeAll(): Promise<ProbeResult[]> {
    return this.prober ? [...(await this.prober.cycle()).values()] : [];
  }

  /** The targets this instance polls (after sharding). */
  get targets(): readonly SnmpTarget[] {
    return [...this.states.values()].map((s) => s.target);
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  private intervalMsOf(t: SnmpTarget): number {
    return this.deps.intervalMs ?? t.intervalS * 1000;
  }

  private add(target: SnmpTarget, fromRegistry: boolean): TargetState {
    const s: TargetState = {
      key: keyOf(target),
      target,
      fromRegistry,
      client: new SnmpClient(target, { sourceAddress: this.config.sourceAddress }),
      rates: new RateTracker(),
      seq: 0,
      reachable: undefined,
      born: false,
      skipsThisPoll: 0,
    };
    this.states.set(s.key, s);
    return s;
  }

  /** Stops a target for good: its timer, its poll in flight (cancelled: no event) and any waiting for a slot. */
  private remove(s: TargetState): void {
    s.removed = true;
    clearTimeout(s.timer);
    clearInterval(s.timer);
    s.client.close();
    if (this.states.get(s.key) === s) this.states.delete(s.key);
  }

  /** The target's schedule: a first poll after `firstMs`, then every interval. */
  private schedule(s: TargetState, firstMs: number): void {
    if (this.deps.manual) return;
    const intervalMs = this.intervalMsOf(s.target);
    clearTimeout(s.timer);
    clearInterval(s.timer);
    s.timer = setTimeout(() => {
      this.tick(s, intervalMs);
      s.timer = setInterval(() => this.tick(s, intervalMs), intervalMs);
    }, firstMs);
  }

  /** Reads the credentials file (throws CredentialsFileError); warns once when group or others may read it. */
  private loadCredentials(path: string): void {
    this.credentialsWatch?.mark();
    const creds = readCredentialsFile(path);
    // Scrubbed from every log line and error from now on, like the configuration's own secrets.
    for (const c of creds.values()) rememberSecrets(secretValues(snmpCredentialSchema, c));
    this.credentials = creds;
    const mode = exposedMode(path);
    if (mode !== undefined && !this.modeWarned) {
      this.modeWarned = true;
      this.deps.log.warn(
        { credentialsFile: path, mode: `0${mode.toString(8)}` },
        'credentials file is readable by group or others: chmod 600 it (logged once)',
      );
    }
  }

  private derive(): Derivation | undefined {
    if (!this.registry) return undefined;
    return deriveTargets(
      this.registry.index,
      this.credentials,
      this.config.shard,
      this.config.registryTargets,
    );
  }

  /**
   * Makes the registry's targets the ones polled: new ones start, removed ones stop, unchanged ones keep their
   * state (rates, reachability, schedule); a changed session (address, credential, timeouts) restarts just
   * that target. Configured targets are never touched; a registry device that is also one is skipped.
   */
  private apply(d: Derivation): void {
    const want = new Map<string, SnmpTarget>();
    const skipped = [...d.skipped.map((x) => ({ ...x, reason: x.reason as string }))];
    for (const { target, row } of d.targets) {
      const key = keyOf(target);
      const conf = this.configured.get(key);
      if (conf) {
        skipped.push({
          school: target.school,
          device: target.device,
          row,
          reason: 'also-configured',
          message: `also poller.targets[${conf.index}]: the configured target is polled`,
        });
        continue;
      }
      want.set(key, target);
    }
    let added = 0;
    let removed = 0;
    let restarted = 0;
    for (const s of [...this.states.values()]) {
      if (!s.fromRegistry) continue;
      const t = want.get(s.key);
      if (!t) {
        this.remove(s);
        removed++;
      } else if (sessionOf(t) !== sessionOf(s.target)) {
        this.remove(s);
        this.startNew(this.add(t, true));
        restarted++;
      } else {
        const reschedule = t.intervalS !== s.target.intervalS;
        s.target = t; // region, kind, uplink interface: the next poll uses them, the rate state stays
        if (reschedule && this.started) this.schedule(s, Math.floor(Math.random() * this.intervalMsOf(t)));
      }
    }
    for (const [key, t] of want) {
      if (this.states.has(key)) continue;
      this.startNew(this.add(t, true));
      added++;
    }
    // Each skip is logged once while it lasts (a warning but for devices that are simply not uplinks).
    const now = new Set<string>();
    for (const x of skipped) {
      const k = `${x.school}/${x.device} ${x.reason}`;
      now.add(k);
      if (this.skipsLogged.has(k)) continue;
      const fields = { school: x.school, device: x.device, registryRow: x.row, reason: x.reason };
      if (x.reason === 'not-uplink') this.deps.log.info(fields, `registry device not polled: ${x.message}`);
      else this.deps.log.warn(fields, `registry device not polled: ${x.message}`);
    }
    this.skipsLogged = now;
    this.skippedNow = skipped.length;
    if (added || removed || restarted)
      this.deps.log.info(
        { added, removed, restarted, targets: this.states.size, skipped: skipped.length },
        'targets re-derived from the registry',
      );
    this.applyProbes();
  }

  /** A target added while running: its first poll somewhere within its interval (an import of a thousand spreads). */
  private startNew(s: TargetState): void {
    if (this.started) this.schedule(s, Math.floor(Math.random() * this.intervalMsOf(s.target)));
  }

  /** Reads the registry and credentials at start: anything wrong with them fails start-up, naming the file. */
  private loadFiles(): void {
    const c = this.config;
    if (c.credentialsFile) {
      this.credentialsWatch = new FileWatch(c.credentialsFile, 0);
      try {
        this.loadCredentials(c.credentialsFile);
      } catch (e) {
        throw new Error(`poller.credentialsFile: ${(e as Error).message}`);
      }
    }
    if (!c.registryFile) return;
    const store = new RegistryStore(c.registryFile);
    store.checkEveryMs = 0; // the watch timer paces the looks
    try {
      store.load();
    } catch (e) {
      throw new Error(`poller.registryFile: ${(e as Error).message}`);
    }
    this.registry = store;
    if (store.version === 0)
      this.deps.log.warn(
        { registryFile: c.registryFile },
        'no registry file: no targets from the registry until an import writes it',
      );
    const d = this.derive()!;
    for (const { target, row } of d.targets) {
      const conf = this.configured.get(keyOf(target));
      if (conf)
        throw new Error(
          `poller: ${keyOf(target)} is both poller.targets[${conf.index}] and registry device row ${row} (${c.registryFile}): keep one`,
        );
    }
    this.apply(d);
  }

  /** One look at both files; a change re-derives the targets. A bad file keeps the last good one. */
  private watch(): void {
    let changed = false;
    const cred = this.credentialsWatch;
    if (cred?.differs()) {
      try {
        this.loadCredentials(cred.path);
        this.credentialsError = undefined;
        changed = true;
      } catch (e) {
        this.counts.credentialsErrors++;
        const message = e instanceof CredentialsFileError ? e.message : String(e);
        if (message !== this.credentialsError)
          this.deps.log.error(
            { err: message },
            'credentials file could not be re-read: keeping the last good one',
          );
        this.credentialsError = message;
      }
    }
    const store = this.registry;
    if (store) {
      const before = store.version;
      void store.index; // re-reads the file when it changed
      const err = store.lastError;
      if (err && err !== this.registryError) {
        this.counts.registryErrors++;
        if (err.message !== this.registryError?.message)
          this.deps.log.error(
            { err: err.message, registryFile: store.path },
            'registry could not be re-read: keeping the last good one',
          );
      }
      this.registryError = err;
      if (store.version !== before) changed = true;
    }
    if (changed) this.apply(this.derive()!);
  }

  async start(): Promise<void> {
    if (this.config.sourceAddress) await checkBindable(this.config.sourceAddress);
    this.loadFiles();
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
    if (this.registry || this.credentialsWatch) {
      const look = () => {
        if (this.stopping) return;
        try {
          this.watch();
        } catch (err) {
          this.deps.log.error({ err }, 'target re-derivation failed');
        }
        this.watchTimer = setTimeout(look, this.config.registryCheckMs).unref();
      };
      this.watchTimer = setTimeout(look, this.config.registryCheckMs).unref();
    }
    this.started = true;
    // Spread first polls over the interval so a thousand targets do not fire in the same second.
    if (this.deps.manual) return;
    this.prober?.start();
    const all = [...this.states.values()];
    all.forEach((s, i) => {
      this.schedule(s, Math.floor((i / Math.max(1, all.length)) * this.intervalMsOf(s.target)));
    });
    this.deps.log.info(
      {
        targets: this.states.size,
        skipped: this.skippedNow,
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
    return Promise.all([...this.states.values()].map((s) => this.poll(s)));
  }

  /** One poll of one target; never throws (errors become events and counters). */
  private async pollOnce(s: TargetState): Promise<IfaceReadings | undefined> {
    return this.slot(async () => {
      if (this.stopping || s.removed) return undefined;
      const t = s.target;
      const started = performance.now();
      this.counts.polls++;
      try {
        const reading = await this.read(s);
        if (s.removed) return undefined; // dropped from the targets while it ran
        if (s.reachable === false)
          this.event(t, 'recovered', 'info', 'snmp', `${s.client.label} answers again`);
        s.reachable = true;
        reading.pollMs = Math.round(performance.now() - started);
        this.counts.ifacePolls += reading.ifaces.length;
        this.send(t, 'iface', reading);
        return reading;
      } catch (err) {
        // Cancelled by stop() or by the target's removal: not the target's fault, no event.
        if (this.stopping || s.removed) return undefined;
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
      if (this.stopping || s.removed) throw new SnmpError(s.client.label, 'other', 'poller stopping');
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
    clearTimeout(this.watchTimer);
    const all = [...this.states.values()];
    for (const s of all) {
      clearTimeout(s.timer);
      clearInterval(s.timer);
    }
    for (const release of this.queue.splice(0)) release(false);
    for (const s of all) s.client.close();
    await Promise.all([...all.map((s) => s.running), this.prober?.stop()]);
    await this.publisher?.close(); // stats stay readable after stop
    await this.session?.stop();
    this.session = undefined;
  }
}
