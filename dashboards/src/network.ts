import { GraphTransform } from '@grafana/grafana-foundation-sdk/common';
import {
  type DashboardDef,
  IN_REGION,
  IN_SCHOOL,
  regionVariable,
  schoolVariable,
  thresholds,
  utilThresholds,
} from './lib.js';
import { seriesBy, stateTimeline } from './panels.js';
import {
  DEVICE_COLUMNS,
  displayNames,
  stateTimelinePanel,
  statPanel,
  tablePanel,
  timeseriesPanel,
} from './viz.js';

/**
 * 网络运维 — for the operators of the education metro network: live uplink bandwidth per school, congested and
 * down links, interface errors, and devices offline now.
 */

const UPLINK = `uplink = 'true' AND ${IN_REGION} AND ${IN_SCHOOL} AND $timeFilter`;
const ANY_IFACE = `${IN_REGION} AND ${IN_SCHOOL} AND $timeFilter`;

export const network: DashboardDef = {
  uid: 'cfm-network',
  title: '网络运维 (Network operations)',
  description:
    'Live uplink bandwidth and utilisation per school, congested and down uplinks, interface errors and devices offline now (InfluxDB iface, uplink_day, presence).',
  tags: ['cfm', 'network'],
  time: { from: 'now-6h', to: 'now' },
  refresh: '1m',
  variables: [regionVariable('uplink_day'), schoolVariable({ multi: true })],
  panels: [
    {
      title: '出口带宽合计 (Total uplink bandwidth now, bit/s)',
      description: 'Sum over the selected schools of the last uplink reading in the last 5 minutes.',
      w: 6,
      h: 5,
      queries: [
        {
          query: `SELECT sum(in_bps) AS in_bps, sum(out_bps) AS out_bps FROM (SELECT last(in_bps) AS in_bps, last(out_bps) AS out_bps FROM iface WHERE ${UPLINK} GROUP BY school)`,
          format: 'time_series',
          expect: ['time', 'in_bps', 'out_bps'],
        },
      ],
      viz: () =>
        displayNames(statPanel({ unit: 'bps', decimals: 1 }).timeFrom('5m'), {
          in_bps: '入 in',
          out_bps: '出 out',
        }),
    },
    {
      title: '上行中断学校 (Uplinks down now)',
      description:
        'Schools whose last uplink reading in the last 15 minutes says the interface is down. A school that stopped reporting altogether shows under 上行链路状态 as a gap.',
      w: 6,
      h: 5,
      queries: [
        {
          query: `SELECT count(up) AS schools_down FROM (SELECT last(oper_up) AS up FROM iface WHERE ${UPLINK} GROUP BY school) WHERE up = 0`,
          format: 'time_series',
          expect: ['time', 'schools_down'],
        },
      ],
      viz: () =>
        statPanel({ unit: 'none', decimals: 0, noValue: '0' })
          .timeFrom('15m')
          .thresholds(thresholds([null, 'green'], [1, 'red'])),
    },
    stateTimeline({
      title: '上行链路状态 (Uplink up / down per school)',
      description: 'ifOperStatus of each school uplink; gaps are periods without readings.',
      w: 12,
      h: 5,
      query: seriesBy({
        select: 'min(oper_up)',
        as: 'up',
        from: 'iface',
        where: UPLINK,
        by: 'school',
        fill: 'null',
      }),
      states: { 1: ['正常 up', 'green'], 0: ['中断 down', 'red'] },
    }),
    { row: '上行带宽 Uplink bandwidth' },
    {
      title: '上行带宽 (Uplink bandwidth per school, bit/s; in ↑, out ↓)',
      description:
        'Mean in/out rate of each school uplink interface (iface, uplink = true) per interval; out is drawn below the axis.',
      w: 24,
      h: 9,
      queries: [
        {
          query: `SELECT mean(in_bps) AS in_bps, mean(out_bps) AS out_bps FROM iface WHERE ${UPLINK} GROUP BY time($__interval), school fill(null)`,
          format: 'time_series',
          expect: ['time', 'in_bps', 'out_bps', 'school'],
          alias: '$tag_school $col',
        },
      ],
      viz: () =>
        timeseriesPanel({ unit: 'bps', interval: '1m', legendTable: true }).overrideByRegexp('/out_bps$/', [
          { id: 'custom.transform', value: GraphTransform.NegativeY },
        ]),
    },
    {
      title: '上行利用率 (Uplink utilisation per school, %, busier direction)',
      description:
        'Highest utilisation of either direction per interval, as the rollup and 校校通 count it: green < 50 %, yellow < 80 %, orange < 90 %, red ≥ 90 %.',
      w: 24,
      h: 9,
      queries: [
        {
          // Both directions as one field: InfluxQL has no max() across fields, but it merges two subqueries.
          query: `SELECT max(util) AS util FROM (SELECT util_in_pct AS util FROM iface WHERE ${UPLINK}), (SELECT util_out_pct AS util FROM iface WHERE ${UPLINK}) WHERE $timeFilter GROUP BY time($__interval), school fill(null)`,
          format: 'time_series',
          expect: ['time', 'util', 'school'],
          alias: '$tag_school',
        },
      ],
      viz: () =>
        stateTimelinePanel({
          unit: 'percent',
          interval: '1m',
          steps: [
            [null, 'green'],
            [50, 'yellow'],
            [80, 'orange'],
            [90, 'red'],
          ],
        }),
    },
    {
      title: '最拥塞学校 (Top 10 congested schools, last 7 days of teaching time)',
      description:
        'From the daily rollup uplink_day: share of teaching-time buckets at ≥ 80 % and ≥ 90 % utilisation (either direction) and the highest daily 95th percentile. ≥ 5 % of buckets at the profile threshold means congested for 校校通.',
      w: 12,
      h: 9,
      queries: [
        {
          query: `SELECT top(busy_pct, school, 10) AS busy_pct, over90_pct, p95_util_pct FROM (SELECT 100.0 * sum(over80_b) / sum(teaching_b) AS busy_pct, 100.0 * sum(over90_b) / sum(teaching_b) AS over90_pct, max(p95_util_pct) AS p95_util_pct FROM uplink_day WHERE ${ANY_IFACE} GROUP BY school) WHERE $timeFilter`,
          format: 'table',
          expect: ['time', 'busy_pct', 'school', 'over90_pct', 'p95_util_pct'],
        },
      ],
      viz: () =>
        tablePanel({
          columns: {
            Time: null,
            school: '学校 school',
            busy_pct: '≥ 80 % (% of teaching time)',
            over90_pct: '≥ 90 % (% of teaching time)',
            p95_util_pct: '最高日 P95 (max daily p95 %)',
          },
          sortBy: { column: 'busy_pct', desc: true },
        })
          .timeFrom('7d')
          .unit('percent')
          .decimals(1)
          .thresholds(utilThresholds()),
    },
    {
      title: '当前离线设备 (Devices offline now)',
      description:
        'Devices whose last presence change in the last 7 days is offline, with the reason: shutdown = switched off cleanly (normal after class), will = connection lost, timeout = silent. SNMP-polled devices report unreachable as events (告警 dashboard).',
      w: 12,
      h: 9,
      queries: [
        {
          query: `SELECT * FROM (SELECT last(online) AS online, last(reason) AS reason FROM presence WHERE ${ANY_IFACE} GROUP BY school, classroom, device, kind) WHERE online = 0`,
          format: 'table',
          expect: ['time', 'online', 'reason', 'school', 'classroom', 'device', 'kind'],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: '离线时间 (offline since)',
            online: null,
            reason: '原因 (reason)',
            school: '学校 school',
            ...DEVICE_COLUMNS,
          },
          sortBy: { column: 'Time', desc: true },
        }).timeFrom('7d'),
    },
    { row: '链路质量 Link quality' },
    {
      title: '丢包率 (Probe loss per school, %)',
      description:
        "Loss of the poller's probes of each school's uplink device (probe: ICMP through fping, or TCP connects), worst per interval; 校校通's link_quality_low counts class time above the profile's threshold (built-in 1 %, ITU-T G.1010; docs/links.md).",
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT max(loss_pct) AS loss_pct FROM probe WHERE ${ANY_IFACE} GROUP BY time($__interval), school fill(null)`,
          format: 'time_series',
          expect: ['time', 'loss_pct', 'school'],
          alias: '$tag_school',
        },
      ],
      viz: () => timeseriesPanel({ unit: 'percent', interval: '1m', legendTable: true }),
    },
    {
      title: '时延与抖动 (Probe RTT and jitter per school, ms)',
      description:
        'Mean round-trip time and jitter (mean |ΔRTT| of consecutive answers) of the probes per interval; the built-in profiles judge RTT above 200 ms and jitter above 50 ms (ITU-T Y.1541; docs/links.md).',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT mean(rtt_avg_ms) AS rtt_ms, mean(jitter_ms) AS jitter_ms FROM probe WHERE ${ANY_IFACE} GROUP BY time($__interval), school fill(null)`,
          format: 'time_series',
          expect: ['time', 'rtt_ms', 'jitter_ms', 'school'],
          alias: '$tag_school $col',
        },
      ],
      viz: () => timeseriesPanel({ unit: 'ms', interval: '1m', legendTable: true }),
    },
    { row: '接口健康 Interface health' },
    {
      title: '接口错误 (Interface errors per minute)',
      description:
        'ifInErrors / ifOutErrors of every polled interface as a rate (non-negative derivative per minute; counter resets ignored).',
      w: 24,
      h: 8,
      queries: [
        {
          query: `SELECT non_negative_derivative(max(in_errors), 1m) AS in_errors, non_negative_derivative(max(out_errors), 1m) AS out_errors FROM iface WHERE ${ANY_IFACE} GROUP BY time($__interval), school, device, ifname fill(none)`,
          format: 'time_series',
          expect: ['time', 'in_errors', 'out_errors', 'school', 'device', 'ifname'],
          alias: '$tag_school $tag_device $tag_ifname $col',
        },
      ],
      viz: () => timeseriesPanel({ unit: 'short', interval: '1m', min: 0, legendTable: true }),
    },
  ],
};
