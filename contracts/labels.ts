import type { PERIOD_USE_BASES } from './influx.js';
import type { DEVICE_KINDS, DISPLAY_ERROR_KEYS, EVENT_TYPES, LEVELS, OPER_STATUSES } from './messages.js';
import type { AREAS, REGION_LEVELS, SCHOOL_LEVELS } from './registry.js';

/**
 * The Chinese label of every enumeration value and reason code the API hands out: one table, for the report
 * files (api/routes/reports.ts) and for the web console. Plain data with type-only imports — no zod, no Node
 * API — so a browser bundle can take it as it is (tests/contracts/labels.test.ts bundles it for the browser).
 *
 * Codes are the stable part: JSON responses carry codes, files carry the label with the code in a column of
 * its own (api/README.md, "Report files"). A label may be reworded; a code never changes meaning. The registry
 * importer accepts each label (and the aliases of contracts/registry.ts) as the value of its enumeration.
 */

/** Why a school or class room does not attain (api/README.md, "Reason codes"). Stable. */
export const REASON_CODES = [
  'no_calendar',
  'no_teaching_time',
  'not_rolled_up',
  'no_uplink_registered',
  'uplink_not_monitored',
  'uplink_availability_low',
  'uplink_capacity_low',
  'per_class_bandwidth_low',
  'uplink_congested',
  'link_quality_low',
  'not_equipped',
  'offline_too_often',
  'unhealthy',
  'used_too_little',
  'school_not_connected',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

type Labels<T extends readonly string[]> = { readonly [K in T[number]]: string };

export const LABELS = {
  reason: {
    no_calendar: '无校历',
    no_teaching_time: '统计期内无教学日',
    not_rolled_up: '数据尚未汇总',
    no_uplink_registered: '未登记出口设备',
    uplink_not_monitored: '出口无监测数据',
    uplink_availability_low: '出口可用率不足',
    uplink_capacity_low: '出口带宽不足',
    per_class_bandwidth_low: '班均带宽不足',
    uplink_congested: '出口拥塞',
    link_quality_low: '链路质量差',
    not_equipped: '未配备教学显示设备',
    offline_too_often: '在线天数不足',
    unhealthy: '故障时间过多',
    used_too_little: '使用节次不足',
    school_not_connected: '学校未达校校通',
  } satisfies Labels<typeof REASON_CODES>,
  /** 城乡 of a school. */
  area: { urban: '城区', rural: '农村' } satisfies Labels<typeof AREAS>,
  /** 办学类型. */
  schoolLevel: {
    primary: '小学',
    junior: '初中',
    senior: '高中',
    nine_year: '九年一贯制',
    twelve_year: '十二年一贯制',
    complete_secondary: '完全中学',
    teaching_point: '教学点',
    vocational: '中职',
    special: '特殊教育',
  } satisfies Labels<typeof SCHOOL_LEVELS>,
  /** 区域级别. */
  regionLevel: { province: '省', city: '市', county: '县（区）' } satisfies Labels<typeof REGION_LEVELS>,
  /** 设备类型. */
  deviceKind: {
    whiteboard: '交互式白板',
    panel: '交互式一体机',
    projector: '投影仪',
    teacher_pc: '教师机',
    student_pc: '学生机',
    router: '路由器',
    switch: '交换机',
    ap: '无线AP',
  } satisfies Labels<typeof DEVICE_KINDS>,
  /** A registered device's live state (`/v1/devices`). */
  liveState: { online: '在线', offline: '离线', unknown: '未知' },
  /** Why a device's status changed (`…/status`: its birth, its last will, a clean stop). */
  statusReason: { birth: '上线', will: '异常断开', shutdown: '正常关闭' },
  /** IF-MIB ifOperStatus of an interface (RFC 2863 §6). */
  operStatus: {
    up: '正常',
    down: '中断',
    testing: '测试中',
    unknown: '未知',
    dormant: '休眠',
    notPresent: '不存在',
    lowerLayerDown: '下层中断',
  } satisfies Labels<typeof OPER_STATUSES>,
  /** PJLink `POWR` of a display. */
  displayPower: { off: '关机', on: '开机', cooling: '冷却中', warming: '预热中', unknown: '未知' },
  /** PJLink `ERST` parts of a display. */
  displayError: {
    fan: '风扇',
    lamp: '灯泡',
    temperature: '温度',
    cover: '机盖',
    filter: '滤网',
    other: '其他',
  } satisfies Labels<typeof DISPLAY_ERROR_KEYS>,
  /** The level of each `ERST` part. */
  errorLevel: { ok: '正常', warning: '警告', error: '故障' } satisfies Labels<typeof LEVELS>,
  /** A device event's type. */
  eventType: {
    reboot: '重启',
    fault: '故障',
    fault_cleared: '故障解除',
    status_change: '状态变化',
    unreachable: '无法访问',
    recovered: '恢复',
    clock_skew: '时钟偏差',
  } satisfies Labels<typeof EVENT_TYPES>,
  /** A device event's severity. */
  severity: { info: '提示', warning: '警告', critical: '严重' },

  /** Alert rules (alerting/rules.ts names them; notifications and the console show these titles). */
  alertRule: {
    device_offline: '教室设备离线',
    uplink_down: '学校出口中断',
    uplink_saturated: '学校出口拥塞',
    link_quality_low: '学校出口链路质量差',
    management_down: '出口设备管理中断',
    display_fault: '显示设备故障',
    device_rebooted: '设备重启',
    snmp_unreachable: '网络设备无法访问',
    clock_skew: '设备时钟偏差',
    data_gap: '数据中断',
  },
  alertState: { pending: '待确认', firing: '告警中', resolved: '已恢复' },
  /** What holds now for a school's uplink (`state` in `/v1/schools` and the live stream; common/live.ts). */
  uplinkState: { up: '正常', down: '中断', stale: '无数据' },
  /** Where a school's uplink capacity comes from. */
  capacitySource: { contract: '签约带宽', polled: '端口速率（实测）' },
  /** How a rollup row splits its region's schools; its group is `all`, an area or a school level. */
  split: { all: '合计', area: '城乡', level: '办学类型' },
  /**
   * What a device's or classroom's use figures rest on (docs/usage.md): input and teaching applications on its
   * computer, the display being on alone (an older agent, or no activity source), or partly each.
   */
  useBasis: {
    activity: '按操作活动判定',
    power: '仅按开机判定',
    mixed: '部分仅按开机判定',
  } satisfies Labels<typeof PERIOD_USE_BASES>,
  /** A yes/no verdict; `null` is "not applicable" (not judged, not known). */
  verdict: { true: '是', false: '否', null: '不适用' },
} as const;

export type LabelTable = keyof typeof LABELS;

/** The label of `code` in `table`; an unknown code is shown as itself (a newer server, an older console). */
export function labelOf(table: LabelTable, code: string): string {
  const t: Record<string, string> = LABELS[table];
  return Object.hasOwn(t, code) ? t[code]! : code;
}
