/** China Standard Time, as staff read it. */
const CST_MS = 8 * 3_600_000;
export function cst(ms: number | null | undefined, withDate = true): string {
  if (ms === null || ms === undefined) return '—';
  const s = new Date(ms + CST_MS).toISOString();
  return withDate ? `${s.slice(0, 10)} ${s.slice(11, 19)}` : s.slice(11, 19);
}
/** Today in China (YYYY-MM-DD), and `days` before. */
export function cstDate(ms: number): string {
  return new Date(ms + CST_MS).toISOString().slice(0, 10);
}
export function lastDays(days: number, now = Date.now()): { from: string; to: string } {
  return { from: cstDate(now - (days - 1) * 86_400_000), to: cstDate(now) };
}
export const pct = (v: number | null | undefined, digits = 1) =>
  v === null || v === undefined ? '—' : `${v.toFixed(digits)} %`;
export function mbps(bps: number | null | undefined): string {
  if (bps === null || bps === undefined) return '—';
  const m = bps / 1e6;
  return `${m >= 100 ? m.toFixed(0) : m.toFixed(1)} Mbit/s`;
}
/** How long ago, as staff say it: 40 秒前, 12 分钟前, 3 小时前, 2 天前. */
export function ago(s: number): string {
  if (s < 60) return `${Math.floor(s)} 秒前`;
  if (s < 3_600) return `${Math.floor(s / 60)} 分钟前`;
  if (s < 86_400) return `${Math.floor(s / 3_600)} 小时前`;
  return `${Math.floor(s / 86_400)} 天前`;
}
