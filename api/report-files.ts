import { CST_OFFSET_MS } from '../common/calendar.js';
import type { RollupRow } from '../common/figures/regions.js';
import type {
  ClassroomResult,
  Coverage,
  DeviceAudit,
  Evaluation,
  Reason,
  SchoolResult,
} from '../common/figures/results.js';
import type { RegistryIndex } from '../common/registry/store.js';
import { type LabelTable, labelOf } from '../contracts/labels.js';
import { CONTENT_TYPES, type ExportColumn, toCsv, toXlsx } from './export.js';

/**
 * What the report files (`?format=csv|xlsx`, api/routes/reports.ts) hold, for the people who read them: Chinese
 * headers and labels with the stable codes beside them, the names of every school, classroom and region next to
 * its id, and the coverage the figures were judged on (api/README.md, "Report files").
 */

export type ReportKind = 'attainment' | 'schools' | 'classrooms' | 'usage' | 'idle';

/** The data sheet's name in a workbook, and the report's title in its notes. */
const TITLES: Record<ReportKind, string> = {
  attainment: '区域达标汇总',
  schools: '学校校校通',
  classrooms: '教室班班通',
  usage: '设备使用审计',
  idle: '闲置设备',
};

/**
 * Enumerations and reasons in files: the Chinese label (contracts/labels.ts) under the header, then its stable
 * code in a column of its own, headed the same plus 代码 — `城乡` 农村, `城乡代码` rural. Several reasons are
 * joined by `；` (labels) and `;` (codes), in the same order.
 */
function coded<T>(header: string, table: LabelTable, codes: (row: T) => string | readonly string[]) {
  const list = (r: T) => [codes(r)].flat();
  return [
    {
      header,
      value: (r: T) =>
        list(r)
          .map((c) => labelOf(table, c))
          .join('；'),
    },
    { header: `${header}代码`, value: (r: T) => list(r).join(';') },
  ] satisfies ExportColumn<T>[];
}
/** The reasons as labels and codes, then their messages: the figures behind each (`原因说明`). */
function reasonColumns<T>(reasons: (row: T) => readonly Reason[]): ExportColumn<T>[] {
  return [
    ...coded<T>('未达标原因', 'reason', (r) => reasons(r).map((x) => x.code)),
    {
      header: '原因说明',
      value: (r) =>
        reasons(r)
          .map((x) => x.message)
          .join('; '),
    },
  ];
}
const verdict = (b: boolean | null) => labelOf('verdict', String(b));
/** A rollup row's group: `all`, an area or a school level. */
const groupTable = (split: RollupRow['split']): LabelTable =>
  split === 'all' ? 'split' : split === 'area' ? 'area' : 'schoolLevel';

/** The school a row belongs to, by id and name, and its region by path and name (from the registry). */
function schoolColumns<T>(reg: RegistryIndex, school: (row: T) => string): ExportColumn<T>[] {
  const regionOf = (r: T) => {
    const s = reg.schools.get(school(r));
    return s ? reg.regions.get(s.region) : undefined;
  };
  return [
    { header: '学校标识码', value: school },
    { header: '学校名称', value: (r) => reg.schools.get(school(r))?.name },
    { header: '区域代码', value: (r) => reg.schoolPath(school(r)) },
    { header: '区域', value: (r) => regionOf(r)?.name },
  ];
}

const ROLLUP_COLUMNS: ExportColumn<RollupRow>[] = [
  { header: '区域代码', value: (r) => r.region },
  { header: '区域', value: (r) => r.regionName },
  ...coded<RollupRow>('区域级别', 'regionLevel', (r) => r.regionLevel),
  { header: '分组', value: (r) => labelOf(groupTable(r.split), r.group) },
  { header: '分组代码', value: (r) => r.group },
  { header: '学校数', value: (r) => r.schools },
  { header: '参评学校数', value: (r) => r.judgedSchools },
  { header: '校校通达标学校', value: (r) => r.schoolsAttained },
  { header: '校校通达标率%', value: (r) => r.xxtPct },
  { header: '班级数', value: (r) => r.classes },
  { header: '班班通达标班级', value: (r) => r.classesAttained },
  { header: '班班通达标率%', value: (r) => r.bbtPct },
  { header: '未监测班级', value: (r) => r.classesUnmonitored },
  { header: '生机比', value: (r) => r.studentsPerComputer },
  { header: '师机比', value: (r) => r.teachersPerComputer },
];
const SCHOOL_COLUMNS = (reg: RegistryIndex): ExportColumn<SchoolResult>[] => [
  ...schoolColumns<SchoolResult>(reg, (s) => s.id),
  ...coded<SchoolResult>('城乡', 'area', (s) => s.area),
  ...coded<SchoolResult>('办学类型', 'schoolLevel', (s) => s.level),
  { header: '教学日', value: (s) => s.teachingDays },
  { header: '出口可用率%', value: (s) => s.uplink.availabilityPct },
  { header: '出口带宽Mbps', value: (s) => s.uplink.capacityMbps },
  ...coded<SchoolResult>('带宽来源', 'capacitySource', (s) => s.uplink.capacitySource ?? []),
  // 班均: per class (capacity ÷ classes); 生均 would mean per student.
  { header: '班均带宽Mbps', value: (s) => s.uplink.perClassMbps },
  { header: '拥塞', value: (s) => verdict(s.uplink.congested) },
  { header: '校校通达标', value: (s) => verdict(s.xxt.attained) },
  ...reasonColumns<SchoolResult>((s) => s.xxt.reasons),
  { header: '班级数', value: (s) => s.bbt.classes },
  { header: '班班通达标班级', value: (s) => s.bbt.attained },
  { header: '未监测班级', value: (s) => s.bbt.unmonitored },
];
const CLASSROOM_COLUMNS = (reg: RegistryIndex): ExportColumn<ClassroomResult>[] => [
  { header: '教室编号', value: (c) => c.id },
  { header: '教室名称', value: (c) => c.name },
  ...schoolColumns<ClassroomResult>(reg, (c) => c.school),
  { header: '班班通达标', value: (c) => verdict(c.attained) },
  { header: '在线天数', value: (c) => c.onlineDays },
  { header: '教学日', value: (c) => c.teachingDays },
  { header: '周均使用节次', value: (c) => c.periodsUsedPerWeek },
  { header: '故障时间%', value: (c) => c.faultyPct },
  // Use in teaching time, of the room's best display; left on, of all its displays (api/README.md, Definitions).
  { header: '教学时间开机小时', value: (c) => c.onHours },
  { header: '教学时间使用小时', value: (c) => c.inUseHours },
  { header: '开机未使用小时', value: (c) => c.onUnusedHours },
  { header: '使用节次', value: (c) => c.periodsUsed },
  { header: '周均使用小时', value: (c) => c.usedHoursPerWeek },
  { header: '非教学时间开机小时', value: (c) => c.leftOnHours },
  ...coded<ClassroomResult>('使用判定依据', 'useBasis', (c) => c.useBasis ?? []),
  ...reasonColumns<ClassroomResult>((c) => c.reasons),
];
const DEVICE_COLUMNS = (reg: RegistryIndex): ExportColumn<DeviceAudit>[] => [
  { header: '设备编号', value: (d) => d.id },
  ...coded<DeviceAudit>('设备类型', 'deviceKind', (d) => d.kind),
  ...schoolColumns<DeviceAudit>(reg, (d) => d.school),
  { header: '教室编号', value: (d) => d.classroom },
  {
    header: '教室名称',
    value: (d) => (d.classroom === null ? null : reg.classroom(d.school, d.classroom)?.name),
  },
  { header: '采购批次', value: (d) => d.batch },
  { header: '采购日期', value: (d) => d.purchasedOn },
  { header: '教学时间开机小时', value: (d) => d.poweredOnHours },
  { header: '教学时间使用小时', value: (d) => d.inUseHours },
  { header: '开机未使用小时', value: (d) => d.onUnusedHours },
  { header: '使用节次', value: (d) => d.periodsUsed },
  { header: '周均使用小时', value: (d) => d.usedHoursPerWeek },
  { header: '非教学时间开机小时', value: (d) => d.leftOnHours },
  ...coded<DeviceAudit>('使用判定依据', 'useBasis', (d) => d.useBasis ?? []),
  { header: '使用天数', value: (d) => d.daysUsed },
  { header: '教学日', value: (d) => d.teachingDays },
  { header: '使用率%', value: (d) => d.usedDaysPct },
  { header: '最近使用', value: (d) => d.lastUsed },
  { header: '连续未用教学日', value: (d) => d.idleTeachingDays },
  { header: '闲置', value: (d) => verdict(d.idle) },
];

interface RowsOf {
  attainment: RollupRow;
  schools: SchoolResult;
  classrooms: ClassroomResult;
  usage: DeviceAudit;
  idle: DeviceAudit;
}
const COLUMNS: { [K in ReportKind]: (reg: RegistryIndex) => ExportColumn<RowsOf[K]>[] } = {
  attainment: () => ROLLUP_COLUMNS,
  schools: SCHOOL_COLUMNS,
  classrooms: CLASSROOM_COLUMNS,
  usage: DEVICE_COLUMNS,
  idle: DEVICE_COLUMNS,
};

/** `已汇总 4 / 21 个教学日`: words around the numbers, so that no spreadsheet reads `4/21` as a date. */
export function coverageText(c: Coverage): string {
  return `已汇总 ${c.rolledDays} / ${c.teachingDates} 个教学日`;
}

/** The `X-CFM-Coverage` response header of a report file: the JSON `coverage`, for tools. */
export function coverageHeader(c: Coverage): string {
  return `rolledDays=${c.rolledDays}; teachingDates=${c.teachingDates}`;
}

export interface ReportFileInfo {
  ev: Evaluation;
  /** Coverage by the calendars of the schools the file covers (the scope, narrowed by `?region=`). */
  coverage: Coverage;
  /** The region path the file covers; undefined: every region. */
  scope: string | undefined;
  profileName: string;
  reg: RegistryIndex;
  now?: Date;
}

/** The workbook's notes sheet: what the figures are, over what, judged on what. */
function notes(kind: ReportKind, info: ReportFileInfo): (readonly [string, string])[] {
  const { ev, coverage: c, scope, reg } = info;
  const region = scope === undefined ? undefined : reg.regions.get(scope.split('/').at(-1)!);
  const lines: (readonly [string, string])[] = [
    ['报表', TITLES[kind]],
    ['统计期', `${ev.period.from} 至 ${ev.period.to}`],
    ['评价标准', `${ev.profile}（${info.profileName}）`],
    ['范围', scope === undefined ? '全部区域' : `${region?.name ?? scope}（${scope}）`],
    [
      '评估覆盖',
      `${coverageText(c)}：统计期内截至今日的教学日 ${c.teachingDates} 个，已汇总 ${c.rolledDays} 个`,
    ],
  ];
  if (c.rolledDays < c.teachingDates)
    lines.push([
      '注意',
      `还有 ${c.teachingDates - c.rolledDays} 个教学日尚未汇总：表中数字只反映已汇总的 ${c.rolledDays} 个教学日`,
    ]);
  if (kind === 'usage' || kind === 'idle' || kind === 'classrooms')
    lines.push([
      '使用判定',
      '使用 = 教学显示设备开机，且教学计算机在设定时间内（collector.usage.activeWithinS，默认 5 分钟）有键盘、鼠标、触摸或笔的操作，或前台是教学软件或教学网站且在 collector.usage.teachingIdleWithinS（默认 20 分钟）内有过操作；开机未使用 = 教学时间内开机但未使用；非教学时间开机 = 第一节课前、最后一节课后及非教学日的开机时间；判定依据为“仅按开机判定”的设备（旧版教室客户端，或未能读取操作活动），其使用只按开机状态计',
    ]);
  if (kind === 'usage' || kind === 'idle')
    lines.push([
      '闲置判定',
      `连续 ${ev.idleDays} 个已汇总教学日未使用即为闲置（?idleDays=，默认取评价标准的设定）；最近使用从 ${ev.lookbackFrom} 起回溯`,
    ]);
  lines.push([
    '代码列',
    '列名以“代码”结尾的列是稳定代码（api/README.md），其左侧同名列是中文名称；是/否/不适用：不适用即未评估或未知',
  ]);
  lines.push([
    '生成时间',
    `${(info.now ?? new Date()).toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false })}（北京时间）`,
  ]);
  return lines;
}

/**
 * A report as a file: its columns with the names of what each row is about, then `评估覆盖` (the coverage, on
 * every row: a CSV has no place for a preamble that tools would not trip over); an XLSX also gets a notes sheet
 * `说明`. The caller sends `coverage` as the `X-CFM-Coverage` header.
 */
export async function reportFile<K extends ReportKind>(
  kind: K,
  format: 'csv' | 'xlsx',
  rows: readonly RowsOf[K][],
  info: ReportFileInfo,
): Promise<{ body: Buffer; filename: string; type: string }> {
  const text = coverageText(info.coverage);
  const columns = [...COLUMNS[kind](info.reg), { header: '评估覆盖', value: () => text }];
  const body =
    format === 'csv' ? toCsv(rows, columns) : await toXlsx(TITLES[kind], rows, columns, notes(kind, info));
  const { ev } = info;
  return {
    body,
    filename: `${kind}_${ev.period.from}_${ev.period.to}_${ev.profile}.${format}`,
    type: CONTENT_TYPES[format],
  };
}

/** An instant as China Standard Time, `2026-10-12 10:30:05`, as staff read it (no zone: files say 北京时间). */
export function cstTime(ms: number | null | undefined): string | null {
  if (ms === null || ms === undefined) return null;
  return new Date(ms + CST_OFFSET_MS).toISOString().slice(0, 19).replace('T', ' ');
}

/** A school's row of the uplink file: what `/v1/schools` answers for it. */
export interface UplinkRow {
  id: string;
  devices: { total: number; online: number; offline: number; unknown: number };
  uplink: {
    device: string;
    ifname: string;
    inBps: number | null;
    outBps: number | null;
    operStatus: string;
    tsMs: number;
    state: string;
    stateSinceMs: number;
    capacityMbps: number | null;
    capacitySource: string | null;
    utilisationPct: number | null;
  } | null;
}

const mbit = (bps: number | null | undefined) =>
  bps === null || bps === undefined ? null : Math.round(bps / 1e4) / 100;

const UPLINK_COLUMNS = (reg: RegistryIndex): ExportColumn<UplinkRow>[] => [
  ...schoolColumns<UplinkRow>(reg, (r) => r.id),
  // No reading at all: 未监测, and no code (the API's `uplink` is null).
  { header: '出口状态', value: (r) => (r.uplink ? labelOf('uplinkState', r.uplink.state) : '未监测') },
  { header: '出口状态代码', value: (r) => r.uplink?.state },
  { header: '利用率%', value: (r) => r.uplink?.utilisationPct },
  { header: '下行Mbps', value: (r) => mbit(r.uplink?.inBps) },
  { header: '上行Mbps', value: (r) => mbit(r.uplink?.outBps) },
  { header: '出口带宽Mbps', value: (r) => r.uplink?.capacityMbps },
  ...coded<UplinkRow>('带宽来源', 'capacitySource', (r) => r.uplink?.capacitySource ?? []),
  { header: '出口设备', value: (r) => r.uplink?.device },
  { header: '端口', value: (r) => r.uplink?.ifname },
  ...coded<UplinkRow>('端口状态', 'operStatus', (r) => r.uplink?.operStatus ?? []),
  { header: '读数时间（北京时间）', value: (r) => cstTime(r.uplink?.tsMs) },
  { header: '状态起始（北京时间）', value: (r) => cstTime(r.uplink?.stateSinceMs) },
  { header: '设备总数', value: (r) => r.devices.total },
  { header: '在线设备', value: (r) => r.devices.online },
  { header: '离线设备', value: (r) => r.devices.offline },
  { header: '状态未知设备', value: (r) => r.devices.unknown },
];

const UPLINK_RANK: Record<string, number> = { down: 0, stale: 1, up: 2 };

/**
 * The schools' uplinks now as a file (`/v1/schools?format=csv|xlsx`, the console's 网络 export): in the order an
 * operator reads them — down, then stale, then by utilisation (busiest first), schools without a reading last —
 * with Chinese labels beside the codes, names beside ids and times in China Standard Time; an XLSX also gets the
 * notes sheet 说明.
 */
export async function uplinkFile(
  format: 'csv' | 'xlsx',
  rows: readonly UplinkRow[],
  info: { reg: RegistryIndex; scope: string | undefined; staleAfterS: number; now?: Date },
): Promise<{ body: Buffer; filename: string; type: string }> {
  const rank = (r: UplinkRow) => (r.uplink ? (UPLINK_RANK[r.uplink.state] ?? 2) : 3);
  const sorted = [...rows].sort(
    (a, b) =>
      rank(a) - rank(b) ||
      (b.uplink?.utilisationPct ?? -1) - (a.uplink?.utilisationPct ?? -1) ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  const columns = UPLINK_COLUMNS(info.reg);
  const now = info.now ?? new Date();
  const made = cstTime(now.getTime())!;
  const region = info.scope === undefined ? undefined : info.reg.regions.get(info.scope.split('/').at(-1)!);
  const body =
    format === 'csv'
      ? toCsv(sorted, columns)
      : await toXlsx('学校出口', sorted, columns, [
          ['报表', '学校出口（实时）'],
          ['范围', info.scope === undefined ? '全部区域' : `${region?.name ?? info.scope}（${info.scope}）`],
          [
            '出口状态',
            `正常 up；中断 down：端口未运行，或路由器不再应答 SNMP；无数据 stale：超过 ${info.staleAfterS} 秒（api.live.staleAfterS）没有读数，其速率与端口状态已过时；未监测：尚无读数（代码为空）`,
          ],
          ['排序', '中断在前，其次无数据，再按利用率从高到低，未监测在后'],
          ['代码列', '列名以“代码”结尾的列是稳定代码（api/README.md），其左侧同名列是中文名称'],
          ['生成时间', `${made}（北京时间）`],
        ]);
  return {
    body,
    filename: `uplinks_${made.slice(0, 10)}_${made.slice(11, 13)}${made.slice(14, 16)}.${format}`,
    type: CONTENT_TYPES[format],
  };
}
