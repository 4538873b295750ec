import type { Notification, NotificationItem } from './engine.js';
import { RULE_TITLES, type Severity } from './rules.js';

/**
 * A notification as staff read it: in Chinese, with region, school and classroom names and a link back to
 * the API; as markdown (WeCom, DingTalk), plain text (Feishu, e-mail) and data (the generic webhook).
 */

/** Names for messages, from the registry. */
export interface Names {
  schoolName(school: string): string;
  /** Region names from the top, e.g. 浙江省 杭州市 西湖区. */
  regionNames(school: string): string;
  regionPath(school: string): string | undefined;
  classroomName(school: string, device: string): string | undefined;
}

export interface Rendered {
  title: string;
  /** Markdown for the robots that render it. */
  markdown: string;
  /** Plain text (Feishu text messages, e-mail). */
  text: string;
  severity: Severity;
  /** The highest severity among what a resolve-only message resolves. */
  resolvedSeverity: Severity;
  /** The notification as data, for the generic webhook. */
  json: unknown;
}

const KIND_LABEL: Record<NotificationItem['kind'], string> = {
  firing: '告警',
  reminder: '仍未恢复',
  resolved: '已恢复',
};
const SEVERITY_LABEL: Record<Severity, string> = { info: '提示', warning: '警告', critical: '严重' };
export const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

/** China Standard Time, as staff read it: 2026-10-08 08:05. */
export function cst(ms: number): string {
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 16).replace('T', ' ');
}

export function render(n: Notification, names: Names, linkBase: string | undefined): Rendered {
  const severity = n.items.reduce<Severity>(
    (s, i) => (i.kind !== 'resolved' && RANK[i.alert.severity] > RANK[s] ? i.alert.severity : s),
    'info',
  );
  const allResolved = n.items.every((i) => i.kind === 'resolved');
  const resolvedSeverity = n.items.reduce<Severity>(
    (s, i) => (i.kind === 'resolved' && RANK[i.alert.severity] > RANK[s] ? i.alert.severity : s),
    'info',
  );
  const school = names.schoolName(n.school);
  const where = `${names.regionNames(n.school)} ${school}`.trim();
  const title = `【${allResolved ? '已恢复' : SEVERITY_LABEL[severity]}】${where}：${[...new Set(n.items.map((i) => RULE_TITLES[i.alert.rule]))].join('、')}`;
  const lines = n.items.map((i) => {
    const a = i.alert;
    const room = a.device ? names.classroomName(a.school, a.device) : undefined;
    const target = [room, a.device].filter(Boolean).join(' ');
    const since = `开始 ${cst(a.startedAtMs)}`;
    const end = i.kind === 'resolved' && a.resolvedAtMs ? `，恢复 ${cst(a.resolvedAtMs)}` : '';
    const affected =
      a.affected.length > 0
        ? `；受影响设备 ${a.affected.length} 台：${a.affected.slice(0, 20).join('、')}${a.affected.length > 20 ? ' 等' : ''}`
        : '';
    const flap = a.flapping ? '（频繁波动）' : '';
    return `${KIND_LABEL[i.kind]}：${RULE_TITLES[a.rule]}${flap}${target ? ` — ${target}` : ''}（${since}${end}）${a.message ? `。${a.message}` : ''}${affected}`;
  });
  const link = linkBase
    ? `${linkBase.replace(/\/$/, '')}/v1/schools/${encodeURIComponent(n.school)}`
    : undefined;
  const text = [title, ...lines, ...(link ? [`详情：${link}`] : [])].join('\n');
  const markdown = [
    `### ${title}`,
    ...lines.map((l) => `- ${l}`),
    ...(link ? [`[查看详情](${link})`] : []),
  ].join('\n');
  const json = {
    version: 1,
    school: n.school,
    schoolName: school,
    region: names.regionPath(n.school) ?? null,
    regionNames: names.regionNames(n.school),
    atMs: n.atMs,
    link: link ?? null,
    title,
    items: n.items.map((i) => ({
      kind: i.kind,
      id: i.alert.id,
      rule: i.alert.rule,
      severity: i.alert.severity,
      device: i.alert.device,
      classroom: i.alert.device ? (names.classroomName(i.alert.school, i.alert.device) ?? null) : null,
      subject: i.alert.subject,
      message: i.alert.message,
      startedAtMs: i.alert.startedAtMs,
      resolvedAtMs: i.alert.resolvedAtMs,
      affected: i.alert.affected,
      flapping: i.alert.flapping,
    })),
  };
  return { title, markdown, text, severity, resolvedSeverity, json };
}
