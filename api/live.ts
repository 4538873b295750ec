import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type MqttConfig, MqttSession } from '../common/mqtt.js';
import {
  type DeviceEvent,
  type DeviceStatus,
  decodePayload,
  type IfaceReadings,
  type Telemetry,
} from '../contracts/messages.js';
import { parseTopic, filters as topicFilters } from '../contracts/topics.js';

/**
 * Live fleet state from MQTT: every device's last status (births and wills are retained, so a fresh API sees
 * the whole fleet at once) and every school's latest uplink rate from the pollers' `iface` readings. The
 * collector stores the same messages; this is the in-memory "now" the API serves and streams.
 */
export interface DeviceLive {
  school: string;
  kind: string;
  state: 'online' | 'offline';
  sinceMs: number;
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
  readonly devices = new Map<string, DeviceLive>();
  readonly uplinks = new Map<string, UplinkLive>();
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
      if (payload.length === 0) {
        this.devices.delete(t.device); // a cleared retained status: the device was removed
        return;
      }
      const d = decodePayload('status', payload);
      if (!d.ok) {
        this.rejected++;
        return;
      }
      this.devices.set(t.device, {
        school: t.school,
        kind: d.message.kind,
        state: d.message.state,
        sinceMs: d.message.ts,
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
      this.uplinks.set(t.school, live);
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
