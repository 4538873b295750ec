import { describe, expect, it } from 'vitest';
import { SnmpError } from '../../agents/snmp/client.js';
import type { Signal } from '../../alerting/engine.js';
import { resolveRules } from '../../alerting/rules.js';
import { Signals } from '../../alerting/signals.js';
import { inWindow, silenced } from '../../alerting/silences.js';
import type { LiveMessage } from '../../common/live.js';
import { RegistryIndex } from '../../common/registry/store.js';
import { EXAMPLES } from '../../contracts/examples.js';
import type { Registry } from '../../contracts/registry.js';
import { CITY } from '../helpers/city.js';

/**
 * The translator from live messages to engine signals, as a table: a few messages in (the state a school's
 * earlier messages left), the signals of the last one out. Payloads are the contract's EXAMPLES with the fields
 * each case is about changed.
 */
const A = '3301060001';
const B = '3301060002';
const REG = new RegistryIndex({
  regions: CITY.regions,
  schools: [
    {
      id: A,
      name: '一小',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 2,
      students: 90,
      teachers: 6,
      uplinkDevice: 'gw-a',
    },
    {
      id: B,
      name: '二小',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 2,
      students: 90,
      teachers: 6,
      contractedMbps: 100,
    },
  ],
  classrooms: [
    { id: 'c1', school: A, name: '一(1)班', isClass: true },
    { id: 'c1', school: B, name: '一(1)班', isClass: true },
  ],
  devices: [
    { id: 'gw-a', school: A, kind: 'router' },
    { id: 'pn-1', school: A, classroom: 'c1', kind: 'panel' },
    { id: 'gw-b', school: B, kind: 'router' },
    { id: 'sw-b', school: B, kind: 'switch' },
    { id: 'pn-1', school: B, classroom: 'c1', kind: 'panel' },
  ],
} satisfies Registry);
const T = Date.parse('2026-10-08T08:05:00+08:00');
/** What the poller's SNMP client says of a target that does not answer (agents/snmp/client.ts, `wrap`). */
const TIMEOUT = 'no answer within 4000 ms (unreachable, or a wrong community / v3 user)';

type Status = (typeof EXAMPLES)['status'];
type Event = (typeof EXAMPLES)['event'];
type Telemetry = (typeof EXAMPLES)['telemetry'];
type Iface = (typeof EXAMPLES)['iface']['ifaces'][number];

const status = (school: string, device: string, over: Partial<Status>, retained = false): LiveMessage => ({
  channel: 'status',
  school,
  device,
  atMs: T,
  retained,
  message: { ...EXAMPLES.status, ts: T, ...over },
});
const event = (school: string, device: string, over: Partial<Event>, atMs = T): LiveMessage => ({
  channel: 'event',
  school,
  device,
  atMs,
  message: { ...EXAMPLES.event, ts: atMs, ...over },
});
const telemetry = (device: string, over: Partial<Telemetry>, atMs = T, school = A): LiveMessage => ({
  channel: 'telemetry',
  school,
  device,
  atMs,
  message: { ...EXAMPLES.telemetry, ts: atMs, ...over },
});
type Probe = (typeof EXAMPLES)['probe'];
const probe = (school: string, device: string, over: Partial<Probe>, atMs = T): LiveMessage => ({
  channel: 'probe',
  school,
  device,
  atMs,
  message: { ...EXAMPLES.probe, ts: atMs, ...over },
});
const SNMP_DOWN = event(A, 'gw-a', {
  type: 'unreachable',
  subject: 'snmp',
  kind: 'router',
  message: 'timeout',
});
const iface = (school: string, device: string, over: Partial<Iface>, atMs = T): LiveMessage => ({
  channel: 'iface',
  school,
  device,
  atMs,
  message: { ...EXAMPLES.iface, ts: atMs, ifaces: [{ ...EXAMPLES.iface.ifaces[0]!, ...over }] },
});

/** A signal as a short string: rule, where, on or off (or `!` for an instant), and the message if any. */
const show = (s: Signal) =>
  `${s.rule} ${[s.school, s.device, s.subject].filter(Boolean).join('/')} ${s.kind === 'instant' ? '!' : s.active ? 'on' : 'off'}${s.message ? ` ${s.message}` : ''}`;

const CASES: { name: string; before?: LiveMessage[]; message: LiveMessage; signals: string[] }[] = [
  {
    name: 'a will (connection lost) opens device_offline and closes any data gap',
    message: status(A, 'pn-1', { state: 'offline', reason: 'will' }),
    signals: [`data_gap ${A}/pn-1 off`, `device_offline ${A}/pn-1 on 连接意外断开（MQTT 遗嘱 will）`],
  },
  {
    name: 'a clean shutdown is a teacher switching off: device_offline closes',
    message: status(A, 'pn-1', { state: 'offline', reason: 'shutdown' }),
    signals: [`data_gap ${A}/pn-1 off`, `device_offline ${A}/pn-1 off`],
  },
  {
    name: 'a retained (replayed) will is an old state, not news',
    message: status(A, 'pn-1', { state: 'offline', reason: 'will' }, true),
    signals: [`data_gap ${A}/pn-1 off`],
  },
  {
    name: 'a birth closes device_offline',
    message: status(A, 'pn-1', {}),
    signals: [`device_offline ${A}/pn-1 off`],
  },
  {
    name: "a router's status says nothing: routers are judged by SNMP",
    message: status(A, 'gw-a', { kind: 'router', state: 'offline', reason: 'will' }),
    signals: [],
  },
  {
    name: 'a school the registry does not know raises nothing',
    message: status('9999999999', 'pn-1', { state: 'offline', reason: 'will' }),
    signals: [],
  },
  {
    name: "a device its school does not register raises nothing (not even as another school's pn-1)",
    message: status(A, 'pn-9', { state: 'offline', reason: 'will' }),
    signals: [],
  },
  {
    name: "the registered uplink device unreachable over SNMP: uplink_down, in Chinese with the poller's words",
    message: event(A, 'gw-a', {
      type: 'unreachable',
      subject: 'snmp',
      kind: 'router',
      message: new SnmpError(`10.33.12.1:161 (${A}/gw-a)`, 'timeout', TIMEOUT).message,
    }),
    signals: [
      `uplink_down ${A} on 路由器 SNMP 无应答（10.33.12.1:161，超时：${TIMEOUT}）`,
      `management_down ${A} off`,
    ],
  },
  {
    name: 'another router unreachable over SNMP: snmp_unreachable of that router',
    message: event(B, 'sw-b', {
      type: 'unreachable',
      subject: 'snmp',
      kind: 'switch',
      message: new SnmpError(`10.33.12.2:161 (${B}/sw-b)`, 'auth', 'authentication failed (wrong digest)')
        .message,
    }),
    signals: [
      `snmp_unreachable ${B}/sw-b on 交换机 SNMP 无应答（10.33.12.2:161，认证失败：authentication failed (wrong digest)）`,
    ],
  },
  {
    name: 'an SNMP text of another form is kept whole',
    message: event(B, 'sw-b', { type: 'unreachable', subject: 'snmp', kind: 'switch', message: 'timeout' }),
    signals: [`snmp_unreachable ${B}/sw-b on 交换机 SNMP 无应答（出错：timeout）`],
  },
  {
    name: 'it answers again',
    message: event(B, 'sw-b', {
      type: 'recovered',
      subject: 'snmp',
      kind: 'switch',
      message: `10.33.12.2:161 (${B}/sw-b) answers again`,
    }),
    signals: [
      `snmp_unreachable ${B}/sw-b off 交换机 SNMP 恢复应答（10.33.12.2:161 (${B}/sw-b) answers again）`,
    ],
  },
  {
    name: "any uplink reading clears an unreachable uplink (its 'recovered' event may be lost)",
    before: [event(A, 'gw-a', { type: 'unreachable', subject: 'snmp', kind: 'router', message: 'timeout' })],
    message: iface(A, 'gw-a', { inBps: 1e6, outBps: 1e6 }, T + 60_000),
    signals: [
      `uplink_down ${A} off`,
      `management_down ${A} off`,
      `uplink_saturated ${A}/gw-a off 利用率 0 %（端口速率 1000 Mbit/s，阈值 90 %）`,
    ],
  },
  {
    name: 'the uplink interface down keeps uplink_down on though SNMP answers',
    message: iface(A, 'gw-a', { operStatus: 'down', inBps: null, outBps: null }),
    signals: [
      `uplink_down ${A} on 出口接口 GigabitEthernet0/0/1 断开（ifOperStatus down）`,
      `management_down ${A} off`,
    ],
  },
  {
    name: 'the uplink at 95 % of its speed: uplink_saturated',
    message: iface(A, 'gw-a', { inBps: 950e6, outBps: 1e6 }),
    signals: [
      `uplink_down ${A} off`,
      `management_down ${A} off`,
      `uplink_saturated ${A}/gw-a on 利用率 95 %（端口速率 1000 Mbit/s，阈值 90 %）`,
    ],
  },
  {
    name: 'a school with a contract is judged on it, not on its port: 95 Mbit/s of a 100 Mbit/s line on a 1 Gbit/s port',
    message: iface(B, 'gw-b', { inBps: 95e6, outBps: 1e6 }),
    signals: [
      `uplink_down ${B} off`,
      `management_down ${B} off`,
      `uplink_saturated ${B}/gw-b on 利用率 95 %（签约带宽 100 Mbit/s，阈值 90 %）`,
    ],
  },
  {
    name: "a school's uplink readings from a device that is not its uplink device are ignored",
    message: iface(A, 'pn-1', { operStatus: 'down' }),
    signals: [],
  },
  {
    name: 'without a registered uplink device, the registered router carrying the uplink speaks for it',
    message: iface(B, 'gw-b', { operStatus: 'lowerLayerDown', inBps: null, outBps: null }),
    signals: [
      `uplink_down ${B} on 出口接口 GigabitEthernet0/0/1 下层链路断开（ifOperStatus lowerLayerDown）`,
      `management_down ${B} off`,
    ],
  },
  {
    name: 'a reboot is an instant; a Chinese text is kept as it is',
    message: event(A, 'pn-1', { type: 'reboot', severity: 'info', kind: 'panel', message: '重启' }),
    signals: [`device_rebooted ${A}/pn-1 ! 重启`],
  },
  {
    name: "the poller's reboot, in Chinese",
    message: event(A, 'gw-a', {
      type: 'reboot',
      severity: 'warning',
      kind: 'router',
      subject: 'device',
      message: `10.33.12.1:161 (${A}/gw-a) restarted (sysUpTime went back)`,
    }),
    signals: [
      `device_rebooted ${A}/gw-a ! 路由器重启（10.33.12.1:161 (${A}/gw-a) restarted (sysUpTime went back)）`,
    ],
  },
  {
    name: "the agent's PJLink fault and its end, in Chinese by the registry's kind",
    before: [
      event(A, 'pn-1', { type: 'fault', severity: 'critical', subject: 'lamp', message: 'lamp error' }),
    ],
    message: event(A, 'pn-1', {
      type: 'fault_cleared',
      severity: 'info',
      subject: 'fan',
      message: 'fan ok again',
    }),
    signals: [`display_fault ${A}/pn-1/fan off 交互式一体机风扇恢复正常（fan ok again）`],
  },
  {
    name: 'a PJLink warning',
    message: event(A, 'pn-1', {
      type: 'fault',
      severity: 'warning',
      subject: 'filter',
      message: 'filter warning',
    }),
    signals: [`display_fault ${A}/pn-1/filter on 交互式一体机滤网告警（filter warning）`],
  },
  {
    name: 'a display fault and its subject',
    message: event(A, 'pn-1', {}),
    signals: [`display_fault ${A}/pn-1/lamp on 投影机灯泡使用时间超过 3000 小时`],
  },
  {
    name: 'an invented fault subject is "other" (the active set stays bounded)',
    message: event(A, 'pn-1', { type: 'fault_cleared', subject: 'made-up-1234' }),
    signals: [`display_fault ${A}/pn-1/other off 投影机灯泡使用时间超过 3000 小时`],
  },
  {
    name: 'current telemetry: data gap off, clock fine, the display checks',
    message: telemetry('pn-1', {}),
    signals: [
      `data_gap ${A}/pn-1 off`,
      `clock_skew ${A}/pn-1 off 设备时钟偏差 0 秒`,
      `display_fault ${A}/pn-1/lamp_hours off 灯泡累计 1873 小时，超过 4000`,
      `display_fault ${A}/pn-1/temperature_c off 温度 41.5 °C，超过 70 °C`,
      `display_fault ${A}/pn-1/touch off 触控无响应`,
    ],
  },
  {
    name: 'a clock 10 minutes ahead: clock_skew; an untouchable, hot panel',
    message: telemetry('pn-1', {
      ts: T + 600_000,
      display: { ...EXAMPLES.telemetry.display!, touchOk: false, temperatureC: 80 },
    }),
    signals: [
      `data_gap ${A}/pn-1 off`,
      `clock_skew ${A}/pn-1 on 设备时钟偏差 600 秒`,
      `display_fault ${A}/pn-1/lamp_hours off 灯泡累计 1873 小时，超过 4000`,
      `display_fault ${A}/pn-1/temperature_c on 温度 80 °C，超过 70 °C`,
      `display_fault ${A}/pn-1/touch on 触控无响应`,
    ],
  },
  {
    name: 'a reading replayed from the spool (older than two heartbeats) is not judged',
    message: telemetry('pn-1', { ts: T - 3_600_000 }),
    signals: [`data_gap ${A}/pn-1 off`],
  },
  {
    name: 'a reading older than the newest seen is not judged',
    before: [telemetry('pn-1', {}, T)],
    message: telemetry('pn-1', { ts: T - 1_000 }, T + 1_000),
    signals: [`data_gap ${A}/pn-1 off`],
  },
  {
    name: "the uplink device's probes answer cleanly: the link is up, of good quality",
    message: probe(A, 'gw-a', { received: 20 }),
    signals: [`uplink_down ${A} off`, `management_down ${A} off`, `link_quality_low ${A}/gw-a off`],
  },
  {
    name: 'SNMP silent while the probes answer: management_down, not uplink_down',
    before: [SNMP_DOWN],
    message: probe(A, 'gw-a', { received: 20 }),
    signals: [
      `uplink_down ${A} off`,
      `management_down ${A} on 出口设备 SNMP 无应答，但出口链路探测正常：链路在线，设备管理中断`,
      `link_quality_low ${A}/gw-a off`,
    ],
  },
  {
    name: 'SNMP silent and the probes unanswered: uplink_down (quality is not judged on a link that is down)',
    before: [SNMP_DOWN],
    message: probe(A, 'gw-a', { received: 0, rttMs: null, jitterMs: null }),
    signals: [
      `uplink_down ${A} on 出口探测无应答（20 个探测包全部丢失）`,
      `management_down ${A} off`,
      `link_quality_low ${A}/gw-a off`,
    ],
  },
  {
    name: 'probes unanswered but SNMP answers with the interface up: not down (the probe address may be wrong)',
    before: [iface(A, 'gw-a', { inBps: 1e6, outBps: 1e6 })],
    message: probe(A, 'gw-a', { received: 0, rttMs: null, jitterMs: null }),
    signals: [`uplink_down ${A} off`, `management_down ${A} off`, `link_quality_low ${A}/gw-a off`],
  },
  {
    name: 'loss, delay or jitter above the thresholds: link_quality_low, with the figures',
    message: probe(A, 'gw-a', {
      sent: 20,
      received: 19,
      rttMs: { min: 180, avg: 240, max: 400 },
      jitterMs: 35,
    }),
    signals: [
      `uplink_down ${A} off`,
      `management_down ${A} off`,
      `link_quality_low ${A}/gw-a on 出口链路丢包 5.0 %，时延 240 ms，抖动 35 ms（阈值 1 % / 200 ms / 50 ms）`,
    ],
  },
  {
    name: 'a router without SNMP, probed only: its probes unanswered are uplink_down (the blind spot closed)',
    message: probe(A, 'gw-a', { received: 0, rttMs: null, jitterMs: null }),
    signals: [
      `uplink_down ${A} on 出口探测无应答（20 个探测包全部丢失）`,
      `management_down ${A} off`,
      `link_quality_low ${A}/gw-a off`,
    ],
  },
  {
    name: 'probes that stopped an hour ago no longer speak: SNMP silent now is uplink_down, not management_down',
    before: [probe(A, 'gw-a', { received: 20 }, T - 3_600_000)],
    message: SNMP_DOWN,
    signals: [`uplink_down ${A} on 路由器 SNMP 无应答（出错：timeout）`, `management_down ${A} off`],
  },
  {
    name: "a probe cycle replayed from the poller's spool (10 minutes old on arrival) says nothing",
    before: [SNMP_DOWN],
    message: probe(A, 'gw-a', { received: 20, ts: T - 600_000 }),
    signals: [],
  },
  {
    name: "a probe of a device that does not carry the school's uplink says nothing",
    message: probe(A, 'pn-1', { received: 0, rttMs: null, jitterMs: null }),
    signals: [],
  },
];

describe('signals: live message → engine signals', () => {
  for (const c of CASES)
    it(c.name, () => {
      const s = new Signals(resolveRules({}));
      for (const m of c.before ?? []) s.from(m, REG);
      expect(s.from(c.message, REG).map(show)).toEqual(c.signals);
    });

  it('data gaps: a connected device silent for gapFactor heartbeats; none once it is gone', () => {
    const s = new Signals(resolveRules({ data_gap: { gapFactor: 3 } }));
    s.from(status(A, 'pn-1', { heartbeatS: 10 }), REG);
    s.from(status(B, 'pn-1', { heartbeatS: 10 }), REG);
    expect(s.gaps(T + 30_000).map(show)).toEqual([]);
    expect(s.gaps(T + 30_001).map(show)).toEqual([
      `data_gap ${A}/pn-1 on 30 秒没有数据`,
      `data_gap ${B}/pn-1 on 30 秒没有数据`,
    ]);
    s.from(status(B, 'pn-1', { state: 'offline', reason: 'will' }), REG);
    expect(s.gaps(T + 40_000).map(show)).toEqual([`data_gap ${A}/pn-1 on 40 秒没有数据`]);
  });
});

describe('silences and maintenance windows', () => {
  const alert = { school: A, device: 'pn-1', rule: 'device_offline' as const };
  const path = '330000/330100/330106';
  const silence = { id: 's1', startsAtMs: T - 1, endsAtMs: T + 1, createdBy: 'ops', comment: '' };
  const SAT_22_TO_MIDNIGHT = { name: 'm', weekdays: ['sat' as const], from: '22:00', to: '24:00' };
  const NIGHTLY = { name: 'n', weekdays: ['thu' as const], from: '22:00', to: '06:00' };
  const at = (local: string) => Date.parse(`${local}+08:00`);

  it.each([
    ['a silence of the region', { region: '330000/330100' }, true],
    ['a silence of another region', { region: '330000/330200' }, false],
    ['a silence of the school', { school: A }, true],
    ['a silence of the device in its school', { school: A, device: 'pn-1' }, true],
    ['a silence of the same id in another school', { school: B, device: 'pn-1' }, false],
    ['a silence of another rule', { rule: 'uplink_down' as const }, false],
  ])('%s: %s', (_name, scope, expected) => {
    expect(silenced(alert, T, path, [{ ...silence, ...scope }], [])).toBe(expected);
  });

  it('a silence counts from its start up to (not including) its end', () => {
    expect(silenced(alert, T + 1, path, [{ ...silence, school: A }], [])).toBe(false);
    expect(silenced(alert, T - 2, path, [{ ...silence, school: A }], [])).toBe(false);
  });

  it.each([
    ['Saturday 22:00', at('2026-10-10T22:00:00'), SAT_22_TO_MIDNIGHT, true],
    ['Saturday 23:59', at('2026-10-10T23:59:00'), SAT_22_TO_MIDNIGHT, true],
    ['Saturday 21:59', at('2026-10-10T21:59:00'), SAT_22_TO_MIDNIGHT, false],
    ['Sunday 00:00', at('2026-10-11T00:00:00'), SAT_22_TO_MIDNIGHT, false],
    ['Thursday 23:00 (a window over midnight)', at('2026-10-08T23:00:00'), NIGHTLY, true],
    ['Thursday 05:00 (the early part, on its own weekday)', at('2026-10-08T05:00:00'), NIGHTLY, true],
    ['Thursday 06:00', at('2026-10-08T06:00:00'), NIGHTLY, false],
    ['Friday 05:00', at('2026-10-09T05:00:00'), NIGHTLY, false],
  ])('maintenance %s', (_name, ms, w, expected) => {
    expect(inWindow(w, ms)).toBe(expected);
    expect(silenced(alert, ms, path, [], [w])).toBe(expected);
    expect(silenced(alert, ms, path, [], [{ ...w, schools: [B] }])).toBe(false);
    expect(silenced(alert, ms, path, [], [{ ...w, regions: ['330000/330100'] }])).toBe(expected);
  });
});
