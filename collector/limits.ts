import { z } from 'zod';

/**
 * Bounds per device. Whatever a device (or a poller, or anyone holding a device credential) sends, what it can
 * cost is bounded: the time range it writes into, the series it creates, the events it makes. Every option names
 * its default and the failure it prevents; every hit is counted by reason (collector.ts) and logged at most
 * once per device (per window for the flap guard).
 */
export const limitsConfigSchema = z
  .strictObject({
    maxPastS: z
      .number()
      .int()
      .min(60)
      .default(14 * 86_400)
      .describe(
        'Readings (telemetry, iface, probe, event) dated more than this before now are rejected (`too_old`). Default 14 days: the agent spool (`agent.spool.maxBytes`, 64 MiB) holds about 12 days of readings at the default 10 s interval, so a replay after an outage is still stored; raise it with the spool or the interval. Prevents a device with a dead RTC battery or a forged `ts` from writing into old InfluxDB shards (one device created 60 shards with 61 messages) and from changing days already rolled up and signed.',
      ),
    maxFutureS: z
      .number()
      .int()
      .min(1)
      .default(300)
      .describe(
        'Messages dated more than this after now are rejected (`in_future`), statuses included. Default 5 min: clock drift of a PC that syncs its time. Prevents a reading dated 2099 from being stored, creating shards and being rolled up as "use" on that day.',
      ),
    maxNicNamesPerDevice: z
      .number()
      .int()
      .min(1)
      .default(16)
      .describe(
        'Distinct NIC names (the `nic` tag) a device may report over the life of the process; entries with further names are dropped (`name_limit`), the rest of the reading is stored. Default 16 (a PC has a handful). Prevents invented names from creating series without end (20 messages created 643 series; one device could reach the 1,000,000-series limit of InfluxDB in 26 min).',
      ),
    maxIfNamesPerDevice: z
      .number()
      .int()
      .min(1)
      .default(1_024)
      .describe(
        'Distinct interface names (the `ifname` tag) a router or switch may report over the life of the process; further interfaces are dropped (`name_limit`). Default 1,024 (a chassis switch). Prevents series growth from invented or churning interface names.',
      ),
    maxEventSubjectsPerDevice: z
      .number()
      .int()
      .min(1)
      .default(64)
      .describe(
        'Distinct event subjects (the `subject` tag) a device may use over the life of the process; events with further subjects are dropped (`name_limit`). Default 64 (an agent uses about ten). Prevents series growth from invented subjects.',
      ),
    maxNamesPerUnassignedDevice: z
      .number()
      .int()
      .min(0)
      .default(16)
      .describe(
        'Distinct NIC, interface and event-subject names together that a device not in the registry may report; further entries are dropped (`name_limit`) until it is registered, when the per-device bounds above apply. Default 16: enough to see what an unregistered device is, while `maxUnassignedDevices` × 16 bounds the series every unregistered device together can create (a poller inventing ids and interface names reached 100,000 series per school).',
      ),
    maxUnassignedPerSchool: z
      .number()
      .int()
      .min(0)
      .default(64)
      .describe(
        'Devices not in the registry tracked per school (stored with region `unassigned` so they can be found and registered); messages of further unregistered devices of that school are rejected (`unassigned_limit`) until some are registered or idle for `unassignedIdleS`. Default 64. Prevents a flood of invented device ids from growing memory and series without end.',
      ),
    unassignedIdleS: z
      .number()
      .int()
      .min(60)
      .default(86_400)
      .describe(
        'An unregistered device silent this long gives its place back when its school (or the total) is full, so devices tried once during an installation, or ids a hostile sender invented last week, do not lock a school out until the collector restarts. Default 1 day. Places are searched at most once a minute while full, and whenever the registry changes.',
      ),
    maxUnassignedDevices: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .describe(
        'Devices not in the registry tracked in all (any school, known or not); beyond, `unassigned_limit`. Default 10,000 (a few hundred schools installing before their devices are imported; some 80,000 series). Bounds memory and series when one credential may publish for many schools (a poller, a broker without per-school ACL).',
      ),
    maxStatusChangesPerMin: z
      .number()
      .int()
      .min(1)
      .default(20)
      .describe(
        'Flap guard: `status_change` events written per device in any 60 s; further transitions still update presence (state and `presence` points) but write no event (`flap_limit`). Default 20. Prevents a flapping or hostile device from flooding the event log (2,000 statuses wrote 368 events); alerting reads statuses from MQTT and has its own hold times.',
      ),
  })
  .prefault({})
  .describe('Bounds per device: what one sender can cost. Each hit is counted by reason.');
export type LimitsConfig = z.infer<typeof limitsConfigSchema>;

/** Reasons a whole message is rejected by a bound (beside the validation reasons). */
export type LimitRejectReason = 'too_old' | 'in_future' | 'unassigned_limit' | 'not_network_device';
/** Reasons part of an accepted message is dropped. */
export type LimitDropReason = 'name_limit' | 'flap_limit' | 'activity_invalid';
/** Tags whose distinct values per device are bounded. */
export type NamedTag = 'nic' | 'ifname' | 'subject';

const FLAP_WINDOW_MS = 60_000;
/** A flapping device is logged at most this often. */
const FLAP_LOG_EVERY_MS = 600_000;

/** What the collector remembers per device for its bounds. Created on the first accepted message. */
export class DeviceBounds {
  private readonly names: Partial<Record<NamedTag, Set<string>>> = {};
  /** Names remembered over all tags. */
  private nameCount = 0;
  /** Times of the status_change events written in the last window, oldest first (at most the limit). */
  private readonly changes: number[] = [];
  /** What has already been logged for this device (once per device). */
  readonly logged = new Set<string>();
  private flapLoggedAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly limits: LimitsConfig) {}

  private max(tag: NamedTag): number {
    const l = this.limits;
    return tag === 'nic'
      ? l.maxNicNamesPerDevice
      : tag === 'ifname'
        ? l.maxIfNamesPerDevice
        : l.maxEventSubjectsPerDevice;
  }

  /**
   * Whether a value of a bounded tag may be stored: one already seen, or a new one while there is room (it is
   * then remembered). A device not in the registry has one small budget for all its names together
   * (`maxNamesPerUnassignedDevice`); once registered, the per-tag bounds apply (names already seen count).
   */
  admitName(tag: NamedTag, name: string, registered: boolean): boolean {
    let seen = this.names[tag];
    if (!seen) {
      seen = new Set();
      this.names[tag] = seen;
    }
    if (seen.has(name)) return true;
    if (seen.size >= this.max(tag)) return false;
    if (!registered && this.nameCount >= this.limits.maxNamesPerUnassignedDevice) return false;
    seen.add(name);
    this.nameCount++;
    return true;
  }

  /** Whether a status_change event may be written now (and counts it if so): a sliding 60 s window. */
  admitStatusChange(nowMs: number): boolean {
    const c = this.changes;
    while (c.length && c[0]! <= nowMs - FLAP_WINDOW_MS) c.shift();
    if (c.length >= this.limits.maxStatusChangesPerMin) return false;
    c.push(nowMs);
    return true;
  }

  /** Whether to log a suppressed status change now (at most every 10 min per device). */
  logFlap(nowMs: number): boolean {
    if (nowMs - this.flapLoggedAtMs < FLAP_LOG_EVERY_MS) return false;
    this.flapLoggedAtMs = nowMs;
    return true;
  }

  /** True the first time `what` is asked for this device: for log lines written once per device. */
  once(what: string): boolean {
    if (this.logged.has(what)) return false;
    this.logged.add(what);
    return true;
  }
}

/** `too_old` / `in_future` for a timestamp outside [now − maxPastS, now + maxFutureS], else undefined. */
export function timeVerdict(
  tsMs: number,
  nowMs: number,
  limits: LimitsConfig,
  checkPast: boolean,
): 'too_old' | 'in_future' | undefined {
  if (tsMs > nowMs + limits.maxFutureS * 1000) return 'in_future';
  if (checkPast && tsMs < nowMs - limits.maxPastS * 1000) return 'too_old';
  return undefined;
}
