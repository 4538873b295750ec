import { entityKey } from '../common/registry/key.js';
import type { DeviceInfo } from './points.js';

/**
 * Who is online. A device is online from its birth (retained `status: online`) or any message, and offline on
 * its last will or clean shutdown (`status: offline`), or when nothing came for `offlineFactor` × its
 * heartbeat (the agent's promise in `heartbeatS`, else the default) — which covers a collector that missed the
 * will, and devices behind pollers that have no will of their own.
 *
 * A live status message that changes the known state (or is the first word of a device) is a transition.
 * State learned otherwise — a retained status replayed on subscribe, or the first reading of a device the
 * collector had not seen since it started — is `quiet`: worth a presence point, not an event, because nothing
 * changed in the classroom.
 */
export type PresenceReason = 'birth' | 'will' | 'shutdown' | 'timeout' | 'message' | 'first_seen';

export interface DeviceState extends DeviceInfo {
  school: string;
  device: string;
  online: boolean;
  lastSeenMs: number;
  heartbeatS?: number | undefined;
  since: number;
}

export interface Transition {
  state: DeviceState;
  online: boolean;
  reason: PresenceReason;
  ts: number;
  quiet?: boolean;
}

export class PresenceTracker {
  private readonly devices = new Map<string, DeviceState>();

  constructor(
    private readonly defaultHeartbeatS: number,
    private readonly offlineFactor: number,
  ) {}

  get(school: string, device: string): DeviceState | undefined {
    return this.devices.get(entityKey(school, device));
  }

  all(): IterableIterator<DeviceState> {
    return this.devices.values();
  }

  counts(): { online: number; offline: number } {
    let online = 0;
    for (const d of this.devices.values()) if (d.online) online++;
    return { online, offline: this.devices.size - online };
  }

  private upsert(
    school: string,
    device: string,
    info: DeviceInfo,
    nowMs: number,
    key = entityKey(school, device),
  ): [DeviceState, boolean] {
    let s = this.devices.get(key);
    const isNew = !s;
    if (!s) {
      s = {
        school,
        device,
        kind: info.kind,
        classroom: info.classroom,
        region: info.region,
        online: false,
        lastSeenMs: nowMs,
        since: nowMs,
      };
      this.devices.set(key, s);
    } else {
      // The tags the collector decided for this message (the registry's, or unassigned): the latest win.
      s.kind = info.kind;
      s.classroom = info.classroom;
      s.region = info.region;
    }
    return [s, isNew];
  }

  /** A status message. `retained`: replayed by the broker on subscribe, so no transition is reported. */
  status(
    school: string,
    device: string,
    online: boolean,
    reason: 'birth' | 'will' | 'shutdown',
    info: DeviceInfo & { heartbeatS?: number | undefined },
    retained: boolean,
    nowMs: number,
  ): Transition | undefined {
    const [s, isNew] = this.upsert(school, device, info, nowMs);
    if (info.heartbeatS) s.heartbeatS = info.heartbeatS;
    if (online) s.lastSeenMs = nowMs;
    if (!isNew && s.online === online) return undefined;
    s.online = online;
    s.since = nowMs;
    return retained
      ? { state: s, online, reason: 'first_seen', ts: nowMs, quiet: true }
      : { state: s, online, reason, ts: nowMs };
  }

  /** Any other message from the device: it is alive. `key`: entityKey(school, device), when the caller has it. */
  seen(
    school: string,
    device: string,
    info: DeviceInfo,
    nowMs: number,
    key = entityKey(school, device),
  ): Transition | undefined {
    const [s, isNew] = this.upsert(school, device, info, nowMs, key);
    s.lastSeenMs = nowMs;
    if (s.online && !isNew) return undefined;
    s.online = true;
    s.since = nowMs;
    return isNew
      ? { state: s, online: true, reason: 'first_seen', ts: nowMs, quiet: true }
      : { state: s, online: true, reason: 'message', ts: nowMs };
  }

  /** Devices silent for longer than offlineFactor × heartbeat become offline. */
  sweep(nowMs: number): Transition[] {
    const out: Transition[] = [];
    for (const s of this.devices.values()) {
      if (!s.online) continue;
      const limitMs = this.offlineFactor * (s.heartbeatS ?? this.defaultHeartbeatS) * 1000;
      if (nowMs - s.lastSeenMs > limitMs) {
        s.online = false;
        s.since = nowMs;
        out.push({ state: s, online: false, reason: 'timeout', ts: nowMs });
      }
    }
    return out;
  }
}
