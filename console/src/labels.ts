/** Chinese labels for the API's stable codes (the code stays visible on hover). */
export const AREA: Record<string, string> = { urban: '城镇', rural: '农村' };
export const LEVEL: Record<string, string> = {
  primary: '小学',
  junior: '初中',
  senior: '高中',
  nine_year: '九年一贯制',
  twelve_year: '十二年一贯制',
  complete_secondary: '完全中学',
  teaching_point: '教学点',
  vocational: '中职',
  special: '特殊教育',
};
export const KIND: Record<string, string> = {
  whiteboard: '交互式白板',
  panel: '交互式平板',
  projector: '投影机',
  ops: 'OPS 电脑',
  teacher_pc: '教师电脑',
  student_pc: '学生电脑',
  router: '路由器',
  switch: '交换机',
  ap: '无线 AP',
};
export const RULE: Record<string, string> = {
  device_offline: '教室设备离线',
  uplink_down: '学校出口中断',
  uplink_saturated: '出口拥塞',
  display_fault: '显示设备故障',
  device_rebooted: '设备重启',
  snmp_unreachable: '网络设备无应答',
  clock_skew: '设备时钟偏差',
  data_gap: '数据中断',
};
export const SEVERITY: Record<string, string> = { info: '提示', warning: '警告', critical: '严重' };
export const STATE: Record<string, string> = {
  online: '在线',
  offline: '离线',
  unknown: '未知',
  pending: '待确认',
  firing: '告警中',
  resolved: '已恢复',
};
export const label = (table: Record<string, string>, code: string | null | undefined) =>
  code === null || code === undefined ? '—' : (table[code] ?? code);
