import { uplinkCapacity, utilisationPct } from '../common/figures/capacity.js';
import type { LiveMessage } from '../common/live.js';
import { entityKey } from '../common/registry/key.js';
import { carriesUplink, type RegistryIndex } from '../common/registry/store.js';
import { ENUM_LABELS } from '../contracts/registry.js';
import type { Signal } from './engine.js';
import type { Rule, RuleName } from './rules.js';

/** Display fault subjects: the agent's PJLink error parts and the telemetry checks. */
const FAULT_SUBJECTS = new Set([
  'fan',
  'lamp',
  'temperature',
  'cover',
  'filter',
  'other',
  'display',
  'touch',
  'lamp_hours',
  'temperature_c',
]);

const isNetwork = (kind: string) => kind === 'router' || kind === 'switch' || kind === 'ap';

/**
 * What live messages mean for the alert engine: each message in, the engine signals it implies out — no I/O,
 * no clock but the messages' own, so every case is a row of a table (tests/alerting/signals.test.ts).
 *
 * It remembers what a single message cannot say: which device of a school without a registered uplink device
 * carries its uplink, whether that uplink is down over SNMP and/or by its interface status, the newest
 * telemetry timestamp per device (replays are older) and when each connected device last reported (data gaps).
 *
 * Identity: a device is (school, device). A school the registry does not know has no calendar and no names,
 * and a device its school does not register is nobody's (listed by `GET /v1/devices/unassigned`): neither
 * raises anything, nor stands for another school's device of the same id.
 */
export class Signals {
  /** Per school without a registered uplink device: its registered router/switch carrying the uplink. */
  private readonly uplinkDevice = new Map<string, string>();
  /** Per `entityKey(school, device)`: the newest telemetry timestamp seen. */
  private readonly newestTs = new Map<string, number>();
  /**
   * Per school: the uplink is unreachable over SNMP, and/or its interface is not up; whether its uplink device
   * is probed, and whether its last probe cycle went unanswered (docs/links.md).
   */
  private readonly uplinkFlags = new Map<string, UplinkFlags>();
  /** Per `entityKey(school, device)`: last telemetry (ms) and its promised heartbeat. */
  private readonly lastSeen = new Map<
    string,
    { school: string; device: string; atMs: number; heartbeatS: number }
  >();

  constructor(private readonly rules: Record<RuleName, Rule>) {}

  /** The signals one live message implies (none for what the registry does not know). */
  from(m: LiveMessage, reg: RegistryIndex): Signal[] {
    if (!reg.schools.has(m.school)) return [];
    const registered = reg.device(m.school, m.device);
    if (!registered) return [];
    const out: Signal[] = [];
    switch (m.channel) {
      case 'status':
        // Routers are judged by SNMP reachability, not by the poller's birth; the registry says what it is.
        if (!isNetwork(registered.kind)) this.status(m, out);
        break;
      case 'iface':
        this.iface(m, reg, out);
        break;
      case 'event':
        this.event(m, reg, registered.kind, out);
        break;
      case 'telemetry':
        this.telemetry(m, out);
        break;
      case 'probe':
        this.probe(m, reg, out);
        break;
    }
    return out;
  }

  /**
   * A probe cycle of the school's uplink device: whether the link answers — which decides, with SNMP, between
   * `uplink_down` and `management_down` — and, when it answers, its quality against `link_quality_low`.
   */
  private probe(m: Extract<LiveMessage, { channel: 'probe' }>, reg: RegistryIndex, out: Signal[]): void {
    if (!carriesUplink(reg, m.school, m.device)) return;
    const p = m.message;
    const answered = p.received > 0;
    const f = this.flags(m.school);
    // A cycle replayed from the poller's spool after an outage is old news: it neither opens nor closes anything.
    if (p.ts < f.probeTs || m.atMs - p.ts > PROBE_FRESH_MS) return;
    f.probeTs = p.ts;
    f.probed = true;
    f.probeAtMs = m.atMs;
    f.probeFailing = !answered;
    this.uplinkSignals(m.school, m.atMs, answered ? '' : `出口探测无应答（${p.sent} 个探测包全部丢失）`, out);
    const r = this.rules.link_quality_low;
    const loss = (100 * (p.sent - p.received)) / p.sent;
    const rtt = p.rttMs?.avg ?? 0;
    const jitter = p.jitterMs ?? 0;
    const bad =
      answered && (loss > (r.maxLossPct ?? 1) || rtt > (r.maxRttMs ?? 200) || jitter > (r.maxJitterMs ?? 50));
    out.push(
      cond(
        'link_quality_low',
        m.school,
        m.device,
        undefined,
        bad,
        m.atMs,
        bad
          ? `出口链路丢包 ${loss.toFixed(1)} %，时延 ${rtt.toFixed(0)} ms，抖动 ${jitter.toFixed(0)} ms（阈值 ${r.maxLossPct ?? 1} % / ${r.maxRttMs ?? 200} ms / ${r.maxJitterMs ?? 50} ms）`
          : undefined,
      ),
    );
  }

  /** Telemetry silence from a device that is still connected: `gapFactor` heartbeats without a reading. */
  gaps(now: number): Signal[] {
    const factor = this.rules.data_gap.gapFactor ?? 5;
    const out: Signal[] = [];
    for (const s of this.lastSeen.values())
      if (now - s.atMs > factor * s.heartbeatS * 1000)
        out.push(
          cond(
            'data_gap',
            s.school,
            s.device,
            undefined,
            true,
            now,
            `${Math.round((now - s.atMs) / 1000)} 秒没有数据`,
          ),
        );
    return out;
  }

  private status(m: Extract<LiveMessage, { channel: 'status' }>, out: Signal[]): void {
    const key = entityKey(m.school, m.device);
    const offline = m.message.state === 'offline';
    if (offline) {
      // Whatever the reason, a device that is gone has no "missing data" of its own to report.
      this.lastSeen.delete(key);
      out.push(cond('data_gap', m.school, m.device, undefined, false, m.atMs));
    }
    // A clean shutdown is a teacher switching off; a replayed (retained) status is an old state, not news.
    if (offline && m.message.reason === 'shutdown') {
      out.push(cond('device_offline', m.school, m.device, undefined, false, m.atMs));
      return;
    }
    if (offline && m.retained) return;
    out.push(
      cond(
        'device_offline',
        m.school,
        m.device,
        undefined,
        offline,
        m.atMs,
        offline ? `连接意外断开（MQTT 遗嘱 ${m.message.reason ?? 'will'}）` : undefined,
      ),
    );
    if (!offline)
      this.lastSeen.set(key, {
        school: m.school,
        device: m.device,
        atMs: m.atMs,
        heartbeatS: m.message.heartbeatS ?? 60,
      });
  }

  private iface(m: Extract<LiveMessage, { channel: 'iface' }>, reg: RegistryIndex, out: Signal[]): void {
    const up = m.message.ifaces.find((i) => i.uplink);
    // Only the school's own uplink device speaks for its uplink (and so inhibits its classrooms).
    if (!up || !carriesUplink(reg, m.school, m.device)) return;
    this.uplinkDevice.set(m.school, m.device);
    // A reading proves the router answers, even if its `recovered` event was lost.
    const f = this.flags(m.school);
    f.snmpSeen = true;
    f.snmp = false;
    f.oper = up.operStatus !== 'up';
    this.uplinkSignals(
      m.school,
      m.atMs,
      `出口接口 ${up.name} ${OPER_STATUS_NAMES[up.operStatus] ?? '未连通'}（ifOperStatus ${up.operStatus}）`,
      out,
    );
    // Of the school's capacity: its contract, else the interface speed (common/figures/capacity.ts).
    const { capacityMbps, capacitySource } = uplinkCapacity(
      reg.schools.get(m.school)?.contractedMbps,
      up.speedMbps,
    );
    const inPct = utilisationPct(up.inBps, capacityMbps);
    const outPct = utilisationPct(up.outBps, capacityMbps);
    if (inPct !== undefined && outPct !== undefined) {
      const pct = Math.max(inPct, outPct);
      const threshold = this.rules.uplink_saturated.thresholdPct ?? 90;
      out.push(
        cond(
          'uplink_saturated',
          m.school,
          m.device,
          undefined,
          pct >= threshold,
          m.atMs,
          `利用率 ${pct.toFixed(0)} %（${capacitySource === 'contract' ? '签约带宽' : '端口速率'} ${capacityMbps} Mbit/s，阈值 ${threshold} %）`,
        ),
      );
    }
  }

  /** Events, with their text for people: the publisher's (English) words kept in parentheses (`readable`). */
  private event(
    m: Extract<LiveMessage, { channel: 'event' }>,
    reg: RegistryIndex,
    kind: string,
    out: Signal[],
  ): void {
    const e = m.message;
    if (e.type === 'reboot') {
      out.push({
        kind: 'instant',
        rule: 'device_rebooted',
        school: m.school,
        device: m.device,
        atMs: m.atMs,
        message: readable(`${kindName(kind)}重启`, e.message),
      });
    } else if ((e.type === 'unreachable' || e.type === 'recovered') && e.subject === 'snmp') {
      // The school's uplink device: as registered, else its registered router whose readings carry the uplink.
      const uplinkDevice = reg.schools.get(m.school)?.uplinkDevice ?? this.uplinkDevice.get(m.school);
      const down = e.type === 'unreachable';
      const message = down
        ? snmpUnreachableText(kind, e.message)
        : readable(`${kindName(kind)} SNMP 恢复应答`, e.message);
      if (uplinkDevice === m.device) {
        const f = this.flags(m.school);
        f.snmpSeen = true;
        f.snmp = down;
        this.uplinkSignals(m.school, m.atMs, message, out);
      } else out.push(cond('snmp_unreachable', m.school, m.device, undefined, down, m.atMs, message));
    } else if (e.type === 'fault' || e.type === 'fault_cleared') {
      // Subjects are a known list: a device inventing new ones must not grow the active set without bound.
      const subject = e.subject && FAULT_SUBJECTS.has(e.subject) ? e.subject : 'other';
      const what = `${kindName(kind)}${SUBJECT_NAMES[subject] ?? ''}`;
      const state = e.type === 'fault_cleared' ? '恢复正常' : e.severity === 'critical' ? '故障' : '告警';
      out.push(
        cond(
          'display_fault',
          m.school,
          m.device,
          subject,
          e.type === 'fault',
          m.atMs,
          readable(`${what}${state}`, e.message),
        ),
      );
    } else if (e.type === 'clock_skew') {
      out.push(
        cond('clock_skew', m.school, m.device, undefined, true, m.atMs, readable('设备时钟偏差', e.message)),
      );
    }
  }

  private telemetry(m: Extract<LiveMessage, { channel: 'telemetry' }>, out: Signal[]): void {
    const t = m.message;
    const key = entityKey(m.school, m.device);
    const heartbeatS = this.lastSeen.get(key)?.heartbeatS ?? 60;
    this.lastSeen.set(key, { school: m.school, device: m.device, atMs: m.atMs, heartbeatS });
    out.push(cond('data_gap', m.school, m.device, undefined, false, m.atMs));
    // Readings replayed from a spool after an outage are old by design: only a current reading is judged.
    const newest = this.newestTs.get(key) ?? 0;
    if (t.ts < newest || m.atMs - t.ts > 2 * heartbeatS * 1000) {
      this.newestTs.set(key, Math.max(t.ts, newest));
      return;
    }
    this.newestTs.set(key, t.ts);
    // A clock ahead of ours (the replay test above catches one behind by more than two heartbeats).
    const skewS = (t.ts - m.atMs) / 1000;
    out.push(
      cond(
        'clock_skew',
        m.school,
        m.device,
        undefined,
        Math.abs(skewS) > (this.rules.clock_skew.skewMaxS ?? 120),
        m.atMs,
        `设备时钟偏差 ${skewS.toFixed(0)} 秒`,
      ),
    );
    const d = t.display;
    if (!d) return;
    const fault = (subject: string, active: boolean, message: string) =>
      out.push(cond('display_fault', m.school, m.device, subject, active, m.atMs, message));
    const lampMax = this.rules.display_fault.lampHoursMax ?? 4_000;
    if (d.lampHours !== undefined)
      fault('lamp_hours', d.lampHours > lampMax, `灯泡累计 ${d.lampHours} 小时，超过 ${lampMax}`);
    const tMax = this.rules.display_fault.temperatureMaxC ?? 70;
    if (d.temperatureC !== undefined)
      fault('temperature_c', d.temperatureC > tMax, `温度 ${d.temperatureC} °C，超过 ${tMax} °C`);
    if (d.touchOk !== undefined) fault('touch', !d.touchOk, '触控无响应');
  }

  /** The school's uplink is down while either SNMP says unreachable or its interface is not up. */
  private flags(school: string): UplinkFlags {
    let f = this.uplinkFlags.get(school);
    if (!f) {
      f = {
        snmp: false,
        snmpSeen: false,
        oper: false,
        probed: false,
        probeAtMs: 0,
        probeTs: 0,
        probeFailing: false,
      };
      this.uplinkFlags.set(school, f);
    }
    return f;
  }

  /**
   * The school's uplink as its flags now say: down when its interface is not up, or when its router does not
   * answer SNMP and its probes (if it is probed) do not answer either; SNMP silent while the probes answer is
   * `management_down` — the link is up, its management is not.
   */
  private uplinkSignals(school: string, atMs: number, message: string, out: Signal[]): void {
    const f = this.flags(school);
    // Probes speak only while they come: a school no longer probed (address removed, prober stopped) is judged
    // by SNMP alone again, so a later outage is uplink_down, not management_down.
    const probed = f.probed && atMs - f.probeAtMs <= PROBE_FRESH_MS;
    // An uplink device the poller never reached over SNMP (a router without SNMP, probed only) is down when its
    // probes go unanswered.
    const down = f.oper || (f.snmpSeen ? f.snmp && (!probed || f.probeFailing) : probed && f.probeFailing);
    out.push(cond('uplink_down', school, undefined, undefined, down, atMs, down ? message : undefined));
    const mgmt = f.snmp && probed && !f.probeFailing;
    out.push(
      cond(
        'management_down',
        school,
        undefined,
        undefined,
        mgmt,
        atMs,
        mgmt ? '出口设备 SNMP 无应答，但出口链路探测正常：链路在线，设备管理中断' : undefined,
      ),
    );
  }
}

interface UplinkFlags {
  snmp: boolean;
  /** The poller has reached (or tried) the uplink device over SNMP at all. */
  snmpSeen: boolean;
  oper: boolean;
  probed: boolean;
  /** When its last probe cycle arrived, and its own time. */
  probeAtMs: number;
  probeTs: number;
  probeFailing: boolean;
}

/** A probe cycle counts for this long after it arrives (five cycles at the default 60 s interval). */
const PROBE_FRESH_MS = 5 * 60_000;

/** A device kind as people in the bureaus name it: the first Chinese label the registry accepts (路由器, 一体机). */
const kindName = (kind: string): string => ENUM_LABELS.kind?.[kind]?.[0] ?? kind;

/** Fault subjects (PJLink ERST parts, the agent's checks) in Chinese. */
const SUBJECT_NAMES: Record<string, string> = {
  fan: '风扇',
  lamp: '灯泡',
  temperature: '温度',
  cover: '机盖',
  filter: '滤网',
  other: '',
  display: '显示',
  touch: '触控',
  lamp_hours: '灯泡寿命',
  temperature_c: '温度',
};

/** IF-MIB ifOperStatus (RFC 2863 §6) values other than `up`, in Chinese. */
const OPER_STATUS_NAMES: Record<string, string> = {
  down: '断开',
  testing: '处于测试状态',
  unknown: '状态未知',
  dormant: '休眠',
  notPresent: '不存在',
  lowerLayerDown: '下层链路断开',
};

const CJK = /[\u3400-\u9fff]/;

/**
 * A text for the people on call: `zh` (Chinese), with the publisher's own words kept in parentheses for whoever
 * needs the detail — or those words alone when they are Chinese already (an agent may say it in Chinese).
 */
export function readable(zh: string, raw: string): string {
  if (CJK.test(raw)) return raw;
  return raw ? `${zh}（${raw}）` : zh;
}

/**
 * The poller's SNMP failure in Chinese: its `SnmpError` (agents/snmp/client.ts) reads `SNMP <address>
 * (<school>/<device>): <detail>`, e.g. `SNMP 10.33.12.1:161 (S/gw): no answer within 4000 ms (unreachable, or a
 * wrong community / v3 user)` → `路由器 SNMP 无应答（10.33.12.1:161，超时：no answer within 4000 ms (…)）`. The
 * school and device are the alert's own, so only the address and the detail are kept.
 */
export function snmpUnreachableText(kind: string, raw: string): string {
  if (CJK.test(raw)) return raw;
  const m = /^SNMP (\S+) \([^)]*\): (.*)$/s.exec(raw);
  const detail = m?.[2] ?? raw;
  const why = /^no answer within/.test(detail)
    ? '超时'
    : /^authentication failed/.test(detail)
      ? '认证失败'
      : '出错';
  return `${kindName(kind)} SNMP 无应答（${m ? `${m[1]}，` : ''}${why}：${detail}）`;
}

function cond(
  rule: RuleName,
  school: string,
  device: string | undefined,
  subject: string | undefined,
  active: boolean,
  atMs: number,
  message?: string,
): Signal {
  return { kind: 'condition', rule, school, device, subject, active, atMs, ...(message ? { message } : {}) };
}
