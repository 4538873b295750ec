import type { AnyPoint, PointOf } from '../contracts/influx.js';
import type { DeviceEvent, DeviceKind, IfaceReadings, Telemetry } from '../contracts/messages.js';

/** What the collector knows about a device beyond the topic: from its status (birth) and later the registry. */
export interface DeviceInfo {
  kind: DeviceKind;
  classroom?: string | undefined;
  region?: string | undefined;
}

type Std = { region?: string; school: string; classroom?: string; device: string; kind: string };

function std(
  school: string,
  device: string,
  info: DeviceInfo,
  kind = info.kind,
  classroom = info.classroom,
): Std {
  const t: Std = { school, device, kind };
  if (info.region) t.region = info.region;
  if (classroom) t.classroom = classroom;
  return t;
}

const bit = (b: boolean | undefined) => (b === undefined ? undefined : b ? 1 : 0);

export function telemetryPoints(school: string, device: string, m: Telemetry, info: DeviceInfo): AnyPoint[] {
  const tags = std(school, device, info, m.kind, m.classroom ?? info.classroom);
  const out: AnyPoint[] = [];
  if (m.host) {
    const h = m.host;
    out.push({
      measurement: 'host',
      tags,
      fields: {
        uptime_s: h.uptimeS,
        cpu_pct: h.cpuPct,
        mem_used_pct: h.memUsedPct,
        mem_total_bytes: h.memTotalBytes,
      },
      ts: m.ts,
    });
    for (const n of h.nics) {
      out.push({
        measurement: 'nic',
        tags: { ...tags, nic: n.name },
        fields: {
          rx_bytes: BigInt(n.rxBytes),
          tx_bytes: BigInt(n.txBytes),
          rx_bps: n.rxBps,
          tx_bps: n.txBps,
        },
        ts: m.ts,
      });
    }
  }
  if (m.display || m.inUse !== undefined) {
    const d = m.display;
    const e = d?.errors;
    let errorCount: number | undefined;
    if (e) {
      errorCount = 0;
      for (const k in e) if (e[k as keyof typeof e] === 'error') errorCount++;
    }
    const p: PointOf<'display'> = {
      measurement: 'display',
      tags: d ? { ...tags, source: d.source } : tags,
      fields: {
        power: d?.power,
        on: d ? bit(d.power === 'on' || d.power === 'warming') : undefined,
        in_use: bit(m.inUse),
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

export function ifacePoints(school: string, device: string, m: IfaceReadings, info: DeviceInfo): AnyPoint[] {
  const tags = std(school, device, info, m.kind);
  const out: AnyPoint[] = [
    {
      measurement: 'snmp',
      tags,
      fields: { sys_uptime_s: m.sysUpTimeTicks / 100, poll_ms: m.pollMs, iface_count: m.ifaces.length },
      ts: m.ts,
    },
  ];
  for (const i of m.ifaces) {
    const speedBps = i.speedMbps ? i.speedMbps * 1e6 : undefined;
    const util = (bps: number | null) => (bps !== null && speedBps ? (bps / speedBps) * 100 : undefined);
    out.push({
      measurement: 'iface',
      tags: { ...tags, ifname: i.name, uplink: i.uplink ? 'true' : 'false' },
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

export function eventPoint(school: string, device: string, m: DeviceEvent, info: DeviceInfo): AnyPoint {
  return {
    measurement: 'event',
    tags: { ...std(school, device, info, m.kind), type: m.type, severity: m.severity, subject: m.subject },
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
      tags: { ...tags, type: 'status_change', severity: online ? 'info' : 'warning', subject: 'presence' },
      fields: { message: online ? 'online' : `offline (${reason})` },
      ts,
    },
  ];
}
