import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { IPublishPacket } from 'mqtt';
import type { Logger } from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';
import { z } from 'zod';
import { localDate } from '../common/calendar.js';
import {
  DEFAULT_ACTIVE_WITHIN_S,
  DEFAULT_TEACHING_APPS,
  DEFAULT_TEACHING_IDLE_WITHIN_S,
  DEFAULT_TEACHING_SITE_NAMES,
  UsageJudge,
} from '../common/figures/usage.js';
import type { Service } from '../common/lifecycle.js';
import { LogThrottle } from '../common/log.js';
import { gauge, labelledGauge } from '../common/metrics.js';
import { MqttSession, mqttConfigSchema } from '../common/mqtt.js';
import { ManualAcks } from '../common/mqtt-acks.js';
import type { PublishSink } from '../common/mqtt-tap.js';
import { entityKey } from '../common/registry/key.js';
import type { Storage } from '../common/storage/storage.js';
import { idSchema } from '../contracts/ids.js';
import { decodePayload, MAX_PAYLOAD_BYTES, type TopicPayloads } from '../contracts/messages.js';
import { isNetworkKind } from '../contracts/registry.js';
import { type Channel, filters, parseTopic } from '../contracts/topics.js';
import { type Announced, Attributor, type MismatchField, type UnassignedCause } from './attribution.js';
import {
  DeviceBounds,
  type LimitDropReason,
  type LimitRejectReason,
  limitsConfigSchema,
  type NamedTag,
  timeVerdict,
} from './limits.js';
import {
  type DeviceInfo,
  eventPoint,
  ifacePoints,
  mismatchPoint,
  presencePoints,
  probePoint,
  telemetryPoints,
} from './points.js';
import { PresenceTracker, type Transition } from './presence.js';

/**
 * MQTT → validated readings → InfluxDB, and presence.
 *
 *   broker ──(QoS 1, $share/{group}/cfm/v1/+/+/+ or plain)──► parseTopic ─► decodePayload (zod)
 *          ─► attribution (registry: region, classroom, kind; or unassigned) ─► bounds (time, names)
 *          ─► points (contracts/influx) ─► storage.write ─► WriteApi ─► InfluxDB
 *                                      └► presence tracker ─► presence + status_change event points (flap guard)
 *
 * A bad message is counted by reason and dropped; nothing a publisher sends can crash the collector. Where a
 * reading belongs is decided by the registry, never by the payload (attribution.ts), and what one device can
 * cost is bounded (limits.ts).
 */
export const collectorConfigSchema = z
  .strictObject({
    mqtt: mqttConfigSchema,
    subscription: z
      .enum(['auto', 'shared', 'plain'])
      .default('auto')
      .describe('`auto`: a shared subscription when the broker speaks MQTT 5, else a plain one.'),
    group: idSchema
      .default('collectors')
      .describe('Shared-subscription group: collectors in one group split the messages.'),
    schools: z
      .array(idSchema)
      .default([])
      .describe(
        'Shard by school: subscribe only to these schools (empty = all). Combine with `group` to scale out.',
      ),
    sessionExpiryS: z
      .number()
      .int()
      .min(0)
      .default(86_400)
      .describe(
        "MQTT 5: how long the broker keeps this collector's session and queued messages while it is away. A retired collector keeps receiving its share of a shared subscription until its session expires.",
      ),
    defaultHeartbeatS: z
      .number()
      .int()
      .min(1)
      .default(60)
      .describe('Heartbeat assumed for devices that do not announce `heartbeatS` (e.g. polled routers).'),
    offlineFactor: z
      .number()
      .min(1)
      .default(1.5)
      .describe('A device silent for this many heartbeats is offline (MQTT uses 1.5 for keepalive).'),
    sweepIntervalMs: z
      .number()
      .int()
      .min(10)
      .default(1_000)
      .describe('How often silent devices are checked.'),
    heartbeatTimeouts: z
      .enum(['auto', 'on', 'off'])
      .default('auto')
      .describe(
        "Declare silent devices offline. `auto`: off under a shared subscription, where each collector sees only part of every device's readings (the broker's last will still reports dead devices).",
      ),
    backpressure: z
      .strictObject({
        highWaterLines: z
          .number()
          .int()
          .min(1)
          .default(200_000)
          .describe('Pause consuming above this write backlog.'),
        lowWaterLines: z.number().int().min(0).default(50_000).describe('Resume below this backlog.'),
      })
      .prefault({})
      .describe(
        'While InfluxDB is slow or down, stop taking messages from the broker (its persistent session queues them) instead of holding them in memory.',
      ),
    acks: z
      .strictObject({
        maxUnackedMessages: z
          .number()
          .int()
          .min(1)
          .max(65_535)
          .default(2_000)
          .describe(
            "Messages received but not yet acknowledged (a PUBACK is sent only once InfluxDB has the points of a message). Advertised to MQTT 5 brokers as Receive Maximum, so the broker sends no more; on MQTT 3.1.1 the collector stops reading beyond it. When a quarter of it waits, the waiting points are written at once (so up to four writes are in flight while the next fills). Prevents unbounded memory and an unbounded redelivery after a crash; too low caps throughput at about this many messages per InfluxDB round trip. On MQTT 3.1.1 the broker's own in-flight limit (Mosquitto `max_inflight_messages`) should be at least this.",
          ),
        idleFlushMs: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(20)
          .describe(
            "Write what waits for acknowledgement when no message came for this long. Prevents throughput collapsing to one broker window per `influx.flushIntervalMs` when the broker's in-flight limit is below maxUnackedMessages (Mosquitto `max_inflight_messages` on MQTT 3.1.1, EMQX `max_inflight`): the broker stops sending until it gets PUBACKs.",
          ),
      })
      .prefault({})
      .describe(
        'Acknowledge after the write: a message is acknowledged (PUBACK) only once its points are in InfluxDB, so a crash loses nothing the broker was told was received.',
      ),
    registryFile: z
      .string()
      .default('var/registry.json')
      .describe(
        "The fleet registry, as the API's imports write it (the same file as `api.registryFile`): region path, classroom and kind of every point come from it. A collector on another machine reads it from shared storage or from a copy the import distributes. Missing: every device is stored as unassigned (warned at start); unreadable at start: start-up fails; unreadable later: the last good registry is kept (log, `/healthz`).",
      ),
    registryCheckMs: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(1_000)
      .describe(
        'How often the registry file is looked at (modification time and size; re-read when it changed): an import takes effect within this.',
      ),
    lateAfterS: z
      .number()
      .int()
      .min(10)
      .max(86_400)
      .default(600)
      .describe(
        "A telemetry, iface or probe reading dated more than this before it arrives (a spool replay after an outage) is stored with a `late_data` marker of its local date, so the scheduled rollup reads that day again (docs/scale.md). The rollup's `settleMs` must be at least this plus the collector's `influx.maxRetryTimeMs`.",
      ),
    limits: limitsConfigSchema,
    usage: z
      .strictObject({
        activeWithinS: z
          .number()
          .int()
          .min(10)
          .max(3_600)
          .default(DEFAULT_ACTIVE_WITHIN_S)
          .describe(
            "A teaching computer with keyboard, mouse, pen or touch input within this many seconds is active: on and active is in use. Should be at least the agents' reading interval.",
          ),
        teachingIdleWithinS: z
          .number()
          .int()
          .min(10)
          .max(14_400)
          .default(DEFAULT_TEACHING_IDLE_WITHIN_S)
          .describe(
            'A teaching application or site in the foreground counts as use only with input within this many seconds (default 20 minutes): a lesson shown or a video played needs no input for a while, but a panel that boots into its whiteboard software and is left alone is not in use. Longer carries a lesson into the next class period (docs/usage.md). At least `activeWithinS`.',
          ),
        teachingApps: z
          .array(z.string().trim().min(1).max(128))
          .max(500)
          .default([...DEFAULT_TEACHING_APPS])
          .describe(
            `Executables that count as teaching when in the foreground with input within \`teachingIdleWithinS\` (a lesson shown, a video played): matched case-insensitively against \`activity.foreground\`, a trailing \`.exe\` ignored (so \`wpp.exe\` also matches a Linux desktop's \`wpp\`). A list given replaces the defaults, whose products common/figures/usage.ts names. A browser counts only through the agent's \`activity.teachingSites\`.`,
          ),
        teachingSites: z
          .array(z.string().trim().min(1).max(64))
          .max(64)
          .default([...DEFAULT_TEACHING_SITE_NAMES])
          .describe(
            "Names of the teaching sites that count (an agent's `activity.teachingSite`, the name of the pattern its window title matched on the computer), under the same 20-minute bound as `teachingApps`. A name not on this list does not count, so a PC's own patterns cannot make any page teaching. A list given replaces the default (国家中小学智慧教育平台); add a province's platform here and in the agents' `activity.teachingSites`.",
          ),
      })
      .refine((u) => u.teachingIdleWithinS >= u.activeWithinS, {
        message: 'teachingIdleWithinS must be at least activeWithinS',
        path: ['teachingIdleWithinS'],
      })
      .prefault({})
      .describe(
        'What counts as classroom use (docs/usage.md, "The rule"): one rule for the whole deployment, applied by the collector to every reading\'s evidence, so a bureau\'s figures never depend on how each PC was configured.',
      ),
    metrics: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65_535).default(9464),
      })
      .prefault({})
      .describe('Prometheus `/metrics` and `/healthz` listener.'),
  })
  .prefault({});
export type CollectorConfig = z.infer<typeof collectorConfigSchema>;

export type RejectReason =
  | 'empty'
  | 'foreign_root'
  | 'unsupported_version'
  | 'bad_shape'
  | 'bad_id'
  | 'unknown_channel'
  | 'not_json'
  | 'not_object'
  | 'invalid'
  | 'too_large'
  | LimitRejectReason;

export interface CollectorStats {
  received: number;
  accepted: number;
  rejected: Partial<Record<RejectReason, number>>;
  /** Accepted messages of devices the registry does not know (stored with region `unassigned`). */
  unassigned: number;
  /** Messages of registered devices whose announced field disagrees with the registry. */
  mismatches: Partial<Record<MismatchField, number>>;
  /**
   * Parts of accepted messages dropped: entries/events beyond a bound (name_limit), status_change events beyond
   * the flap guard (flap_limit), a reading's invalid `activity` block (activity_invalid: the rest is kept).
   */
  dropped: Partial<Record<LimitDropReason, number>>;
  /** Readings stored more than `lateAfterS` after their time (each makes the rollup read its day again). */
  late: number;
}

export interface CollectorDeps {
  log: Logger;
  storage: Storage;
  /** Injectable clock for tests of presence timing. */
  now?: () => number;
  /**
   * bench/ingest.ts only, to print what acknowledging after the write costs: PUBACK on receipt, as before
   * issue #13 — a crash loses every acknowledged message not yet written. Not a configuration option.
   */
  ackOnReceipt?: boolean;
}

/**
 * Exit status of a collector that stopped because InfluxDB refused its writes for good (401/403: credentials;
 * 404: database gone). Distinct from 0 (a clean stop), 1 (start-up failed) and 2 (configuration error, which
 * the systemd units do not restart). collector/README.md and deploy/systemd/README.md say so.
 */
export const FATAL_STORAGE_EXIT_CODE = 3;

/** Why consumption is paused (`/healthz` says so with status `paused`). */
export type PauseReason = 'backlog' | 'storage';

/**
 * Messages received since the last write at which the waiting points are written: a quarter of
 * `acks.maxUnackedMessages`, so up to four writes are in flight and InfluxDB has the next while the broker refills
 * the window after one is acknowledged (#18: with half, both writes of a window ended together and InfluxDB
 * waited for the refill — 9,600–9,700 against 10,100–10,700 messages/s at the same 500-message writes).
 */
export function flushEvery(maxUnackedMessages: number): number {
  return Math.max(1, Math.ceil(maxUnackedMessages / 4));
}

export class Collector implements Service {
  readonly name = 'collector';
  private session: MqttSession | undefined;
  private http: Server | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  readonly presence: PresenceTracker;
  /** Region, classroom and kind from the fleet registry; unregistered devices bounded. */
  readonly attributor: Attributor;
  /** `usage`: what counts as use, judged per reading. */
  private readonly usage: UsageJudge;
  private readonly bounds = new Map<string, DeviceBounds>();
  /** Local date → the time of the last `late_data` marker written for it (one per date and 10 s). */
  private readonly lateMarked = new Map<string, number>();
  /** Time rejections of devices with no bounds kept (never accepted): logged at most once a minute. */
  private readonly unknownLog = new LogThrottle(60_000);
  readonly registry = new Registry();
  private readonly m;
  private subscribed = false;
  private readonly subscribedWaiters: (() => void)[] = [];
  private acks: ManualAcks | undefined;
  private unlisten: (() => void) | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Messages handled since the storage was last told to write. */
  private sinceFlush = 0;
  private stopping = false;
  private pauseReason: PauseReason | undefined;
  /** A pause for the storage ends once everything accepted before it is settled. */
  private pauseMark: number | undefined;
  /** Port of the metrics listener once started. */
  metricsPort = 0;
  /** Accepted messages by channel (cfm_collector_messages_accepted_total, read at each scrape). */
  private readonly acceptedBy = new Map<Channel, number>();
  private readonly counts: CollectorStats = {
    received: 0,
    accepted: 0,
    rejected: {},
    unassigned: 0,
    mismatches: {},
    dropped: {},
    late: 0,
  };

  constructor(
    readonly config: CollectorConfig,
    private readonly deps: CollectorDeps,
  ) {
    this.presence = new PresenceTracker(config.defaultHeartbeatS, config.offlineFactor);
    this.usage = new UsageJudge(config.usage);
    this.attributor = new Attributor(
      config.registryFile,
      config.registryCheckMs,
      config.limits,
      deps.log.child({ part: 'registry' }),
      (school, device) => this.bounds.delete(entityKey(school, device)),
    );
    const r = this.registry;
    const storage = deps.storage;
    const counts = this.counts;
    const acceptedBy = this.acceptedBy;
    this.m = {
      // The two counters every message moves are plain numbers, read at each scrape: prom-client's inc() hashes
      // its labels and allocates on every call (#18).
      received: new Counter({
        name: 'cfm_collector_messages_received_total',
        help: 'MQTT messages received',
        registers: [r],
        collect() {
          this.reset();
          this.inc(counts.received);
        },
      }),
      accepted: new Counter({
        name: 'cfm_collector_messages_accepted_total',
        help: 'Messages that passed validation, by channel',
        labelNames: ['channel'],
        registers: [r],
        collect() {
          this.reset();
          for (const [channel, n] of acceptedBy) this.inc({ channel }, n);
        },
      }),
      rejected: new Counter({
        name: 'cfm_collector_messages_rejected_total',
        help: 'Messages dropped by validation, by reason',
        labelNames: ['reason'],
        registers: [r],
      }),
      unassigned: new Counter({
        name: 'cfm_collector_unassigned_messages_total',
        help: 'Accepted messages of devices the registry does not know, stored with region "unassigned", by cause (unknown_school, unknown_device)',
        labelNames: ['cause'],
        registers: [r],
      }),
      mismatch: new Counter({
        name: 'cfm_collector_registry_mismatch_total',
        help: 'Messages of registered devices announcing a region, classroom or kind other than the registry (which is used), by field',
        labelNames: ['field'],
        registers: [r],
      }),
      dropped: new Counter({
        name: 'cfm_collector_entries_dropped_total',
        help: 'Parts of accepted messages dropped: NIC/interface entries and events with names beyond the per-device bound (name_limit), status_change events beyond the flap guard (flap_limit), invalid activity blocks of readings otherwise kept (activity_invalid)',
        labelNames: ['reason'],
        registers: [r],
      }),
      late: new Counter({
        name: 'cfm_collector_late_readings_total',
        help: 'Readings stored more than collector.lateAfterS after their time (a spool replay, or a clock behind): each marks its day for the rollup to read again',
        registers: [r],
      }),
      latency: new Histogram({
        name: 'cfm_collector_write_request_seconds',
        help: 'InfluxDB write request duration',
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [r],
      }),
    };
    gauge(
      r,
      'cfm_collector_points_written_total',
      'Lines InfluxDB acknowledged',
      () => storage.stats().writtenLines,
    );
    gauge(
      r,
      'cfm_collector_points_retried_total',
      'Lines whose write failed and was retried',
      () => storage.stats().retriedLines,
    );
    gauge(
      r,
      'cfm_collector_points_pending',
      'Lines accepted but not yet written',
      () => storage.stats().pendingLines,
    );
    labelledGauge(
      r,
      'cfm_collector_points_dropped_total',
      'Lines dropped, by reason',
      'reason',
      () => storage.stats().droppedLines,
    );
    gauge(
      r,
      'cfm_collector_registry_devices',
      'Devices in the registry in use',
      () => this.attributor.health().devices,
    );
    gauge(
      r,
      'cfm_collector_registry_error',
      '1 while the registry file cannot be re-read (the last good registry is in use), else 0',
      () => (this.attributor.health().error ? 1 : 0),
    );
    gauge(
      r,
      'cfm_collector_unassigned_devices',
      'Unregistered devices tracked (bounded by limits.maxUnassignedPerSchool and maxUnassignedDevices)',
      () => {
        let n = 0;
        for (const c of this.attributor.unassignedCounts().values()) n += c;
        return n;
      },
    );
    gauge(
      r,
      'cfm_collector_unacked_messages',
      'Messages received and not yet acknowledged: their points are not yet written (bounded by acks.maxUnackedMessages)',
      () => this.unacked,
    );
    gauge(
      r,
      'cfm_collector_paused',
      '1 while consumption is paused for backpressure (the broker queues), else 0',
      () => (this.paused ? 1 : 0),
    );
    labelledGauge(r, 'cfm_collector_devices', 'Known devices by presence state', 'state', () =>
      this.presence.counts(),
    );
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** Counters for tests and logs. */
  stats(): CollectorStats {
    return structuredClone(this.counts);
  }

  private drop(reason: LimitDropReason, n = 1): void {
    this.counts.dropped[reason] = (this.counts.dropped[reason] ?? 0) + n;
    this.m.dropped.inc({ reason }, n);
  }

  private reject(reason: RejectReason, topic: string, detail: string): void {
    this.counts.rejected[reason] = (this.counts.rejected[reason] ?? 0) + 1;
    this.m.rejected.inc({ reason });
    this.deps.log.debug(
      { reason, topic: topic.slice(0, 200), detail: detail.slice(0, 300) },
      'message rejected',
    );
  }

  /** A payload the MQTT tap skipped unread (over MAX_PAYLOAD_BYTES): received, and rejected as too large. */
  private tooLarge(topic: string, size: number): void {
    this.counts.received++;
    this.reject('too_large', topic, `${size} bytes`);
  }

  /** Handles one message. Public so the ingest benchmark can measure the path without a broker. */
  handle(topic: string, payload: Uint8Array, retained = false): void {
    this.counts.received++;
    if (payload.byteLength === 0) {
      // An empty retained payload clears a retained message (MQTT-3.3.1-10): not a reading, not garbage.
      this.reject('empty', topic, retained ? 'retained message cleared' : 'empty payload');
      return;
    }
    const t = parseTopic(topic);
    if (!t.ok) {
      this.reject(t.reason, topic, 'bad topic');
      return;
    }
    const d = decodePayload(t.channel, payload);
    if (!d.ok) {
      this.reject(d.reason, topic, d.detail);
      return;
    }
    const { school, device, channel, key } = t;
    const msg = d.message;

    const log = this.deps.log;
    const now = this.now();
    // Time before attribution: a message refused for its date takes no unassigned place. A status's own `ts`
    // is never stored (presence is stamped on arrival), and a last will carries the time its connection began,
    // which may be weeks ago: statuses are checked against the future bound only.
    const tv = timeVerdict(msg.ts, now, this.config.limits, channel !== 'status');
    if (tv) {
      // Once per known device; for a device never accepted (no bounds kept for it), at most once a minute.
      const known = this.bounds.get(key);
      if (known ? known.once(tv) : this.unknownLog.take(now))
        log.warn(
          { school, device, channel, ts: new Date(msg.ts).toISOString(), now: new Date(now).toISOString() },
          tv === 'too_old'
            ? `message older than limits.maxPastS rejected (too_old): a replay beyond the spool's age or a wrong clock; logged once per device`
            : `message dated after limits.maxFutureS rejected (in_future): the device's clock is ahead; logged once per device`,
        );
      this.reject(tv, topic, `ts ${msg.ts}, now ${now}`);
      return;
    }
    // Who the device is comes from the topic (the broker ties it to the credential); where it belongs, from the
    // registry.
    const a = this.attributor.attribute(school, device, announced(channel, msg), now, key);
    if (!a.ok) {
      if (a.firstHit)
        log.warn(
          {
            school: a.scope === 'school' ? school : undefined,
            device,
            maxUnassignedPerSchool: this.config.limits.maxUnassignedPerSchool,
            maxUnassignedDevices: this.config.limits.maxUnassignedDevices,
          },
          a.scope === 'school'
            ? 'too many unregistered devices in this school: rejecting messages of further ones (unassigned_limit) until they are registered'
            : 'too many unregistered devices: rejecting messages of further ones (unassigned_limit) until they are registered',
        );
      this.reject('unassigned_limit', topic, 'unregistered device beyond the bound');
      return;
    }
    let bounds = this.bounds.get(key);
    if (!bounds) {
      bounds = new DeviceBounds(this.config.limits);
      this.bounds.set(key, bounds);
    }
    // Interface readings and probes are of a router, switch or AP: a registered classroom device (or a poller
    // credential publishing under its id) may not create interface or probe series for it.
    if ((channel === 'iface' || channel === 'probe') && a.registered && !isNetworkKind(a.info.kind)) {
      if (bounds.once('not_network_device'))
        log.warn(
          { school, device, kind: a.info.kind, channel },
          `${channel === 'iface' ? 'interface readings' : 'probe results'} for a device the registry lists as neither router, switch nor AP rejected (not_network_device); logged once per device`,
        );
      this.reject('not_network_device', topic, `registered kind ${a.info.kind}`);
      return;
    }
    this.counts.accepted++;
    if (d.droppedActivity !== undefined) {
      this.drop('activity_invalid');
      log.debug({ topic: topic.slice(0, 200), detail: d.droppedActivity.slice(0, 300) }, 'activity dropped');
    }
    this.acceptedBy.set(channel, (this.acceptedBy.get(channel) ?? 0) + 1);
    if (a.registered) {
      for (const mm of a.mismatches) {
        this.counts.mismatches[mm.field] = (this.counts.mismatches[mm.field] ?? 0) + 1;
        this.m.mismatch.inc({ field: mm.field });
        if (!this.attributor.firstReport(school, device, mm)) continue;
        log.warn(
          { school, device, field: mm.field, announced: mm.announced, registered: mm.registered ?? null },
          'device announces other than the registry: the registry is used',
        );
        this.deps.storage.write([
          mismatchPoint(school, device, a.info, mm.field, mm.announced, mm.registered, now),
        ]);
      }
    } else {
      this.countUnassigned(a.cause);
      if (a.firstSeen)
        log.info(
          { school, device, cause: a.cause },
          'device not in the registry: its readings are stored with region "unassigned" until it is registered',
        );
    }
    this.route(school, device, key, channel, msg, retained, a.info, a.registered, bounds, now);
  }

  private countUnassigned(cause: UnassignedCause): void {
    this.counts.unassigned++;
    this.m.unassigned.inc({ cause });
  }

  /**
   * A reading dated more than `lateAfterS` before `now` (a spool replay): a `late_data` marker of its local
   * date, written after the reading (a retried batch may still land after it: the rollup's `settleMs` margin covers that), at `now` rounded up to 10 s — at most one
   * per date and 10 s. The scheduled rollup reads that day's raw points again when it sees it (docs/scale.md).
   */
  private markLate(ts: number, now: number): void {
    const date = localDate(ts);
    const at = Math.ceil(now / 10_000) * 10_000;
    if (this.lateMarked.get(date) === at) return;
    if (this.lateMarked.size > 64) this.lateMarked.clear();
    this.lateMarked.set(date, at);
    this.deps.storage.write([{ measurement: 'late_data', tags: { date }, fields: { n: 1 }, ts: at }]);
  }

  /** Whether a value of a bounded tag may be stored for this device; counts and logs (once) when not. */
  private admitName(
    school: string,
    device: string,
    bounds: DeviceBounds,
    registered: boolean,
    tag: NamedTag,
    name: string,
  ): boolean {
    if (bounds.admitName(tag, name, registered)) return true;
    this.drop('name_limit');
    if (bounds.once(`name_limit:${tag}`))
      this.deps.log.warn(
        { school, device, tag, name: name.slice(0, 128) },
        `device reports more distinct ${tag} names than its bound: the excess is dropped (name_limit); logged once per device`,
      );
    return false;
  }

  /**
   * The entries whose names may be stored (admitName, in order): `items` itself when all may — the common case,
   * no array made per message.
   */
  private admitted<T extends { name: string }>(
    school: string,
    device: string,
    bounds: DeviceBounds,
    registered: boolean,
    tag: NamedTag,
    items: readonly T[],
  ): readonly T[] {
    for (let i = 0; i < items.length; i++) {
      if (this.admitName(school, device, bounds, registered, tag, items[i]!.name)) continue;
      const out = items.slice(0, i);
      for (let j = i + 1; j < items.length; j++)
        if (this.admitName(school, device, bounds, registered, tag, items[j]!.name)) out.push(items[j]!);
      return out;
    }
    return items;
  }

  private route<C extends Channel>(
    school: string,
    device: string,
    key: string,
    channel: C,
    msg: TopicPayloads[C],
    retained: boolean,
    info: DeviceInfo,
    registered: boolean,
    bounds: DeviceBounds,
    now: number,
  ) {
    const storage = this.deps.storage;
    let tr: Transition | undefined;
    switch (channel) {
      case 'status': {
        const s = msg as TopicPayloads['status'];
        const reason = s.reason ?? (s.state === 'online' ? 'birth' : 'will');
        tr = this.presence.status(
          school,
          device,
          s.state === 'online',
          reason,
          { ...info, heartbeatS: s.heartbeatS },
          retained,
          now,
        );
        break;
      }
      case 'telemetry': {
        const m = msg as TopicPayloads['telemetry'];
        const nics = m.host && this.admitted(school, device, bounds, registered, 'nic', m.host.nics);
        storage.write(telemetryPoints(school, device, m, info, nics, this.usage));
        tr = this.presence.seen(school, device, info, now, key);
        break;
      }
      case 'iface': {
        const m = msg as TopicPayloads['iface'];
        const ifaces = this.admitted(school, device, bounds, registered, 'ifname', m.ifaces);
        storage.write(ifacePoints(school, device, m, info, ifaces));
        tr = this.presence.seen(school, device, info, now, key);
        break;
      }
      case 'probe':
        // A measurement by the poller, not a sign of life from the device: presence stays SNMP's and the
        // device's own.
        storage.write([probePoint(school, device, msg as TopicPayloads['probe'], info)]);
        break;
      case 'event': {
        const m = msg as TopicPayloads['event'];
        if (
          m.subject !== undefined &&
          !this.admitName(school, device, bounds, registered, 'subject', m.subject)
        )
          break;
        storage.write([eventPoint(school, device, m, info)]);
        break;
      }
    }
    if (channel === 'telemetry' || channel === 'iface' || channel === 'probe') {
      const ts = (msg as TopicPayloads['telemetry' | 'iface' | 'probe']).ts;
      if (now - ts > this.config.lateAfterS * 1000) {
        this.counts.late++;
        this.m.late.inc();
        // A device whose readings are all late (its clock behind) makes the rollup read today at every run.
        if (bounds.once('late'))
          this.deps.log.info(
            { school, device, channel, ts: new Date(ts).toISOString(), now: new Date(now).toISOString() },
            'reading stored late (older than collector.lateAfterS): a spool replay after an outage, or the device clock is behind; its day is marked for the rollup to read again (late_data); logged once per device',
          );
        this.markLate(ts, now);
      }
    }
    if (tr) this.record(tr);
  }

  private record(tr: Transition): void {
    const s = tr.state;
    // Tags as the registry has them now (a timeout may come long after the device's last message).
    const info = this.attributor.tags(s.school, s.device, s.kind);
    const points = presencePoints(s.school, s.device, tr.online, tr.reason, tr.ts, info);
    if (tr.quiet) {
      this.deps.storage.write(points.slice(0, 1)); // the state, without a status_change event
      return;
    }
    const key = entityKey(s.school, s.device);
    let bounds = this.bounds.get(key);
    if (!bounds) {
      bounds = new DeviceBounds(this.config.limits);
      this.bounds.set(key, bounds);
    }
    if (!bounds.admitStatusChange(tr.ts)) {
      // Flap guard: the state is still tracked and stored, the event (and its log line) is not.
      this.deps.storage.write(points.slice(0, 1));
      this.drop('flap_limit');
      if (bounds.logFlap(tr.ts))
        this.deps.log.warn(
          {
            school: s.school,
            device: s.device,
            maxStatusChangesPerMin: this.config.limits.maxStatusChangesPerMin,
          },
          'device flapping: further status_change events suppressed (flap_limit); logged at most every 10 min',
        );
      return;
    }
    this.deps.log.info(
      { school: s.school, device: s.device, online: tr.online, reason: tr.reason },
      'presence changed',
    );
    this.deps.storage.write(points);
  }

  /**
   * Pause consuming (a clean disconnect: the broker queues for the persistent session) while
   * - `backlog`: the write backlog is above highWaterLines; resumed at or below lowWaterLines;
   * - `storage`: the storage cannot settle what was received — the connection has been held at the unacked
   *   bound for half a keepalive (MQTT 3.1.1 brokers, which ignore Receive Maximum; mqtt.js would soon give up
   *   on the held connection's keepalive anyway), or lines were given up (`expired`, `overflow`) so the
   *   messages they came from can never be acknowledged in order. Resumed once everything accepted before the
   *   pause is settled; the broker then sends the unacknowledged messages again (they overwrite themselves).
   */
  private backpressure(): void {
    const session = this.session;
    if (!session) return;
    const storage = this.deps.storage;
    const pending = storage.stats().pendingLines;
    const { highWaterLines, lowWaterLines } = this.config.backpressure;
    if (!session.isPaused) {
      if (pending > highWaterLines) {
        this.deps.log.warn({ pending, highWaterLines }, 'write backlog high: pausing MQTT consumption');
        this.pause('backlog');
      } else if ((this.acks?.heldForMs() ?? 0) > this.config.mqtt.keepaliveS * 500) {
        this.deps.log.warn(
          { unacked: this.acks?.unacked, pending },
          'storage not writing: pausing MQTT consumption (the broker keeps the unacknowledged messages)',
        );
        this.pause('storage');
      }
    } else if (
      pending <= lowWaterLines &&
      (this.pauseMark === undefined || storage.settledThrough >= this.pauseMark)
    ) {
      this.deps.log.info({ pending, lowWaterLines, why: this.pauseReason }, 'resuming MQTT consumption');
      this.pauseReason = undefined;
      this.pauseMark = undefined;
      session.resume();
    }
  }

  private pause(reason: PauseReason): void {
    const session = this.session;
    if (!session || session.isPaused || this.stopping) return;
    this.pauseReason = reason;
    this.pauseMark = reason === 'storage' ? this.deps.storage.position() : undefined;
    this.subscribed = false;
    void session.pause();
  }

  /** Is consumption paused (backpressure)? */
  get paused(): boolean {
    return this.session?.isPaused ?? false;
  }

  /** Messages received and not yet acknowledged. */
  get unacked(): number {
    return this.acks?.unacked ?? 0;
  }

  /** The storage should write what waits now rather than at its interval. */
  private flushNow(): void {
    this.sinceFlush = 0;
    void this.deps.storage.flush();
  }

  private timeoutsEnabled(): boolean {
    const t = this.config.heartbeatTimeouts;
    if (t !== 'auto') return t === 'on';
    const shared =
      this.config.subscription === 'shared' ||
      (this.config.subscription === 'auto' && this.session?.protocol === 5);
    return !shared;
  }

  private subscriptionFilters(protocolVersion: 4 | 5): string[] {
    const base = this.config.schools.length
      ? this.config.schools.map((s) => filters.school(s))
      : [filters.all()];
    const shared =
      this.config.subscription === 'shared' || (this.config.subscription === 'auto' && protocolVersion === 5);
    return shared ? base.map((f) => filters.shared(this.config.group, f)) : base;
  }

  async start(): Promise<void> {
    const log = this.deps.log;
    try {
      this.attributor.load();
    } catch (e) {
      throw new Error(`collector.registryFile: ${(e as Error).message}`);
    }
    this.http = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.registry.contentType });
            res.end(text);
          },
          (err: unknown) => {
            res.writeHead(500);
            res.end(String(err));
          },
        );
      } else if (req.url === '/healthz') {
        // 503 only when broken: MQTT down without our choosing. A deliberate pause (backpressure) is 200 with
        // status `paused`: restarting a paused collector would only throw away what it is writing. A registry
        // that is missing or could not be re-read is `degraded`: readings are still stored, with the last good
        // registry (or as unassigned).
        const connected = this.session?.connected ?? false;
        const paused = this.paused;
        const ok = connected || paused;
        const registry = this.attributor.health();
        const status = !ok
          ? 'error'
          : paused
            ? 'paused'
            : registry.error || registry.missing
              ? 'degraded'
              : 'ok';
        const storage = this.deps.storage.stats();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            status,
            mqtt: connected ? 'connected' : paused ? 'paused' : 'disconnected',
            ...(paused ? { pausedFor: this.pauseReason ?? 'backlog' } : {}),
            unacked: this.unacked,
            pendingLines: storage.pendingLines,
            registry,
          }),
        );
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.http!.once('error', reject);
      this.http!.listen(this.config.metrics.port, this.config.metrics.host, resolve);
    });
    this.metricsPort = (this.http.address() as { port: number }).port;

    // A stable client id per host keeps the persistent session (and the messages queued in it) across restarts;
    // set mqtt.clientId when several collectors run on one host.
    const m = this.config.mqtt;
    const clientId = m.clientId ?? `${m.username ?? 'cfm-collector'}/${hostname()}`;
    const storage = this.deps.storage;
    const { maxUnackedMessages, idleFlushMs } = this.config.acks;
    const acks = this.deps.ackOnReceipt
      ? undefined
      : new ManualAcks({
          maxUnacked: maxUnackedMessages,
          position: () => storage.position(),
          settled: () => storage.settledThrough,
          onFull: () => this.flushNow(),
        });
    this.acks = acks;
    this.stopping = false;
    if (acks) {
      this.unlisten = storage.addWriteListener({
        settled: () => acks.release(),
        abandoned: (reason, lines) => {
          // These messages can never be acknowledged, and PUBACKs go in receive order: none after them either.
          // Drop the connection; the broker sends them again on the next one.
          acks.invalidate();
          if (reason === 'fatal') return; // the process stops (main.ts)
          log.warn(
            { reason, lines },
            'storage gave up lines: reconnecting once they are settled, for the broker to send their messages again',
          );
          this.pause('storage');
        },
      });
    }
    const flushAt = flushEvery(maxUnackedMessages);
    const received = () => {
      if (++this.sinceFlush >= flushAt) this.flushNow();
      else this.idleTimer?.refresh();
    };
    // With acknowledgements after the write, messages come through the MQTT tap (common/mqtt-tap.ts: decoded
    // below mqtt.js, #18); QoS 2 (never granted: we subscribe with QoS 1) would still come through mqtt.js.
    const sink: PublishSink | undefined =
      acks &&
      ((p, tap) => {
        if (this.stopping) return false; // neither stored nor acknowledged: the broker keeps it
        if (p.payload) this.handle(p.topic, p.payload, p.retain);
        else this.tooLarge(p.topic, p.size);
        received();
        return acks.accept(p.client, p.qos, p.messageId, tap.proceed);
      });
    const session = new MqttSession(m, {
      log,
      clientId,
      persistentSession: true,
      sessionExpiryS: this.config.sessionExpiryS,
      ...(acks && sink ? { acks, tap: { sink, maxPayloadBytes: MAX_PAYLOAD_BYTES } } : {}),
    });
    this.session = session;
    // Written when the stream pauses: a broker at its in-flight limit sends nothing until it gets PUBACKs.
    this.idleTimer = setTimeout(() => {
      if (this.unacked > 0) this.flushNow();
    }, idleFlushMs);
    this.idleTimer.unref();
    session.on('message', (topic: string, payload: Buffer, packet: IPublishPacket) => {
      if (this.stopping) return; // neither stored nor acknowledged: the broker keeps it
      this.handle(topic, payload, packet.retain);
      if (acks) received();
    });
    session.on('disconnect', () => {
      this.subscribed = false;
    });
    session.on('connect', ({ protocolVersion, sessionPresent }) => {
      const fs = this.subscriptionFilters(protocolVersion);
      // With a surviving session the broker still has our subscriptions (MQTT-3.2.2-2); subscribing again is
      // harmless and covers brokers that lost them.
      void Promise.all(fs.map((f) => session.subscribe(f, 1))).then(
        () => {
          log.info({ filters: fs, sessionPresent }, 'subscribed');
          this.subscribed = true;
          for (const w of this.subscribedWaiters.splice(0)) w();
        },
        (err: unknown) => log.error({ err, filters: fs }, 'subscribe failed'),
      );
    });
    session.start();
    this.sweepTimer = setInterval(() => {
      this.backpressure();
      if (this.timeoutsEnabled()) for (const tr of this.presence.sweep(this.now())) this.record(tr);
    }, this.config.sweepIntervalMs);
  }

  /** Resolves once connected and subscribed; rejects after timeoutMs. */
  ready(timeoutMs = 15_000): Promise<void> {
    if (!this.session) return Promise.reject(new Error('collector not started'));
    if (this.subscribed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`collector not subscribed after ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.subscribedWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /**
   * Stops taking messages, waits (up to `influx.shutdownTimeoutMs`) until what was received is written and
   * acknowledged, then disconnects. What is still unacknowledged then stays with the broker for the next start.
   */
  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    clearTimeout(this.idleTimer);
    this.stopping = true;
    const acks = this.acks;
    const storage = this.deps.storage;
    if (acks && this.session && !storage.fatalError) {
      acks.stopIntake();
      void storage.flush();
      const drained = await acks.whenDrained(storage.config.shutdownTimeoutMs);
      if (!drained)
        this.deps.log.warn(
          { unacked: acks.unacked, shutdownTimeoutMs: storage.config.shutdownTimeoutMs },
          'stopping with unacknowledged messages: the broker sends them again at the next start',
        );
    }
    this.unlisten?.();
    this.unlisten = undefined;
    await this.session?.stop();
    this.session = undefined;
    this.acks = undefined;
    await new Promise((r) => (this.http ? this.http.close(r) : r(undefined)));
    this.http = undefined;
  }
}

/** What a message announces about its device (compared with the registry, never used for a registered one). */
function announced<C extends Channel>(channel: C, msg: TopicPayloads[C]): Announced {
  switch (channel) {
    case 'status': {
      const s = msg as TopicPayloads['status'];
      return { kind: s.kind, classroom: s.classroom, region: s.region };
    }
    case 'telemetry': {
      const t = msg as TopicPayloads['telemetry'];
      return { kind: t.kind, classroom: t.classroom };
    }
    default:
      return { kind: (msg as TopicPayloads['iface'] | TopicPayloads['event'] | TopicPayloads['probe']).kind };
  }
}
