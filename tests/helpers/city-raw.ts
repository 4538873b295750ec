import { eventPoint, presencePoints } from '../../collector/points.js';
import { localMidnightMs } from '../../common/calendar.js';
import { uplinkCapacity } from '../../common/figures/capacity.js';
import { RegistryIndex } from '../../common/registry/store.js';
import type { AnyPoint, PointOf } from '../../contracts/influx.js';
import type { DeviceEvent } from '../../contracts/messages.js';
import { type Registry, registrySchema } from '../../contracts/registry.js';
import { CITY, cityPoints, TEACHING_DAYS } from './city.js';

/**
 * The fixture city of city.ts as the collector would store it, for the dashboards: every raw point carries the
 * region path, classroom and kind from the registry (the collector takes them from the device's status and the
 * registry), uplink readings carry rates and error counters, and there are presence changes, events and alert
 * notifications. The readings city.ts hand-works are unchanged, so its rollups come out the same.
 *
 * Two devices more than city.ts, both in A's science lab (not a class, so 班班通 does not change): a projector
 * switched on every teaching day and never used (idle equipment; a filter warning on Saturday), and a student
 * PC (生机比 90 : 1).
 */
export const CITY_LAB: Registry = {
  ...CITY,
  devices: [
    ...CITY.devices,
    { id: 'pj-lab', school: 'A', classroom: 'A-lab', kind: 'projector', batch: '2021-西湖-03' },
    { id: 'spc-lab-01', school: 'A', classroom: 'A-lab', kind: 'student_pc' },
  ],
};

export const cityLabIndex = (): RegistryIndex => new RegistryIndex(registrySchema.parse(CITY_LAB));

const at = (date: string, hhmm: string) => Date.parse(`${date}T${hhmm}:00+08:00`);
const [THU, FRI, SAT] = TEACHING_DAYS;

/** city.ts's readings with registry tags, rates and counters, plus the lab devices, presence and events. */
export function cityRawPoints(): AnyPoint[] {
  const reg = cityLabIndex();
  const tagged = (p: AnyPoint): AnyPoint => {
    const t = p.tags as Record<string, string | undefined>;
    const school = t.school!;
    const device = reg.device(school, t.device ?? '');
    const tags: Record<string, string | undefined> = { ...t, region: reg.schoolPath(school) };
    if (device) {
      tags.kind = device.kind;
      if (device.classroom) tags.classroom = device.classroom;
    }
    return { ...p, tags } as AnyPoint;
  };
  const errorsPer10Min: Record<string, number> = { A: 0, B: 3, C: 1 };
  const t0 = at(THU, '00:00');
  const out: AnyPoint[] = cityPoints().map((p) => {
    const q = tagged(p);
    if (q.measurement === 'iface') {
      const f = q.fields;
      // util_*_pct is of the school's capacity (its contract, else the speed), as the collector stores it.
      const { capacityMbps } = uplinkCapacity(
        reg.schools.get(q.tags.school!)?.contractedMbps,
        Number(f.speed_mbps),
      );
      const mbps = capacityMbps ?? 0;
      const errors = Math.max(0, Math.floor((q.ts - t0) / 600_000)) * (errorsPer10Min[q.tags.school!] ?? 0);
      q.fields = {
        ...f,
        in_bps: (Number(f.util_in_pct) / 100) * mbps * 1e6,
        out_bps: (Number(f.util_out_pct) / 100) * mbps * 1e6,
        oper_status: f.oper_up === 1 ? 'up' : 'down',
        in_errors: errors,
        out_errors: Math.floor(errors / 3),
        in_discards: 0,
      };
    }
    if (q.measurement === 'display' && q.tags.device === 'pj-b1') {
      const faulty = Number(q.fields.error_count) > 0;
      q.fields = {
        ...q.fields,
        input: 'HDMI1',
        lamp_hours: 2950,
        temperature_c: 41.5,
        err_lamp: faulty ? 'warning' : 'ok',
        error_codes: faulty ? 'lamp' : '',
      };
    }
    if (q.measurement === 'host') q.fields = { ...q.fields, mem_used_pct: 41.5, uptime_s: 3600 };
    return q;
  });

  // Probes of each school's uplink device at each of its uplink readings (docs/links.md): B's link loses 3 % and
  // is slow, C's jitters; A is clean.
  const probeOf: Record<string, { loss: number; rtt: number; jitter: number }> = {
    A: { loss: 0, rtt: 12, jitter: 1.5 },
    B: { loss: 3, rtt: 180, jitter: 20 },
    C: { loss: 0, rtt: 40, jitter: 60 },
  };
  for (const p of [...out]) {
    if (p.measurement !== 'iface' || p.tags.uplink !== 'true') continue;
    const q = probeOf[p.tags.school!] ?? probeOf.A!;
    out.push({
      measurement: 'probe',
      tags: {
        region: p.tags.region,
        school: p.tags.school,
        device: p.tags.device,
        kind: p.tags.kind,
        method: 'icmp',
      },
      fields: {
        sent: 100,
        received: 100 - q.loss,
        loss_pct: q.loss,
        rtt_min_ms: q.rtt * 0.8,
        rtt_avg_ms: q.rtt,
        rtt_max_ms: q.rtt * 1.5,
        jitter_ms: q.jitter,
      },
      ts: p.ts,
    } as AnyPoint);
  }

  // Fixture device ids are unique across schools, so a test may name a device by its id alone.
  const byId = (device: string) => reg.data.devices.find((x) => x.id === device)!;
  const info = (device: string) => {
    const d = byId(device);
    return { kind: d.kind, classroom: d.classroom, region: reg.schoolPath(d.school) };
  };
  // The lab: a projector on but never in use, a student PC online on Thursday and Friday.
  for (const date of TEACHING_DAYS) {
    for (let m = 8 * 60 + 2.5; m < 9 * 60 + 30; m += 5) {
      const ts = localMidnightMs(date) + m * 60_000;
      const filter = date === SAT && m > 9 * 60;
      out.push({
        measurement: 'display',
        tags: {
          region: reg.schoolPath('A'),
          school: 'A',
          classroom: 'A-lab',
          device: 'pj-lab',
          kind: 'projector',
        },
        fields: {
          // On all day with nobody at it, as the collector judges a v2 reading (docs/usage.md).
          on: 1,
          in_use: 0,
          active: 0,
          teaching_app: 0,
          idle_s: 7_200,
          screen_on: 1,
          foreground: 'explorer.exe',
          use_basis: 'activity',
          power: 'on',
          input: 'HDMI2',
          lamp_hours: 1210,
          temperature_c: 39,
          error_count: filter ? 1 : 0,
          ...(filter ? { err_filter: 'warning', error_codes: 'filter' } : {}),
        },
        ts,
      });
      if (date !== SAT)
        out.push({
          measurement: 'host',
          tags: {
            region: reg.schoolPath('A'),
            school: 'A',
            classroom: 'A-lab',
            device: 'spc-lab-01',
            kind: 'student_pc',
          },
          fields: { cpu_pct: 30, mem_used_pct: 55, uptime_s: 1800 },
          ts,
        });
    }
  }
  // Presence as the collector writes it (each change also an event): on before class, off after it; B's
  // projector loses its connection during Thursday's second period and does not come back.
  const presence = (device: string, online: boolean, reason: string, ts: number) =>
    out.push(...presencePoints(byId(device).school, device, online, reason, ts, info(device)));
  for (const date of TEACHING_DAYS) {
    for (const device of ['pn-a1', 'pn-a2', 'pn-c1', 'pj-lab', 'pc-a1', 'spc-lab-01', 'pj-b1']) {
      if (device === 'pj-b1' && date !== THU) continue;
      if ((device === 'pc-a1' || device === 'spc-lab-01') && date === SAT) continue;
      presence(device, true, 'birth', at(date, '07:55'));
      if (device === 'pj-b1') presence(device, false, 'will', at(date, '09:20'));
      else presence(device, false, 'shutdown', at(date, '17:30'));
    }
  }
  const event = (device: string, e: Omit<DeviceEvent, 'v' | 'kind'>) => {
    const d = byId(device);
    out.push(eventPoint(d.school, device, { v: 1, kind: d.kind, ...e }, info(device)));
  };
  event('pj-b1', {
    ts: at(THU, '08:02'),
    type: 'fault',
    severity: 'warning',
    subject: 'lamp',
    message: '灯泡告警 lamp warning',
  });
  event('pj-b1', {
    ts: at(THU, '08:12'),
    type: 'fault_cleared',
    severity: 'info',
    subject: 'lamp',
    message: 'lamp ok',
  });
  event('pc-a1', {
    ts: at(FRI, '08:20'),
    type: 'reboot',
    severity: 'info',
    message: 'rebooted (uptime 40 s)',
    details: { uptimeS: 40 },
  });
  event('gw-c', {
    ts: at(THU, '08:50'),
    type: 'unreachable',
    severity: 'critical',
    subject: 'snmp',
    message: 'no SNMP answer for 60 s',
  });
  event('gw-c', {
    ts: at(THU, '09:31'),
    type: 'recovered',
    severity: 'info',
    subject: 'snmp',
    message: 'ok',
  });
  return out;
}

/**
 * Alert notifications as alerting/service.ts writes them: C's uplink down and resolved, B's uplink saturated
 * and resolved, a lamp fault resolved, a reboot (an instant alert: fired, never resolved) and B's projector
 * offline since Thursday (fired, reminded, still firing).
 */
export function cityAlertPoints(): PointOf<'alert'>[] {
  const reg = cityLabIndex();
  const out: PointOf<'alert'>[] = [];
  const alert = (
    rule: string,
    severity: string,
    school: string,
    device: string,
    subject: string | undefined,
    startMs: number,
    notes: { kind: 'firing' | 'reminder' | 'resolved'; ts: number }[],
    message: string,
  ) => {
    const id = `${rule}|${school}|${device}|${subject ?? ''}|${startMs}`;
    for (const n of notes)
      out.push({
        measurement: 'alert',
        ts: n.ts,
        tags: {
          region: reg.schoolPath(school),
          school,
          device,
          rule,
          severity,
          ...(subject ? { subject } : {}),
        },
        fields: {
          kind: n.kind,
          firing: n.kind === 'resolved' ? 0 : 1,
          alert_id: id,
          message,
          affected: rule === 'uplink_down' ? 1 : 0,
          ...(n.kind === 'resolved' ? { duration_s: (n.ts - startMs) / 1000 } : {}),
        },
      });
  };
  alert(
    'uplink_down',
    'critical',
    'C',
    'gw-c',
    'uplink',
    at(THU, '08:50'),
    [
      { kind: 'firing', ts: at(THU, '08:52') },
      { kind: 'resolved', ts: at(THU, '09:32') },
    ],
    '滨江区实验初中 上行链路中断 uplink down',
  );
  alert(
    'uplink_saturated',
    'warning',
    'B',
    'gw-b',
    'uplink',
    at(THU, '08:00'),
    [
      { kind: 'firing', ts: at(THU, '08:10') },
      { kind: 'resolved', ts: at(THU, '08:55') },
    ],
    '转塘教学点 上行拥塞 uplink ≥ 90 %',
  );
  alert(
    'display_fault',
    'warning',
    'B',
    'pj-b1',
    'lamp',
    at(THU, '08:02'),
    [
      { kind: 'firing', ts: at(THU, '08:04') },
      { kind: 'resolved', ts: at(THU, '08:14') },
    ],
    '复式班一 投影机灯泡告警 lamp warning',
  );
  alert(
    'device_rebooted',
    'info',
    'A',
    'pc-a1',
    undefined,
    at(FRI, '08:20'),
    [{ kind: 'firing', ts: at(FRI, '08:21') }],
    '一(1)班 教师机重启 rebooted',
  );
  alert(
    'device_offline',
    'critical',
    'B',
    'pj-b1',
    undefined,
    at(THU, '09:20'),
    [
      { kind: 'firing', ts: at(THU, '09:25') },
      { kind: 'reminder', ts: at(FRI, '08:05') },
    ],
    '复式班一 投影机离线 projector offline',
  );
  return out;
}
