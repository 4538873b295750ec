import { z } from 'zod';
import { idSchema, UNASSIGNED_REGION } from './ids.js';
import { LABELS } from './labels.js';
import { DEVICE_KINDS } from './messages.js';

/**
 * The fleet registry: regions ▸ schools ▸ classrooms ▸ devices. Bureaus keep it in spreadsheets, so every field
 * has an English key (YAML, JSON, CSV headers) and a Chinese label (the header a bureau's workbook carries), and
 * every enumeration accepts its Chinese name. Types are what a YAML file holds; `common/registry/import.ts`
 * turns spreadsheet cells into them first.
 */

export const REGION_LEVELS = ['province', 'city', 'county'] as const;
/** 办学类型: 小学, 初中, 高中, 九年一贯制, 十二年一贯制, 完全中学, 教学点, 中职, 特殊教育. */
export const SCHOOL_LEVELS = [
  'primary',
  'junior',
  'senior',
  'nine_year',
  'twelve_year',
  'complete_secondary',
  'teaching_point',
  'vocational',
  'special',
] as const;
export const AREAS = ['urban', 'rural'] as const;

/** `[label, ...aliases]` per value: the label of contracts/labels.ts first, then the other names accepted. */
function accepted<K extends string>(
  labels: { readonly [k in K]: string },
  aliases: { readonly [k in K]?: readonly string[] },
): Record<K, readonly string[]> {
  const out = {} as Record<K, readonly string[]>;
  for (const k of Object.keys(labels) as K[])
    out[k] = [labels[k], ...(aliases[k] ?? []).filter((a) => a !== labels[k])];
  return out;
}

/**
 * Chinese names accepted for each enumeration value by the importer: the label (contracts/labels.ts, what the
 * exports and the registry template write) and the names bureaus' own workbooks use.
 */
export const ENUM_LABELS: Record<string, Record<string, readonly string[]>> = {
  level: accepted(LABELS.regionLevel, {
    province: ['省'],
    city: ['市', '地市'],
    county: ['县', '区', '县区', '县(区)'],
  }),
  schoolLevel: accepted(LABELS.schoolLevel, {
    junior: ['初级中学'],
    senior: ['高级中学'],
    nine_year: ['九年一贯制学校'],
    twelve_year: ['十二年一贯制学校'],
    vocational: ['中等职业学校'],
    special: ['特殊教育学校', '特教'],
  }),
  area: accepted(LABELS.area, { urban: ['城市', '城镇'], rural: ['乡村'] }),
  probeMethod: { icmp: ['ICMP', 'ping', 'PING'], tcp: ['TCP'] },
  kind: accepted(LABELS.deviceKind, {
    whiteboard: ['白板', '电子白板'],
    panel: ['一体机', '触控一体机', '智慧黑板'],
    projector: ['投影机'],
    teacher_pc: ['教师电脑', 'OPS'],
    student_pc: ['学生电脑'],
    ap: ['AP', '无线接入点'],
  }),
};

/** Teaching displays: a classroom with one of these is "equipped" for 班班通. */
export const DISPLAY_KINDS = ['whiteboard', 'panel', 'projector'] as const;
export const COMPUTER_KINDS = ['teacher_pc', 'student_pc'] as const;
export const NETWORK_KINDS = ['router', 'switch', 'ap'] as const;
/** Whether a device of this kind has interfaces (iface readings, uplinks). */
export const isNetworkKind = (kind: string): boolean => (NETWORK_KINDS as readonly string[]).includes(kind);

const dateSchema = z.iso.date({ message: 'must be a date YYYY-MM-DD' });

/** An IPv4 or IPv6 address or a DNS host name (RFC 1123 labels), as a management or probe address. */
export const hostSchema = z.union([z.ipv4(), z.ipv6(), z.hostname().max(253)], {
  message: 'must be an IPv4 or IPv6 address or a host name',
});

/**
 * The name of a credential in the pollers' credentials file (docs/links.md): a reference, so the registry, its
 * imports and exports never hold a community string or a key.
 */
export const credentialRefSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, {
  message: 'must be a credential name (letters, digits, _ . -)',
});
const portSchema = z
  .number()
  .int({ message: 'must be a port number 1..65535' })
  .min(1, { message: 'must be a port number 1..65535' })
  .max(65_535, { message: 'must be a port number 1..65535' });
export const PROBE_METHODS = ['icmp', 'tcp'] as const;

/**
 * Why a device's probe settings do not fit together, as `[field, message]`, or undefined: `probePort` is
 * required with `probeMethod` tcp and means nothing with icmp (the default). The merge checks it on the merged
 * device, so a file that updates only one of the two columns is judged with the other's stored value.
 */
export function probeSettingsProblem(d: {
  probeMethod?: (typeof PROBE_METHODS)[number];
  probePort?: number;
}): [key: 'probePort', message: string] | undefined {
  if (d.probeMethod === 'tcp' && d.probePort === undefined)
    return ['probePort', 'is required with probeMethod tcp'];
  if (d.probeMethod !== 'tcp' && d.probePort !== undefined)
    return ['probePort', 'is only for probeMethod tcp (the method is icmp)'];
  return undefined;
}

const count = (what: string) =>
  z
    .number()
    .int({ message: `${what} must be a whole number` })
    .min(0)
    .max(1_000_000);

export const regionSchema = z.strictObject({
  id: idSchema
    .refine((id) => id !== UNASSIGNED_REGION, {
      message: `"${UNASSIGNED_REGION}" is reserved for the readings of unregistered devices`,
    })
    .describe('Administrative division code (行政区划代码), e.g. 330106.'),
  name: z.string().min(1).max(64),
  level: z.enum(REGION_LEVELS),
  parent: idSchema.optional().describe('The enclosing region; absent for the top of the hierarchy.'),
});
export type Region = z.infer<typeof regionSchema>;

export const schoolSchema = z.strictObject({
  id: idSchema.describe('School identification code (学校标识码).'),
  name: z.string().min(1).max(128),
  region: idSchema.describe('The region (usually the county) the school belongs to.'),
  area: z.enum(AREAS),
  level: z.enum(SCHOOL_LEVELS),
  classes: count('classes').describe('Number of classes (教学班).'),
  students: count('students'),
  teachers: count('teachers'),
  uplinkDevice: idSchema
    .optional()
    .describe("The router or switch carrying the school's uplink (a device id)."),
  uplinkInterface: z
    .union([z.string().min(1).max(128), z.number().int().min(1)])
    .optional()
    .describe('Its uplink interface: ifName or ifIndex.'),
  contractedMbps: z.number().positive().max(1_000_000).optional().describe('Contracted uplink bandwidth.'),
});
export type School = z.infer<typeof schoolSchema>;

export const classroomSchema = z.strictObject({
  id: idSchema,
  school: idSchema,
  name: z.string().min(1).max(64),
  isClass: z
    .boolean()
    .default(true)
    .describe("A class's own room (counted for 班班通); false for labs, halls."),
});
export type Classroom = z.infer<typeof classroomSchema>;

export const deviceSchema = z.strictObject({
  id: idSchema.describe('The device id it reports under (MQTT topic level).'),
  school: idSchema,
  classroom: idSchema.optional(),
  kind: z.enum(DEVICE_KINDS),
  serial: z.string().max(64).optional(),
  vendor: z.string().max(64).optional(),
  model: z.string().max(64).optional(),
  batch: z.string().max(64).optional().describe('Purchase batch (采购批次).'),
  purchasedOn: dateSchema.optional(),
  // How a network device is reached (docs/links.md, #17): the poller derives its targets from these.
  mgmtAddress: hostSchema
    .optional()
    .describe(
      'Management address of a router/switch: an IPv4 or IPv6 address or a host name (SNMP is polled there).',
    ),
  snmpVersion: z
    .enum(['2c', '3'])
    .optional()
    .describe('SNMP version; with `credentialRef` and `mgmtAddress`, the device is polled.'),
  credentialRef: credentialRefSchema
    .optional()
    .describe(
      "The name of its SNMP credential in the pollers' credentials file — never the community or key itself.",
    ),
  probeAddress: hostSchema
    .optional()
    .describe(
      "Where reachability and link quality are probed (the school's uplink: its far side, the router, or any address that answers); default its `mgmtAddress`.",
    ),
  snmpPort: portSchema
    .optional()
    .describe("Its SNMP port, when not the poller's `poller.registryTargets.port` (default 161)."),
  probeMethod: z
    .enum(PROBE_METHODS)
    .optional()
    .describe(
      'How it is probed: icmp (ping; the default) or tcp (connect time to `probePort`, where ICMP is filtered).',
    ),
  probePort: portSchema
    .optional()
    .describe('The TCP port probed: required with `probeMethod` tcp, and only then.'),
});
export type Device = z.infer<typeof deviceSchema>;

export const registrySchema = z.strictObject({
  regions: z.array(regionSchema).default([]),
  schools: z.array(schoolSchema).default([]),
  classrooms: z.array(classroomSchema).default([]),
  devices: z.array(deviceSchema).default([]),
});
export type Registry = z.infer<typeof registrySchema>;
export type EntityName = keyof Registry;
export const ENTITIES = [
  'regions',
  'schools',
  'classrooms',
  'devices',
] as const satisfies readonly EntityName[];

/** `port`: a whole number 1..65535 (read as `int`; the schema bounds it). */
export type CellType = 'id' | 'text' | 'int' | 'port' | 'number' | 'bool' | 'date' | 'idOrInt';
export interface ColumnSpec {
  key: string;
  /** Chinese header labels accepted (the first is used in exports). */
  labels: readonly string[];
  type: CellType;
  /** Which ENUM_LABELS table translates Chinese values. */
  enumLabels?: keyof typeof ENUM_LABELS;
  /** What the column means, in Chinese: the registry template's notes sheet (GET /v1/registry/template.xlsx). */
  note: string;
}

/** Spreadsheet columns per entity, in export order. Sheet names: the English entity or its Chinese label. */
export const SHEETS: Record<EntityName, { labels: readonly string[]; columns: readonly ColumnSpec[] }> = {
  regions: {
    labels: ['区域', '行政区划'],
    columns: [
      {
        key: 'id',
        labels: ['区划代码', '代码'],
        type: 'id',
        note: '行政区划代码，如 330106；区域的唯一编号',
      },
      { key: 'name', labels: ['名称', '区域名称'], type: 'text', note: '区域名称，如 西湖区' },
      { key: 'level', labels: ['级别'], type: 'text', enumLabels: 'level', note: '区域级别' },
      {
        key: 'parent',
        labels: ['上级代码', '上级区划代码'],
        type: 'id',
        note: '上级区域的区划代码（须已登记或在本表中）；最高一级留空',
      },
    ],
  },
  schools: {
    labels: ['学校'],
    columns: [
      {
        key: 'id',
        labels: ['学校标识码', '学校代码'],
        type: 'id',
        note: '学校标识码（10 位）；学校的唯一编号',
      },
      { key: 'name', labels: ['学校名称'], type: 'text', note: '学校名称' },
      {
        key: 'region',
        labels: ['所属区划代码', '区划代码'],
        type: 'id',
        note: '学校所属区域（通常是县区）的区划代码，须已登记或在“区域”表中',
      },
      {
        key: 'area',
        labels: ['城乡', '城乡类型'],
        type: 'text',
        enumLabels: 'area',
        note: '城区或农村：决定班均带宽的达标标准',
      },
      {
        key: 'level',
        labels: ['办学类型', '学段'],
        type: 'text',
        enumLabels: 'schoolLevel',
        note: '办学类型',
      },
      {
        key: 'classes',
        labels: ['班级数'],
        type: 'int',
        note: '教学班数：班班通的分母，班均带宽 = 出口带宽 ÷ 班级数',
      },
      { key: 'students', labels: ['学生数'], type: 'int', note: '在校学生数（生机比）' },
      { key: 'teachers', labels: ['教师数'], type: 'int', note: '专任教师数（师机比）' },
      {
        key: 'uplinkDevice',
        labels: ['出口设备'],
        type: 'id',
        note: '承载学校出口的路由器或交换机的设备编号，须在“设备”表中且类型为路由器或交换机；未接入监测可留空',
      },
      {
        key: 'uplinkInterface',
        labels: ['出口接口'],
        type: 'idOrInt',
        note: '出口设备上的出口接口：接口名（ifName，如 GigabitEthernet0/0/1）或接口索引（ifIndex）',
      },
      {
        key: 'contractedMbps',
        labels: ['签约带宽(Mbps)', '签约带宽'],
        type: 'number',
        note: '签约出口带宽（Mbps）；留空则用监测到的端口速率',
      },
    ],
  },
  classrooms: {
    labels: ['教室'],
    columns: [
      { key: 'id', labels: ['教室编号'], type: 'id', note: '教室编号，在本校内唯一' },
      { key: 'school', labels: ['学校标识码', '学校代码'], type: 'id', note: '教室所属学校的学校标识码' },
      { key: 'name', labels: ['教室名称'], type: 'text', note: '教室名称，如 一年级(2)班' },
      {
        key: 'isClass',
        labels: ['班级教室', '是否班级教室'],
        type: 'bool',
        note: '是：班级的固定教室，计入班班通；否：实验室、功能室、礼堂等。留空为是',
      },
    ],
  },
  devices: {
    labels: ['设备'],
    columns: [
      {
        key: 'id',
        labels: ['设备编号'],
        type: 'id',
        note: '设备上报时用的设备编号（MQTT 主题中的设备编号），在本校内唯一',
      },
      { key: 'school', labels: ['学校标识码', '学校代码'], type: 'id', note: '设备所属学校的学校标识码' },
      {
        key: 'classroom',
        labels: ['教室编号'],
        type: 'id',
        note: '设备所在教室的教室编号（本校的）；出口路由器、交换机等可留空',
      },
      {
        key: 'kind',
        labels: ['设备类型', '类型'],
        type: 'text',
        enumLabels: 'kind',
        note: '设备类型：白板、一体机、投影仪是教学显示设备（班班通），教师机、学生机计入师机比、生机比',
      },
      { key: 'serial', labels: ['序列号'], type: 'text', note: '设备序列号' },
      { key: 'vendor', labels: ['品牌', '厂商'], type: 'text', note: '品牌或厂商' },
      { key: 'model', labels: ['型号'], type: 'text', note: '型号' },
      { key: 'batch', labels: ['采购批次'], type: 'text', note: '采购批次，闲置设备清单按批次列出' },
      { key: 'purchasedOn', labels: ['采购日期'], type: 'date', note: '采购日期' },
      {
        key: 'mgmtAddress',
        labels: ['管理地址'],
        type: 'text',
        note: '路由器/交换机的管理地址（IPv4、IPv6 或域名），SNMP 轮询此地址',
      },
      { key: 'snmpVersion', labels: ['SNMP版本'], type: 'text', note: 'SNMP 版本：2c 或 3' },
      {
        key: 'credentialRef',
        labels: ['凭据名称', '凭据'],
        type: 'text',
        note: '轮询程序凭据文件中该设备 SNMP 凭据的名称；不要填写团体名或密码本身',
      },
      {
        key: 'probeAddress',
        labels: ['探测地址'],
        type: 'text',
        note: '探测连通性与链路质量（时延、丢包、抖动）的地址；默认为管理地址',
      },
      {
        key: 'snmpPort',
        labels: ['SNMP端口'],
        type: 'port',
        note: 'SNMP 端口（1–65535）；留空为轮询程序的默认端口（通常 161）',
      },
      {
        key: 'probeMethod',
        labels: ['探测方式'],
        type: 'text',
        enumLabels: 'probeMethod',
        note: '探测方式：ICMP（ping，留空时的默认）或 TCP（连接探测端口，用于屏蔽了 ICMP 的出口）',
      },
      {
        key: 'probePort',
        labels: ['探测端口'],
        type: 'port',
        note: 'TCP 探测的端口（1–65535）：探测方式为 TCP 时必填，ICMP 时须留空',
      },
    ],
  },
};
