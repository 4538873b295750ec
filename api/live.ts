import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type MqttConfig, MqttSession } from '../common/mqtt.js';
import { entityKey } from '../common/registry/key.js';
import type { RegistryIndex } from '../common/registry/store.js';
import {
  type DeviceEvent,
  type DeviceStatus,
  decodePayload,
  type IfaceReadings,
  type Telemetry,
} from '../contracts/messages.js';
import { parseTopic, filters as topicFilters } from '../contracts/topics.js';
import type { MISMATCH_FIELDS } from './schemas.js';

/**
 * Live fleet state from MQTT: every device's last status (births and wills are retained, so a fresh API sees
 * the whole fleet at once) and every school's latest uplink rate from the pollers' `iface` readings. The
 * collector stores the same messages; this is the in-memory "now" the API serves and streams.
 *
 * A device is (school, device) — the topic `cfm/v1/{school}/{device}/…`, which the broker ties to the
 * credential — never its id alone: ids are unique only within a school, so `wb-a1` of school B never changes
 * what is shown for `wb-a1` of school A. What a status *announces* (region, classroom, kind) is kept as said, so
 * the API can show where it disagrees with the registry; the registry, not the announcement, decides.
 */
export interface DeviceLive {
  school: string;
  device: string;
  /** The kind the device announced (the registry's kind wins for a registered device). */
  kind: string;
  state: 'online' | 'offline';
  sinceMs: number;
  /** What the last status announced; null where it said nothing. */
  announced: { region: string | null; classroom: string | null; kind: string };
}

export interface UplinkLive {
  school: string;
  device: string;
  ifname: string;
  inBps: number | null;
  outBps: number | null;
  speedMbps: number | null;
  operStatus: string;
  tsMs: number;
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
  | { channel: 'telemetry'; school: string; device: string; message: Telemetry; atMs: number };

type LiveEvents = { uplink: [UplinkLive]; message: [LiveMessage] };

export class LiveState extends EventEmitter<LiveEvents> {
  /** By `entityKey(school, device)`. */
  readonly devices = new Map<string, DeviceLive>();
  /** School → device → its latest uplink reading (which device carries a school's uplink: `carriesUplink`). */
  readonly uplinks = new Map<string, Map<string, UplinkLive>>();
  /** Messages that did not validate (counted, dropped). */
  rejected = 0;
  private session: MqttSession | undefined;
  private subscribed = false;
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly config: MqttConfig | undefined,
    private readonly log: Logger,
    /** Also subscribe to events and telemetry (the alert engine needs them). */
    private readonly all = false,
  ) {
    super();
    this.setMaxListeners(0); // one listener per open SSE stream
  }

  async start(): Promise<void> {
    if (!this.config) return;
    const session = new MqttSession(this.config, { log: this.log });
    this.session = session;
    const filters = this.all
      ? [
          topicFilters.all('status'),
          topicFilters.all('iface'),
          topicFilters.all('event'),
          topicFilters.all('telemetry'),
        ]
      : [topicFilters.all('status'), topicFilters.all('iface')];
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
    await this.session?.stop();
    this.session = undefined;
  }

  /** School `school`'s device `id` as it last reported, or undefined. */
  device(school: string, id: string): DeviceLive | undefined {
    return this.devices.get(entityKey(school, id));
  }

  /** The latest uplink reading of school `school`'s device `device`, or undefined. */
  uplink(school: string, device: string): UplinkLive | undefined {
    return this.uplinks.get(school)?.get(device);
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
    if (t.channel === 'status') {
      const key = entityKey(t.school, t.device);
      if (payload.length === 0) {
        this.devices.delete(key); // a cleared retained status: the device was removed
        return;
      }
      const d = decodePayload('status', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      this.devices.set(key, {
        school: t.school,
        device: t.device,
        kind: d.message.kind,
        state: d.message.state,
        sinceMs: d.message.ts,
        announced: {
          region: d.message.region ?? null,
          classroom: d.message.classroom ?? null,
          kind: d.message.kind,
        },
      });
      this.emit('message', {
        channel: 'status',
        school: t.school,
        device: t.device,
        message: d.message,
        atMs: Date.now(),
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
        atMs: Date.now(),
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
      };
      let school = this.uplinks.get(t.school);
      if (!school) {
        school = new Map();
        this.uplinks.set(t.school, school);
      }
      school.set(t.device, live);
      this.emit('uplink', live);
    } else if (t.channel === 'event' || t.channel === 'telemetry') {
      const d = t.channel === 'event' ? decodePayload('event', payload) : decodePayload('telemetry', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      this.emit('message', {
        channel: t.channel,
        school: t.school,
        device: t.device,
        message: d.message,
        atMs: Date.now(),
      } as LiveMessage);
    }
  }
}

/**
 * Whether `device` carries school `school`'s uplink: the school's registered `uplinkDevice`; for a school that
 * registers none, any registered router or switch of that school. An unregistered device, or another school's
 * device of the same id, never does — its readings must not make a school look down, busy or inhibited.
 */
export function carriesUplink(reg: RegistryIndex, school: string, device: string): boolean {
  const s = reg.schools.get(school);
  if (!s) return false;
  if (s.uplinkDevice !== undefined) return s.uplinkDevice === device;
  const d = reg.device(school, device);
  return d !== undefined && (d.kind === 'router' || d.kind === 'switch');
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
