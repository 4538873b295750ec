import { GraphTransform } from '@grafana/grafana-foundation-sdk/common';
import { type DashboardDef, IN_SCHOOL, regionVariable, schoolVariable, valueText } from './lib.js';
import { seriesBy, stateTimeline } from './panels.js';
import { DEVICE_COLUMNS, percentTimeseries, tablePanel, timeseriesPanel } from './viz.js';

/**
 * 学校与设备 — one school: its uplink, each classroom device's display power, use and errors, host health,
 * presence and recent events. For operators following up an alert and for a school's IT teacher.
 */

const SCHOOL = `${IN_SCHOOL} AND $timeFilter`;
/** One series per device of the school. */
const perDevice = (select: string, as: string, from: string, fill: 'null' | 'none' | 'previous' = 'null') =>
  seriesBy({ select, as, from, where: SCHOOL, by: 'device', fill });
/** Utilisation: dashed lines at 80 % and 90 %. */
const BUSY: [number | null, string][] = [
  [null, 'green'],
  [80, 'orange'],
  [90, 'red'],
];

export const school: DashboardDef = {
  uid: 'cfm-school',
  title: '学校与设备 (School and device detail)',
  description:
    'One school: uplink bandwidth and utilisation, display power / use / errors per device, host CPU and memory, presence and recent events.',
  tags: ['cfm', 'school'],
  time: { from: 'now-24h', to: 'now' },
  refresh: '1m',
  variables: [regionVariable('uplink_day'), schoolVariable({ multi: false })],
  panels: [
    { row: '上行链路 Uplink' },
    {
      title: '上行带宽 (Uplink bandwidth, bit/s; in ↑, out ↓)',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT mean(in_bps) AS in_bps, mean(out_bps) AS out_bps FROM iface WHERE uplink = 'true' AND ${SCHOOL} GROUP BY time($__interval) fill(null)`,
          format: 'time_series',
          expect: ['time', 'in_bps', 'out_bps'],
          alias: '$col',
        },
      ],
      viz: () =>
        timeseriesPanel({ unit: 'bps', interval: '1m' }).overrideByName('out_bps', [
          { id: 'custom.transform', value: GraphTransform.NegativeY },
        ]),
    },
    {
      title: '上行利用率 (Uplink utilisation, %)',
      description: 'Highest reading per interval in each direction; dashed lines at 80 % and 90 %.',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT max(util_in_pct) AS util_in_pct, max(util_out_pct) AS util_out_pct FROM iface WHERE uplink = 'true' AND ${SCHOOL} GROUP BY time($__interval) fill(null)`,
          format: 'time_series',
          expect: ['time', 'util_in_pct', 'util_out_pct'],
          alias: '$col',
        },
      ],
      viz: () => percentTimeseries({ interval: '1m', steps: BUSY }),
    },
    { row: '班级设备 Classroom devices' },
    {
      title: '设备状态 (Displays now: power, input, use, errors)',
      description:
        'The last reading of each teaching display in the range (PJLink / vendor protocol). In use: the collector’s judgement (docs/usage.md) — on, and input on the teaching computer within collector.usage.activeWithinS, or a teaching application in front with input within collector.usage.teachingIdleWithinS (20 minutes); its basis `activity`, or `power` for an agent that sends no activity (on with an input selected); the foreground program and the seconds since the last input.',
      w: 24,
      h: 7,
      queries: [
        {
          query: `SELECT last(power) AS power, last(input) AS input, last(in_use) AS in_use, last(use_basis) AS use_basis, last(foreground) AS foreground, last(idle_s) AS idle_s, last(error_count) AS error_count, last(error_codes) AS error_codes, last(temperature_c) AS temperature_c, last(lamp_hours) AS lamp_hours FROM display WHERE ${SCHOOL} GROUP BY classroom, device, kind`,
          format: 'table',
          expect: [
            'time',
            'power',
            'input',
            'in_use',
            'use_basis',
            'foreground',
            'idle_s',
            'error_count',
            'error_codes',
            'temperature_c',
            'lamp_hours',
            'classroom',
            'device',
            'kind',
          ],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: null,
            ...DEVICE_COLUMNS,
            power: '电源 power',
            input: '信号源 input',
            in_use: '使用中 in use',
            use_basis: '判定依据 basis',
            foreground: '前台程序 foreground',
            idle_s: '无操作 idle (s)',
            error_count: '故障数 errors',
            error_codes: '故障 error codes',
            temperature_c: '温度 temperature (°C)',
            lamp_hours: '灯泡 lamp hours (h)',
          },
          sortBy: { column: 'classroom', desc: false },
        })
          .mappings([valueText({ 1: ['是 yes', 'green'], 0: ['否 no', 'text'] })])
          // Seconds, not a yes/no: 0 and 1 are a touch just now.
          .overrideByName('idle_s', [
            { id: 'mappings', value: [] },
            { id: 'unit', value: 's' },
          ]),
    },
    stateTimeline({
      title: '显示设备电源 (Display power per device)',
      w: 12,
      h: 7,
      query: perDevice('last(power)', 'power', 'display'),
      states: {
        on: ['开机 on', 'green'],
        standby: ['待机 standby', 'blue'],
        off: ['关机 off', 'text'],
        warming: ['预热 warming', 'yellow'],
        cooling: ['散热 cooling', 'yellow'],
      },
    }),
    stateTimeline({
      title: '显示设备使用 (Display in use per device)',
      w: 12,
      h: 7,
      query: perDevice('max(in_use)', 'in_use', 'display'),
      states: { 1: ['使用中 in use', 'green'], 0: ['未使用 idle', 'text'] },
    }),
    {
      title: '显示设备故障 (Display errors per device)',
      description: 'Number of error bits set (PJLink ERST: fan, lamp, temperature, cover, filter, other).',
      w: 12,
      h: 7,
      queries: [perDevice('max(error_count)', 'error_count', 'display', 'none')],
      viz: () => timeseriesPanel({ unit: 'short', bars: true, min: 0, interval: '1m' }),
    },
    stateTimeline({
      title: '设备在线 (Presence per device)',
      description:
        'Online / offline as the collector decided (births, wills, heartbeats); switched off after class is normal.',
      w: 12,
      h: 7,
      query: perDevice('last(online)', 'online', 'presence', 'previous'),
      states: { 1: ['在线 online', 'green'], 0: ['离线 offline', 'red'] },
    }),
    {
      title: '主机 CPU / 内存 (Host CPU and memory, %)',
      description: 'Teacher PCs, OPS modules and student PCs running the classroom agent.',
      w: 24,
      h: 8,
      queries: [
        {
          query: `SELECT mean(cpu_pct) AS cpu_pct, mean(mem_used_pct) AS mem_used_pct FROM host WHERE ${SCHOOL} GROUP BY time($__interval), device fill(null)`,
          format: 'time_series',
          expect: ['time', 'cpu_pct', 'mem_used_pct', 'device'],
          alias: '$tag_device $col',
        },
      ],
      viz: () => percentTimeseries({ interval: '1m', steps: BUSY }),
    },
    {
      title: '最近事件 (Recent events)',
      description: 'Reboots, faults, presence changes, reachability; newest first (at most 200).',
      w: 24,
      h: 9,
      queries: [
        {
          query: `SELECT message, type, severity, subject, device, kind, details FROM event WHERE ${SCHOOL} ORDER BY time DESC LIMIT 200`,
          format: 'table',
          expect: ['time', 'message', 'type', 'severity', 'subject', 'device', 'kind', 'details'],
        },
      ],
      viz: () =>
        tablePanel({
          columns: {
            Time: '时间 time',
            device: '设备 device',
            kind: '类型 kind',
            type: '事件 type',
            severity: '级别 severity',
            subject: '部件 subject',
            message: '内容 message',
            details: '详情 details',
          },
        }).mappings([
          valueText({
            critical: ['严重 critical', 'red'],
            warning: ['警告 warning', 'orange'],
            info: ['信息 info', 'text'],
          }),
        ]),
    },
  ],
};
