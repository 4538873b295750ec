import {
  type DashboardDef,
  IN_REGION,
  IN_SCHOOL,
  type PanelDef,
  type QueryDef,
  regionVariable,
  schoolVariable,
  thresholds,
  valueText,
} from './lib.js';
import { seriesBy } from './panels.js';
import { groupingToMatrix, statPanel, tablePanel, timeseriesPanel } from './viz.js';

/**
 * 告警 — the alert notifications alerting/ sends (one `alert` point each time an alert is fired, reminded or
 * resolved) and the device events behind them.
 *
 * "Firing now" is an alert whose last notification is not a resolve: the subquery takes the last point of each
 * alert key (rule, school, device, subject: the series), the outer query keeps those with firing = 1.
 * `device_rebooted` is an instant alert (notified once, never resolved), so it is left out there.
 */

const ALERTS = `${IN_REGION} AND ${IN_SCHOOL} AND $timeFilter`;
const OPEN = `${IN_REGION} AND ${IN_SCHOOL} AND rule != 'device_rebooted' AND $timeFilter`;
const DEVICE_EVENTS = `type =~ /^(fault|reboot|unreachable|clock_skew)$/ AND ${IN_REGION} AND ${IN_SCHOOL} AND $timeFilter`;

const SEVERITY = valueText({
  critical: ['严重 critical', 'red'],
  warning: ['警告 warning', 'orange'],
  info: ['信息 info', 'blue'],
});
const KIND = valueText({
  firing: ['触发 fired', 'red'],
  reminder: ['提醒 reminder', 'orange'],
  resolved: ['恢复 resolved', 'green'],
});

/** Counts per hour or longer, as bars stacked by the series of `query` (rules, event types). */
const countsOverTime = (title: string, query: QueryDef): PanelDef => ({
  title,
  w: 24,
  h: 8,
  queries: [query],
  viz: () => timeseriesPanel({ unit: 'short', bars: true, stacked: true, min: 0, interval: '1h' }),
});

export const alerts: DashboardDef = {
  uid: 'cfm-alerts',
  title: '告警 (Alerts)',
  description:
    'Alert notifications (fired, reminded, resolved) by rule, alerts firing now, time to resolve, and device events (faults, reboots, unreachable).',
  tags: ['cfm', 'alerts'],
  time: { from: 'now-7d', to: 'now' },
  refresh: '1m',
  variables: [regionVariable('uplink_day'), schoolVariable({ multi: true })],
  panels: [
    {
      title: '当前告警 (Alerts firing now)',
      description: 'Alerts notified in the last 30 days whose last notification is not a resolve.',
      w: 8,
      h: 5,
      queries: [
        {
          query: `SELECT count(firing) AS firing FROM (SELECT last(firing) AS firing FROM alert WHERE ${OPEN} GROUP BY school, device, rule, subject) WHERE firing = 1`,
          format: 'time_series',
          expect: ['time', 'firing'],
        },
      ],
      viz: () =>
        statPanel({ unit: 'none', decimals: 0, noValue: '0' })
          .timeFrom('30d')
          .thresholds(thresholds([null, 'green'], [1, 'red'])),
    },
    {
      title: '通知次数 (Notifications in the range)',
      w: 8,
      h: 5,
      queries: [
        {
          query: `SELECT count(alert_id) AS notifications FROM alert WHERE ${ALERTS}`,
          format: 'time_series',
          expect: ['time', 'notifications'],
        },
      ],
      viz: () => statPanel({ unit: 'none', decimals: 0, noValue: '0' }),
    },
    {
      title: '平均恢复时间 (Mean time to resolve, minutes)',
      description: 'From the start of an alert (the condition, before the grace period) to its resolve.',
      w: 8,
      h: 5,
      queries: [
        {
          query: `SELECT mean(duration_s) / 60 AS mttr_min FROM alert WHERE kind = 'resolved' AND ${ALERTS}`,
          format: 'time_series',
          expect: ['time', 'mttr_min'],
        },
      ],
      viz: () => statPanel({ unit: 'm', decimals: 1 }),
    },
    countsOverTime(
      '告警通知 (Notifications over time by rule)',
      seriesBy({
        select: 'count(alert_id)',
        as: 'notifications',
        from: 'alert',
        where: ALERTS,
        by: 'rule',
        fill: '0',
      }),
    ),
    {
      title: '正在告警 (Firing now)',
      description:
        'The last notification of each open alert (fired or reminded, not resolved) in the last 30 days; affected = devices an uplink outage names.',
      w: 24,
      h: 8,
      queries: [
        {
          query: `SELECT * FROM (SELECT last(firing) AS firing, last(kind) AS kind, last(alert_id) AS alert_id, last(message) AS message, last(affected) AS affected FROM alert WHERE ${OPEN} GROUP BY school, device, rule, severity, subject) WHERE firing = 1`,
          format: 'table',
          expect: [
            'time',
            'firing',
            'kind',
            'alert_id',
            'message',
            'affected',
            'school',
            'device',
            'rule',
            'severity',
            'subject',
          ],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: '最近通知 (last notified)',
            firing: null,
            alert_id: null,
            severity: '级别 severity',
            rule: '规则 rule',
            school: '学校 school',
            device: '设备 device',
            subject: '部件 subject',
            kind: '通知 notification',
            message: '内容 message',
            affected: '影响设备 affected',
          },
          sortBy: { column: 'Time', desc: true },
        })
          .timeFrom('30d')
          .mappings([SEVERITY, KIND]),
    },
    {
      title: '各规则恢复时间 (Time to resolve per rule, minutes)',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT mean(duration_s) / 60 AS mttr_min, max(duration_s) / 60 AS max_min, count(duration_s) AS resolved FROM alert WHERE kind = 'resolved' AND ${ALERTS} GROUP BY rule`,
          format: 'table',
          expect: ['time', 'mttr_min', 'max_min', 'resolved', 'rule'],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: null,
            rule: '规则 rule',
            mttr_min: '平均 mean (min)',
            max_min: '最长 max (min)',
            resolved: '已恢复 resolved',
          },
          sortBy: { column: 'mttr_min', desc: true },
        })
          .decimals(1)
          .overrideByName('resolved', [{ id: 'decimals', value: 0 }]),
    },
    {
      title: '设备事件统计 (Device events by school and type)',
      description: 'Faults, reboots, SNMP unreachable and clock skew reported by agents and pollers.',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT count(message) AS events FROM event WHERE ${DEVICE_EVENTS} GROUP BY school, type`,
          format: 'table',
          expect: ['time', 'events', 'school', 'type'],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          transformations: [groupingToMatrix('school', 'type', 'events')],
          footerSum: true,
        }).noValue('0'),
    },
    countsOverTime(
      '设备事件 (Device events over time: faults, reboots, unreachable)',
      seriesBy({
        select: 'count(message)',
        as: 'events',
        from: 'event',
        where: DEVICE_EVENTS,
        by: 'type',
        fill: '0',
      }),
    ),
    {
      title: '最近通知 (Recent notifications)',
      w: 24,
      h: 9,
      queries: [
        {
          query: `SELECT kind, severity, rule, school, device, message, affected, duration_s FROM alert WHERE ${ALERTS} ORDER BY time DESC LIMIT 200`,
          format: 'table',
          expect: [
            'time',
            'kind',
            'severity',
            'rule',
            'school',
            'device',
            'message',
            'affected',
            'duration_s',
          ],
        },
      ],
      viz: () =>
        tablePanel({
          columns: {
            Time: '时间 time',
            kind: '通知 notification',
            severity: '级别 severity',
            rule: '规则 rule',
            school: '学校 school',
            device: '设备 device',
            message: '内容 message',
            affected: '影响设备 affected',
            duration_s: '持续 duration',
          },
        })
          .mappings([SEVERITY, KIND])
          .overrideByName('duration_s', [{ id: 'unit', value: 's' }]),
    },
  ],
};
