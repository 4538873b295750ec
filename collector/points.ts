import { uplinkCapacity, utilisationPct } from '../common/figures/capacity.js';
import { DEFAULT_USAGE_JUDGE, type UsageJudge } from '../common/figures/usage.js';
import { type AnyPoint, COLLECTOR_EVENT_TYPES, type PointOf } from '../contracts/influx.js';
import type {
  DeviceEvent,
  DeviceKind,
  IfaceReading,
  IfaceReadings,
  ProbeResult,
  Telemetry,
} from '../contracts/messages.js';

/**
 * The tags of a device beyond the topic, as the collector decided them (attribution.ts): region path,
 * classroom and kind from the registry for a registered device; region `unassigned`, no classroom and the
 * payload's kind otherwise. The point builders below take every standard tag from here, never from the payload.
 */
export interface DeviceInfo {
  kind: DeviceKind;
  classroom?: string | undefined;
  region?: string | undefined;
  /** The school's contracted uplink Mbps, on the device that carries its uplink: the capacity of `uplink` interfaces. */
  uplinkContractMbps?: number | undefined;
}

/** A NIC reading of a telemetry message. */
type Nic = NonNullable<Telemetry['host']>['nics'][number];

type Std = { region?: string; school: string; classroom?: string; device: string; kind: string };
type Tags = Readonly<Record<string, string>>;

/**
 * A device's tags objects, built once and frozen: the standard tags and those of its NICs, displays and
 * interfaces. Frozen tags objects let toLine (common/storage/line-protocol.ts) find a series' escaped line prefix
 * by identity instead of building a key per point (issue #18). Rebuilt when the registry changes what the device
 * is (kind, classroom, region).
 */
interface DeviceTags {
  kind: string;
  classroom: string | undefined;
  region: string | undefined;
  std: Readonly<Std>;
  /** By NIC name, display source, `uplink flag + interface name`: bounded per device (MAX_SERIES_TAGS). */
  sub: Map<string, Tags>;
}

/** Devices whose tags are kept: beyond it the cache starts again (a larger fleet than a province's share). */
const MAX_DEVICES = 500_000;
/** Series tags kept per device (NIC, interface names are bounded lower by collector.limits). */
const MAX_SERIES_TAGS = 2_048;
const deviceTags = new Map<string, Map<string, DeviceTags>>();
let devicesKept = 0;

function tagsOf(school: string, device: string, info: DeviceInfo): DeviceTags {
  let bySchool = deviceTags.get(school);
  const d = bySchool?.get(device);
  if (d && d.kind === info.kind && d.classroom === info.classroom && d.region === info.region) return d;
  const t: Std = { school, device, kind: info.kind };
  if (info.region) t.region = info.region;
  if (info.classroom) t.classroom = info.classroom;
  const fresh: DeviceTags = {
    kind: info.kind,
    classroom: info.classroom,
    region: info.region,
    std: Object.freeze(t),
    sub: new Map(),
  };
  if (!d) {
    if (++devicesKept > MAX_DEVICES) {
      deviceTags.clear();
      devicesKept = 1;
      bySchool = undefined;
    }
    if (!bySchool) {
      bySchool = new Map();
      deviceTags.set(school, bySchool);
    }
  }
  bySchool!.set(device, fresh);
  return fresh;
}

function std(school: string, device: string, info: DeviceInfo): Std {
  return tagsOf(school, device, info).std;
}

/** The device's standard tags plus `extra`, one frozen object per `key` (see DeviceTags). */
function seriesTags(d: DeviceTags, key: string, extra: () => Record<string, string>): Tags {
  const known = d.sub.get(key);
  if (known) return known;
  const t = { ...d.std, ...extra() };
  if (d.sub.size >= MAX_SERIES_TAGS) return t; // not cached: built per point, as before
  Object.freeze(t);
  d.sub.set(key, t);
  return t;
}

const bit = (b: boolean | undefined) => (b === undefined ? undefined : b ? 1 : 0);

/**
 * `nics`: the NICs to write (those within the device's name bound); default all. `judge`: the deployment's
 * rule of use (`collector.usage`, common/figures/usage.ts), which decides `on`, `in_use` and its parts.
 */
export function telemetryPoints(
  school: string,
  device: string,
  m: Telemetry,
  info: DeviceInfo,
  nics: readonly Nic[] = m.host?.nics ?? [],
  judge: UsageJudge = DEFAULT_USAGE_JUDGE,
): AnyPoint[] {
  const dt = tagsOf(school, device, info);
  const tags = dt.std;
  const out: AnyPoint[] = [];
  // spoolDropped (the agent's own loss count) rides on the host point, with or without host health.
  if (m.host || m.spoolDropped !== undefined) {
    const h = m.host;
    out.push({
      measurement: 'host',
      tags,
      fields: {
        uptime_s: h?.uptimeS,
        cpu_pct: h?.cpuPct,
        mem_used_pct: h?.memUsedPct,
        mem_total_bytes: h?.memTotalBytes,
        ...(m.spoolDropped !== undefined && { spool_dropped: m.spoolDropped }),
      },
      ts: m.ts,
    });
    for (const n of nics) {
      out.push({
        measurement: 'nic',
        tags: seriesTags(dt, `n${n.name}`, () => ({ nic: n.name })) as PointOf<'nic'>['tags'],
        fields: {
          // The validated decimal strings, as iface counters: toLine writes them without a BigInt per value.
          rx_bytes: n.rxBytes,
          tx_bytes: n.txBytes,
          rx_bps: n.rxBps,
          tx_bps: n.txBps,
        },
        ts: m.ts,
      });
    }
  }
  // A display point whenever the reading says anything of a display or of use: a v2 teacher PC without a
  // display source still gets one, its `on` from its screen (docs/usage.md, "The rule").
  const use = judge.judge(m, info.kind);
  if (use) {
    const d = m.display;
    const e = d?.errors;
    let errorCount: number | undefined;
    if (e) {
      errorCount = 0;
      for (const k in e) if (e[k as keyof typeof e] === 'error') errorCount++;
    }
    const a = use.basis === 'activity' ? m.activity : undefined;
    const p: PointOf<'display'> = {
      measurement: 'display',
      tags: d
        ? (seriesTags(dt, `d${d.source}`, () => ({ source: d.source })) as PointOf<'display'>['tags'])
        : tags,
      fields: {
        power: d?.power,
        on: bit(use.on),
        in_use: bit(use.inUse),
        active: bit(use.active),
        teaching_app: bit(use.teachingApp),
        idle_s: a?.idleS,
        screen_on: bit(a?.screenOn),
        // Only a teaching application's name is kept: any other foreground (a chat program, a file name a tool
        // let through) says what a teacher does, not whether the room is used (docs/usage.md, "Trust"). A field,
        // never a tag: no name a device sends adds a series.
        foreground: judge.isTeachingApp(a?.foreground) ? a?.foreground : undefined,
        use_basis: use.basis,
        input: d?.input,
        touch_ok: bit(d?.touchOk),
        temperature_c: d?.temperatureC,
        lamp_hours: d?.lampHours,
        err_fan: e?.fan,
        err_lamp: e?.lamp,
        err_temperature: e?.temperature,
        err_cover: e?.cover,
        err_filter: e?.filter,
        err_other: e?.other,
        error_count: errorCount,
        error_codes: d?.errorCodes?.length ? d.errorCodes.join(',') : undefined,
      },
      ts: m.ts,
    };
    out.push(p);
  }
  return out;
}

/** `ifaces`: the interfaces to write (those within the device's name bound); `iface_count` is what the poll saw. */
export function ifacePoints(
  school: string,
  device: string,
  m: IfaceReadings,
  info: DeviceInfo,
  ifaces: readonly IfaceReading[] = m.ifaces,
): AnyPoint[] {
  const dt = tagsOf(school, device, info);
  const tags = dt.std;
  const out: AnyPoint[] = [
    {
      measurement: 'snmp',
      tags,
      fields: { sys_uptime_s: m.sysUpTimeTicks / 100, poll_ms: m.pollMs, iface_count: m.ifaces.length },
      ts: m.ts,
    },
  ];
  for (const i of ifaces) {
    // The uplink's utilisation is of the school's capacity (contract, else speed: common/figures/capacity.ts).
    const { capacityMbps } = i.uplink
      ? uplinkCapacity(info.uplinkContractMbps, i.speedMbps)
      : { capacityMbps: i.speedMbps || null };
    const util = (bps: number | null) => utilisationPct(bps, capacityMbps);
    out.push({
      measurement: 'iface',
      tags: seriesTags(dt, `${i.uplink ? 'u' : 'i'}${i.name}`, () => ({
        ifname: i.name,
        uplink: i.uplink ? 'true' : 'false',
      })) as PointOf<'iface'>['tags'],
      fields: {
        in_octets: i.inOctets,
        out_octets: i.outOctets,
        in_bps: i.inBps ?? undefined,
        out_bps: i.outBps ?? undefined,
        util_in_pct: util(i.inBps),
        util_out_pct: util(i.outBps),
        speed_mbps: i.speedMbps,
        oper_up: i.operStatus === 'up' ? 1 : 0,
        oper_status: i.operStatus,
        in_errors: i.inErrors,
        out_errors: i.outErrors,
        in_discards: i.inDiscards,
        alias: i.alias,
      },
      ts: m.ts,
    });
  }
  return out;
}

/** One probe cycle (schema-checked: received ≤ sent, rttMs null iff nothing answered, min ≤ avg ≤ max). */
export function probePoint(school: string, device: string, m: ProbeResult, info: DeviceInfo): AnyPoint {
  return {
    measurement: 'probe',
    tags: { ...std(school, device, info), method: m.method },
    fields: {
      sent: m.sent,
      received: m.received,
      loss_pct: (100 * (m.sent - m.received)) / m.sent,
      rtt_min_ms: m.rttMs?.min,
      rtt_avg_ms: m.rttMs?.avg,
      rtt_max_ms: m.rttMs?.max,
      jitter_ms: m.jitterMs ?? undefined,
    },
    ts: m.ts,
  };
}

export function eventPoint(school: string, device: string, m: DeviceEvent, info: DeviceInfo): AnyPoint {
  return {
    measurement: 'event',
    tags: { ...std(school, device, info), type: m.type, severity: m.severity, subject: m.subject },
    fields: { message: m.message, details: m.details ? JSON.stringify(m.details) : undefined },
    ts: m.ts,
  };
}

export function presencePoints(
  school: string,
  device: string,
  online: boolean,
  reason: string,
  ts: number,
  info: DeviceInfo,
): AnyPoint[] {
  const tags = std(school, device, info);
  return [
    { measurement: 'presence', tags, fields: { online: online ? 1 : 0, reason }, ts },
    {
      measurement: 'event',
      tags: {
        ...tags,
        type: COLLECTOR_EVENT_TYPES.statusChange,
        severity: online ? 'info' : 'warning',
        subject: 'presence',
      },
      fields: { message: online ? 'online' : `offline (${reason})` },
      ts,
    },
  ];
}

/**
 * A registered device announced `announced` for `field` where the registry says `registered`: one event
 * (subject = the field), at the collector's time, under the registry's tags.
 */
export function mismatchPoint(
  school: string,
  device: string,
  info: DeviceInfo,
  field: 'region' | 'classroom' | 'kind',
  announced: string,
  registered: string | undefined,
  ts: number,
): AnyPoint {
  return {
    measurement: 'event',
    tags: {
      ...std(school, device, info),
      type: COLLECTOR_EVENT_TYPES.registryMismatch,
      severity: 'warning',
      subject: field,
    },
    fields: {
      message: `announces ${field} ${announced}, registered ${registered ?? '(none)'}`,
      details: JSON.stringify({ field, announced, registered: registered ?? null }),
    },
    ts,
  };
}
