import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  type DeviceEvent,
  type DeviceStatus,
  decodePayload,
  type IfaceReadings,
  type ProbeResult,
  type Telemetry,
} from '../contracts/messages.js';
import { parseTopic, filters as topicFilters } from '../contracts/topics.js';
import { LogThrottle } from './log.js';
import { type MqttConfig, MqttSession } from './mqtt.js';
import { entityKey } from './registry/key.js';
import { carriesUplink, type RegistryIndex } from './registry/store.js';

/**
 * Live fleet state from MQTT: every device's last status (births and wills are retained, so a fresh API sees
 * the whole fleet at once) and every school's latest uplink rate from the pollers' `iface` readings. The
 * collector stores the same messages; this is the in-memory "now" the API serves and streams.
 *
 * A device is (school, device) — the topic `cfm/v1/{school}/{device}/…`, which the broker ties to the
 * credential — never its id alone: ids are unique only within a school, so `wb-a1` of school B never changes
 * what is shown for `wb-a1` of school A. What a status *announces* (region, classroom, kind) is kept as said, so
 * the API can show where it disagrees with the registry; the registry, not the announcement, decides.
 *
 * Whatever any credential publishes under any (school, device) would otherwise add an entry here: a poller
 * inventing device ids of its schools (or a broker without per-school ACL) could grow the live view without end.
 * So the (school, device)s the registry does not know are bounded, per school and in all (`api.live`); the
 * registry's own devices never count and are never evicted. See `UnassignedPlaces` for which one goes.
 */
export const liveLimitsSchema = z
  .strictObject({
    maxUnassignedPerSchool: z
      .number()
      .int()
      .min(0)
      .default(64)
      .describe(
        'Devices not in the registry whose live status and uplink the API holds per school (listed by `GET /v1/devices/unassigned`); beyond, the least recently seen of that school is evicted (counted, `cfm_api_live_unassigned_evicted{scope="school"}`; logged at most once a minute). Default 64, as `collector.limits.maxUnassignedPerSchool`. 0: none held. Prevents invented device ids (a poller may publish for any device of its schools) from growing the memory of the API without end; registered devices never count and are never evicted.',
      ),
    maxUnassignedDevices: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .describe(
        'Devices not in the registry held in all (any school, registered or not); beyond, the least recently seen anywhere is evicted (`scope="total"`). Default 10,000, as `collector.limits.maxUnassignedDevices`. Bounds the live view when one credential publishes for many schools, unregistered school ids included.',
      ),
    staleAfterS: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .default(180)
      .describe(
        "An uplink reading older than this is `stale`: shown as such in `/v1/schools` and sent as an `uplink` event with `state: stale` on `/v1/bandwidth/live`, instead of its last rate and `operStatus` passing for now. Shorter for a device whose status promises a heartbeat (the poller sets it to the target's `intervalS`): 3 of its intervals. Default 180 s, 3 × the poller's default 60 s interval: one lost poll is no outage, three are. Prevents a school cut off with its poller (or a dead poller) from showing its last reading, `up`, forever. Also the bound of a probe cycle (`link` in `/v1/schools`: `stale`, at most this, 3 of its cycle intervals when shorter).",
      ),
  })
  .prefault({})
  .describe(
    'The live view: bounds for (school, device)s the registry does not know, and when an uplink reading is stale.',
  );
export type LiveLimits = z.infer<typeof liveLimitsSchema>;

export interface DeviceLive {
  school: string;
  device: string;
  /** The kind the device announced (the registry's kind wins for a registered device). */
  kind: string;
  state: 'online' | 'offline';
  /**
   * Since when it is in `state` (ms), as well as the API can know it (`sinceOf`): online, the time its
   * birth says it connected; offline, the time its last will arrived (a will's `ts` is when the connection
   * *began*: the broker publishes the payload the device left at connect time) or, for a shutdown or a poller's
   * verdict, the status's own `ts`. null: offline since before the API subscribed (a retained will replayed on
   * subscribing says when the connection began, not when it ended).
   */
  sinceMs: number | null;
  /** What the last status announced; null where it said nothing. */
  announced: { region: string | null; classroom: string | null; kind: string };
  /** The heartbeat (s) its last status promised; a poller's is its poll interval. */
  heartbeatS: number | null;
}

export const UPLINK_STATES = ['up', 'down', 'stale'] as const;
export type UplinkState = (typeof UPLINK_STATES)[number];

/** Poll intervals without a reading after which an uplink reading is stale (at most `api.live.staleAfterS`). */
export const STALE_POLLS = 3;

export interface UplinkLive {
  school: string;
  device: string;
  ifname: string;
  inBps: number | null;
  outBps: number | null;
  speedMbps: number | null;
  /** What the last reading said (IF-MIB ifOperStatus), however old it is: `state` says what holds now. */
  operStatus: string;
  /** When the reading was taken (the poller's clock). */
  tsMs: number;
  /** When the API received it. */
  receivedAtMs: number;
  /**
   * `up`; `down`: the interface is not up, or the device stopped answering SNMP since this reading (the
   * poller's `unreachable` event); `stale`: no reading for the bound (`LiveState.staleAfterMs`).
   */
  state: UplinkState;
  /** Since when `state` holds, as the API saw it. */
  stateSinceMs: number;
  /** When the poller said the device stopped answering SNMP (after this reading); null: it answers. */
  unreachableSinceMs: number | null;
}

/** The last probe cycle of a school's uplink device (docs/links.md): what the console's 网络 page shows. */
export interface LinkLive {
  school: string;
  device: string;
  method: 'icmp' | 'tcp';
  sent: number;
  received: number;
  lossPct: number;
  /** Average round trip of the answers; null when none answered. */
  rttMs: number | null;
  jitterMs: number | null;
  /** When the cycle ran (the poller's clock). */
  tsMs: number;
  /** When the API received it. */
  receivedAtMs: number;
  /**
   * The device's cycle interval as observed (the poller's clock): the gap between its last two cycles, except
   * that a gap shorter than the one held counts only when the gap before it was shorter too (`cycleInterval`: a
   * restarted poller's early cycle is no new interval); null until a second cycle came.
   */
  intervalMs: number | null;
}

/** A school's last probe cycle as `/v1/schools` sends it: how old it is, and whether that is too old to be now. */
export interface LinkNow extends LinkLive {
  /** Seconds since the cycle ran, by the API's clock (from its arrival if the poller's clock is ahead). */
  ageS: number;
  /** The age beyond which it is stale: 3 cycle intervals as observed, at most `api.live.staleAfterS`. */
  staleAfterS: number;
  stale: boolean;
}

/** Decoded messages, for the alert engine's signals (status and iface as well as events and telemetry). */
export type LiveMessage =
  | {
      channel: 'status';
      school: string;
      device: string;
      message: DeviceStatus;
      atMs: number;
      retained: boolean;
    }
  | { channel: 'iface'; school: string; device: string; message: IfaceReadings; atMs: number }
  | { channel: 'event'; school: string; device: string; message: DeviceEvent; atMs: number }
  | { channel: 'telemetry'; school: string; device: string; message: Telemetry; atMs: number }
  | { channel: 'probe'; school: string; device: string; message: ProbeResult; atMs: number };

/** `uplink`: a reading, or a change of its state; `device`: a held device's state changed (or was first known). */
type LiveEvents = { uplink: [UplinkLive]; device: [DeviceLive]; message: [LiveMessage] };

export interface LiveStats {
  /** Devices with a live status held (registered or not). */
  devices: number;
  /** Uplink readings held, one per (school, device) that sent one. */
  uplinks: number;
  /** (school, device)s not in the registry with a status or uplink held. */
  unassigned: number;
  /** The same by school. */
  unassignedBySchool: Record<string, number>;
  /** Unregistered (school, device)s evicted since start: their school was full, or all were. */
  unassignedEvicted: { school: number; total: number };
}

/** A live view full of unregistered devices is logged at most this often (the rest only counted). */
const EVICTION_LOG_EVERY_MS = 60_000;

/**
 * The unregistered (school, device)s the live view holds state for, least recently seen first in all and per
 * school (a Map and a Set iterate in insertion order; seeing one again moves it to the end).
 *
 * When a school or the whole is full, the **least recently seen is evicted**, rather than the newcomer refused as
 * the collector does (collector/attribution.ts). The collector refuses because what it admits becomes series in
 * InfluxDB that cannot be taken back, so its first places must stay stable. The live view holds only "now", in
 * memory: refusing would let one burst of invented ids take every place of a school until the API restarts —
 * longer, since retained statuses are replayed on reconnect — and hide the real device installed next week;
 * evicting keeps the most recent activity and recovers by itself once a flood stops. During a flood a real
 * unregistered device may drop out of the live list (counted and logged); the collector's stored `unassigned`
 * readings still show it.
 */
class UnassignedPlaces {
  /** By entityKey: [school, device]. */
  private readonly all = new Map<string, readonly [string, string]>();
  /** Per school: its entityKeys. */
  private readonly bySchool = new Map<string, Set<string>>();

  get size(): number {
    return this.all.size;
  }

  has(key: string): boolean {
    return this.all.has(key);
  }

  count(school: string): number {
    return this.bySchool.get(school)?.size ?? 0;
  }

  /** Adds one, or marks it seen now. */
  touch(key: string, school: string, device: string): void {
    this.all.delete(key);
    this.all.set(key, [school, device]);
    let keys = this.bySchool.get(school);
    if (!keys) {
      keys = new Set();
      this.bySchool.set(school, keys);
    }
    keys.delete(key);
    keys.add(key);
  }

  delete(key: string): void {
    const e = this.all.get(key);
    if (!e) return;
    this.all.delete(key);
    const keys = this.bySchool.get(e[0]);
    keys?.delete(key);
    if (keys?.size === 0) this.bySchool.delete(e[0]);
  }

  /** The least recently seen, of one school or of all. */
  oldest(school?: string): { key: string; school: string; device: string } | undefined {
    const key =
      school === undefined ? this.all.keys().next().value : this.bySchool.get(school)?.values().next().value;
    const e = key === undefined ? undefined : this.all.get(key);
    return e && key !== undefined ? { key, school: e[0], device: e[1] } : undefined;
  }

  entries(): IterableIterator<[string, readonly [string, string]]> {
    return this.all.entries();
  }

  counts(): Record<string, number> {
    return Object.fromEntries([...this.bySchool].map(([s, keys]) => [s, keys.size]));
  }
}

export class LiveState extends EventEmitter<LiveEvents> {
  /** By `entityKey(school, device)`. */
  readonly devices = new Map<string, DeviceLive>();
  /** School → device → its latest uplink reading (which device carries a school's uplink: `carriesUplink`). */
  readonly uplinks = new Map<string, Map<string, UplinkLive>>();
  /** By `entityKey(school, device)`: the last probe cycle of each registered device probed. */
  private readonly links = new Map<string, LinkLive>();
  /** Per (school, device) held in `links`: the last gap between cycles that was shorter than its interval. */
  private readonly shorterGaps = new Map<string, number>();
  /** Messages that did not validate (counted, dropped). */
  rejected = 0;
  private readonly places = new UnassignedPlaces();
  private readonly evicted = { school: 0, total: 0 };
  private readonly evictionLog = new LogThrottle(EVICTION_LOG_EVERY_MS);
  /** The registry the places were last checked against (an import changes what is registered). */
  private syncedIndex: RegistryIndex | undefined;
  private readonly limits: LiveLimits;
  private readonly now: () => number;
  private session: MqttSession | undefined;
  private staleTimer: NodeJS.Timeout | undefined;
  private subscribed = false;
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly config: MqttConfig | undefined,
    private readonly log: Logger,
    /** Also subscribe to telemetry (the alert engine needs it). */
    private readonly all = false,
    private readonly bounds: {
      /** What is registered; absent: nothing is, so every (school, device) is bounded as unregistered. */
      registry?: () => RegistryIndex;
      limits?: LiveLimits;
      /** The clock (tests); default Date.now. */
      now?: () => number;
    } = {},
  ) {
    super();
    this.setMaxListeners(0); // one listener per open SSE stream
    this.limits = bounds.limits ?? liveLimitsSchema.parse(undefined);
    this.now = bounds.now ?? Date.now;
  }

  async start(): Promise<void> {
    if (!this.config) return;
    const session = new MqttSession(this.config, { log: this.log });
    this.session = session;
    // Events always: a poller's `unreachable` is what marks an uplink down at once.
    const filters = [
      topicFilters.all('status'),
      topicFilters.all('iface'),
      topicFilters.all('event'),
      topicFilters.all('probe'),
      ...(this.all ? [topicFilters.all('telemetry')] : []),
    ];
    session.on('message', (topic, payload, packet) => this.handle(topic, payload, packet.retain));
    session.on('disconnect', () => {
      this.subscribed = false;
    });
    session.on('connect', () => {
      // Events are sent once (a reachability change): QoS 1 so the broker does not drop them for us.
      void Promise.all(filters.map((f) => session.subscribe(f, f.endsWith('/event') ? 1 : 0))).then(
        () => {
          this.subscribed = true;
          for (const w of this.waiters.splice(0)) w();
        },
        (err: unknown) => this.log.error({ err, filters }, 'subscribe failed'),
      );
    });
    session.start();
    // Staleness has no message to announce it: looked for often enough to be seen within a second of its bound.
    this.staleTimer = setInterval(() => this.markStale(), Math.min(1_000, this.limits.staleAfterS * 250));
  }

  /** Resolves once connected and subscribed. */
  ready(timeoutMs = 15_000): Promise<void> {
    if (this.subscribed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`live state not subscribed after ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.staleTimer);
    this.staleTimer = undefined;
    await this.session?.stop();
    this.session = undefined;
  }

  /** School `school`'s device `id` as it last reported, or undefined. */
  device(school: string, id: string): DeviceLive | undefined {
    return this.devices.get(entityKey(school, id));
  }

  /** The last probe cycle of school `school`'s device `device`, or undefined. */
  link(school: string, device: string): LinkLive | undefined {
    return this.links.get(entityKey(school, device));
  }

  /**
   * The cycle interval to hold once the cycle of `tsMs` follows `held` (`LinkLive.intervalMs`). A longer gap (or
   * the first) is adopted at once: a skipped cycle loosens the stale bound until two shorter gaps tighten it
   * again. A shorter one only when the gap before it was shorter too — then the longer of the two: the prober
   * runs a cycle as it starts, so a poller restarted 5 s after its last cycle makes one 5 s gap, which must not
   * make every school stale 15 s later until its next cycle; a changed `probes.intervalS` repeats.
   */
  private cycleInterval(key: string, held: LinkLive | undefined, tsMs: number): number | null {
    if (!held || tsMs <= held.tsMs) return held?.intervalMs ?? null;
    const gap = tsMs - held.tsMs;
    const before = this.shorterGaps.get(key);
    if (held.intervalMs === null || gap >= held.intervalMs) {
      this.shorterGaps.delete(key);
      return gap;
    }
    if (before === undefined) {
      this.shorterGaps.set(key, gap);
      return held.intervalMs;
    }
    this.shorterGaps.delete(key);
    return Math.max(before, gap);
  }

  /** The latest uplink reading of school `school`'s device `device`, or undefined. */
  uplink(school: string, device: string): UplinkLive | undefined {
    return this.uplinks.get(school)?.get(device);
  }

  /**
   * Probe cycle `l` now: its age counts from when it ran (a cycle replayed from a spool is as old as it says), or
   * from when it arrived if the poller's clock is ahead; stale after 3 of the intervals between its device's
   * cycles (the poller's `probes.intervalS`, as observed: `cycleInterval`), at most `api.live.staleAfterS` (also
   * the bound until a second cycle came) — as an uplink reading is stale after 3 poll intervals.
   */
  linkNow(l: LinkLive): LinkNow {
    const ageMs = Math.max(0, this.now() - Math.min(l.tsMs, l.receivedAtMs));
    const boundS = this.limits.staleAfterS;
    const staleAfterS =
      l.intervalMs === null ? boundS : Math.min(boundS, Math.ceil((STALE_POLLS * l.intervalMs) / 1000));
    return { ...l, ageS: Math.floor(ageMs / 1000), staleAfterS, stale: ageMs >= staleAfterS * 1000 };
  }

  /** `api.live.staleAfterS`: the longest an uplink reading stays up without another. */
  get staleAfterS(): number {
    return this.limits.staleAfterS;
  }

  /**
   * How old uplink reading `u` may get before it is stale: `api.live.staleAfterS`, or 3 poll intervals of its
   * device when its status promised a shorter heartbeat (a poller's is its interval). Never longer than the
   * configured bound, whatever a status claims.
   */
  staleAfterMs(u: Pick<UplinkLive, 'school' | 'device'>): number {
    const heartbeatS = this.device(u.school, u.device)?.heartbeatS;
    const s = this.limits.staleAfterS;
    return 1000 * (heartbeatS ? Math.min(s, STALE_POLLS * heartbeatS) : s);
  }

  /**
   * When reading `u` is stale: its age counts from when it was taken (a reading replayed from a spool is as old
   * as it says), or from when it arrived if the poller's clock is ahead.
   */
  private staleAtMs(u: UplinkLive): number {
    return Math.min(u.tsMs, u.receivedAtMs) + this.staleAfterMs(u);
  }

  /** Marks the readings that have outlived their bound stale, and says so (`uplink`). */
  private markStale(): void {
    const now = this.now();
    for (const school of this.uplinks.values())
      for (const u of school.values()) {
        // A device the poller declared unreachable stays down: no reading is due until it answers again.
        if (u.state === 'stale' || u.unreachableSinceMs !== null) continue;
        const staleAt = this.staleAtMs(u);
        if (now < staleAt) continue;
        u.state = 'stale';
        u.stateSinceMs = staleAt;
        this.emit('uplink', u);
      }
  }

  /**
   * A poller's `unreachable` (SNMP, sent once per outage) marks the device's uplink reading down at once: no
   * reading will come to say so. Its `recovered` comes with a reading, which clears it; until then the reading
   * stays down, never stale (nothing is due from a device that does not answer).
   */
  private unreachable(school: string, device: string, e: DeviceEvent, atMs: number): void {
    if (e.type !== 'unreachable' || e.subject !== 'snmp') return;
    const u = this.uplinks.get(school)?.get(device);
    if (!u || u.unreachableSinceMs !== null) return;
    u.unreachableSinceMs = atMs;
    if (u.state !== 'down') {
      u.state = 'down';
      u.stateSinceMs = atMs;
    }
    this.emit('uplink', u);
  }

  /** What the live view holds now, and what its bounds evicted. */
  stats(): LiveStats {
    this.registry();
    let uplinks = 0;
    for (const school of this.uplinks.values()) uplinks += school.size;
    return {
      devices: this.devices.size,
      uplinks,
      unassigned: this.places.size,
      unassignedBySchool: this.places.counts(),
      unassignedEvicted: { ...this.evicted },
    };
  }

  /**
   * The registry now. After an import, devices registered since take no place any more (their state is kept),
   * and devices no longer registered take one (evicting as usual): checked when the registry changed, not on
   * every message.
   */
  private registry(): RegistryIndex | undefined {
    const idx = this.bounds.registry?.();
    if (idx === undefined || idx === this.syncedIndex) return idx;
    this.syncedIndex = idx;
    for (const [key, [school, device]] of [...this.places.entries()])
      if (idx.device(school, device)) this.places.delete(key);
    // Entries of devices no longer registered: held like new ones (one evicted on the way has no entry left).
    const held = (school: string, device: string) => {
      const key = entityKey(school, device);
      const hasEntry = this.devices.has(key) || this.uplinks.get(school)?.has(device) === true;
      if (hasEntry && !idx.device(school, device) && !this.places.has(key) && !this.hold(key, school, device))
        this.drop(key, school, device);
    };
    for (const d of [...this.devices.values()]) held(d.school, d.device);
    for (const [school, devices] of [...this.uplinks])
      for (const device of [...devices.keys()]) held(school, device);
    return idx;
  }

  /**
   * Makes room for an unregistered (school, device) about to get an entry, evicting the least recently seen of
   * its school, then of all, when full (`UnassignedPlaces`). False when no place can be had (a limit of 0).
   */
  private hold(key: string, school: string, device: string): boolean {
    if (this.places.has(key)) {
      this.places.touch(key, school, device);
      return true;
    }
    const { maxUnassignedPerSchool: perSchool, maxUnassignedDevices: total } = this.limits;
    if (perSchool === 0 || total === 0) {
      this.evicted[perSchool === 0 ? 'school' : 'total']++;
      this.logEviction(perSchool === 0 ? 'school' : 'total', school, device, undefined);
      return false;
    }
    while (this.places.count(school) >= perSchool) this.evict('school', school, device);
    while (this.places.size >= total) this.evict('total', school, device);
    this.places.touch(key, school, device);
    return true;
  }

  private evict(scope: 'school' | 'total', school: string, device: string): void {
    const old = this.places.oldest(scope === 'school' ? school : undefined)!;
    this.drop(old.key, old.school, old.device);
    this.evicted[scope]++;
    this.logEviction(scope, school, device, old);
  }

  /** Forgets an unregistered (school, device): its place, status and uplink reading. */
  private drop(key: string, school: string, device: string): void {
    this.places.delete(key);
    this.devices.delete(key);
    const uplinks = this.uplinks.get(school);
    uplinks?.delete(device);
    if (uplinks?.size === 0) this.uplinks.delete(school);
  }

  private logEviction(
    scope: 'school' | 'total',
    school: string,
    device: string,
    evicted: { school: string; device: string } | undefined,
  ): void {
    if (!this.evictionLog.take(this.now())) return;
    this.log.warn(
      {
        school,
        device,
        scope,
        evictedSchool: evicted?.school,
        evictedDevice: evicted?.device,
        limits: this.limits,
        evictedSoFar: this.evicted,
      },
      `live view: too many devices not in the registry (${scope === 'school' ? 'in this school' : 'in all'}): the least recently seen is evicted (logged at most once a minute; counted in cfm_api_live_unassigned_evicted)`,
    );
  }

  /** Whether an MQTT broker is configured at all (tests and report-only deployments run without). */
  get configured(): boolean {
    return this.config !== undefined;
  }

  get connected(): boolean {
    return this.session?.connected ?? false;
  }

  /** `retained`: a stored status replayed on subscribing — a state, not a change happening now. */
  handle(topic: string, payload: Buffer, retained = false): void {
    const t = parseTopic(topic);
    if (!t.ok) return;
    const atMs = this.now();
    const key = entityKey(t.school, t.device);
    const registered = this.registry()?.device(t.school, t.device) !== undefined;
    // Any message of a held unregistered device marks it seen; only a status or an uplink reading adds one.
    if (!registered && this.places.has(key)) this.places.touch(key, t.school, t.device);
    const holds = () => registered || this.hold(key, t.school, t.device);
    if (t.channel === 'status') {
      if (payload.length === 0) {
        this.devices.delete(key); // a cleared retained status: the device was removed
        if (!this.uplinks.get(t.school)?.has(t.device)) this.places.delete(key);
        return;
      }
      const d = decodePayload('status', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      if (holds()) {
        const held = this.devices.get(key);
        const entry: DeviceLive = {
          school: t.school,
          device: t.device,
          kind: d.message.kind,
          state: d.message.state,
          sinceMs: sinceOf(d.message, atMs, retained, held),
          announced: {
            region: d.message.region ?? null,
            classroom: d.message.classroom ?? null,
            kind: d.message.kind,
          },
          heartbeatS: d.message.heartbeatS ?? null,
        };
        this.devices.set(key, entry);
        if (held?.state !== entry.state) this.emit('device', entry);
      }
      this.emit('message', {
        channel: 'status',
        school: t.school,
        device: t.device,
        message: d.message,
        atMs,
        retained,
      });
    } else if (t.channel === 'iface') {
      const d = decodePayload('iface', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      this.emit('message', {
        channel: 'iface',
        school: t.school,
        device: t.device,
        message: d.message,
        atMs,
      });
      const up = d.message.ifaces.find((i) => i.uplink);
      if (!up) return;
      const live: UplinkLive = {
        school: t.school,
        device: t.device,
        ifname: up.name,
        inBps: up.inBps,
        outBps: up.outBps,
        speedMbps: up.speedMbps ?? null,
        operStatus: up.operStatus,
        tsMs: d.message.ts,
        receivedAtMs: atMs,
        state: up.operStatus === 'up' ? 'up' : 'down',
        stateSinceMs: Math.min(d.message.ts, atMs),
        // A reading proves the device answers (the poller's `recovered` comes with one, and may be lost).
        unreachableSinceMs: null,
      };
      if (atMs >= this.staleAtMs(live)) {
        live.state = 'stale'; // replayed from a spool, or the poller's clock is behind
        live.stateSinceMs = this.staleAtMs(live);
      }
      const held = this.uplinks.get(t.school)?.get(t.device);
      if (held?.state === live.state) live.stateSinceMs = held.stateSinceMs;
      if (holds()) {
        let school = this.uplinks.get(t.school);
        if (!school) {
          school = new Map();
          this.uplinks.set(t.school, school);
        }
        school.set(t.device, live);
      }
      this.emit('uplink', live);
    } else if (t.channel === 'probe') {
      const d = decodePayload('probe', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      // Held for the registered devices only (a probe adds no unregistered device to the view); a cycle older
      // than the one held (replayed from the poller's spool) does not replace it.
      const held = this.links.get(key);
      if (registered && (held === undefined || d.message.ts >= held.tsMs)) {
        const p = d.message;
        this.links.set(key, {
          school: t.school,
          device: t.device,
          method: p.method,
          sent: p.sent,
          received: p.received,
          lossPct: (100 * (p.sent - p.received)) / p.sent,
          rttMs: p.rttMs?.avg ?? null,
          jitterMs: p.jitterMs ?? null,
          tsMs: p.ts,
          receivedAtMs: atMs,
          intervalMs: this.cycleInterval(key, held, p.ts),
        });
      }
      this.emit('message', {
        channel: 'probe',
        school: t.school,
        device: t.device,
        message: d.message,
        atMs,
      });
    } else if (t.channel === 'event' || t.channel === 'telemetry') {
      const d = t.channel === 'event' ? decodePayload('event', payload) : decodePayload('telemetry', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      if (t.channel === 'event') this.unreachable(t.school, t.device, d.message as DeviceEvent, atMs);
      this.emit('message', {
        channel: t.channel,
        school: t.school,
        device: t.device,
        message: d.message,
        atMs,
      } as LiveMessage);
    }
  }
}

/**
 * Since when a device is in the state its status says (`DeviceLive.sinceMs`):
 * - a status replayed on (re)subscribing (`retained`) that repeats the state already held keeps the held time:
 *   a reconnect of the API's MQTT session is not a change in the classroom;
 * - online: the birth's `ts`, the time the device connected (by its clock);
 * - offline by a last will (`reason: will`, or no reason): when the will arrived. The broker publishes the
 *   payload the device registered when it *connected* (MQTT-3.1.2-8), so its `ts` is the start of the connection
 *   that just ended — the cut at 08:31:34 of a connection made at 08:30:20 would read 08:30:20. MQTT gives a
 *   message no broker timestamp, and the broker publishes the will as the connection dies (keepalive × 1.5 at
 *   the latest, MQTT-3.1.2-24), so the arrival is the best time there is. A will replayed on subscribing arrived
 *   earlier, at a time nobody kept: null (unknown);
 * - offline otherwise (`shutdown` before a clean stop, a poller declaring its router unreachable): the status's
 *   own `ts`, the moment its sender saw the change.
 */
export function sinceOf(
  s: DeviceStatus,
  atMs: number,
  retained: boolean,
  held: DeviceLive | undefined,
): number | null {
  if (retained && held?.state === s.state) return held.sinceMs;
  if (s.state === 'online') return s.ts;
  if ((s.reason ?? 'will') === 'will') return retained ? null : atMs;
  return s.ts;
}

/** School `school`'s last probe cycle: of its uplink device, else the newest of a device that carries it; or null. */
export function schoolLink(live: LiveState, reg: RegistryIndex, school: string): LinkLive | null {
  const s = reg.schools.get(school);
  if (!s) return null;
  if (s.uplinkDevice !== undefined) return live.link(school, s.uplinkDevice) ?? null;
  let best: LinkLive | null = null;
  for (const d of reg.devicesBySchool.get(school) ?? []) {
    const l = live.link(school, d.id);
    if (l && carriesUplink(reg, school, d.id) && (best === null || l.tsMs > best.tsMs)) best = l;
  }
  return best;
}

/** School `school`'s live uplink: the newest reading of a device that carries it (`carriesUplink`), or null. */
export function schoolUplink(live: LiveState, reg: RegistryIndex, school: string): UplinkLive | null {
  const s = reg.schools.get(school);
  if (!s) return null;
  if (s.uplinkDevice !== undefined) return live.uplink(school, s.uplinkDevice) ?? null;
  let best: UplinkLive | null = null;
  for (const [device, u] of live.uplinks.get(school) ?? [])
    if (carriesUplink(reg, school, device) && (best === null || u.tsMs > best.tsMs)) best = u;
  return best;
}

/** The fields a device's announcement may disagree with the registry on. */
export const MISMATCH_FIELDS = ['region', 'classroom', 'kind'] as const;
export type MismatchField = (typeof MISMATCH_FIELDS)[number];

/**
 * Where what a registered device announced differs from the registry. An absent announcement is no
 * disagreement; a region must be the school's full region path (what the scope filters match on).
 */
export function registryMismatch(
  reg: RegistryIndex,
  registered: { school: string; classroom?: string | undefined; kind: string },
  announced: DeviceLive['announced'],
): MismatchField[] {
  const out: MismatchField[] = [];
  if (announced.region !== null && announced.region !== reg.schoolPath(registered.school)) out.push('region');
  if (announced.classroom !== null && announced.classroom !== (registered.classroom ?? null))
    out.push('classroom');
  if (announced.kind !== registered.kind) out.push('kind');
  return out;
}
