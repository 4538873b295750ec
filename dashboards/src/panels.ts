import { type PanelDef, type QueryDef, valueText } from './lib.js';
import { stateTimelinePanel } from './viz.js';

/** Whole panels and queries of the shapes several dashboards repeat; `viz.ts` has the SDK builders they use. */

/**
 * One field per interval, one series per value of the tag `by` (`device`, `school`, `rule` …), each named by
 * its tag value: `SELECT <select> AS <as> FROM <from> WHERE <where> GROUP BY time($__interval), <by> fill(…)`.
 */
export function seriesBy(o: {
  select: string;
  as: string;
  from: string;
  where: string;
  by: string;
  /** `null` leaves gaps, `none` skips empty intervals, `previous` carries the last value, `0` counts nothing. */
  fill: 'null' | 'none' | 'previous' | '0';
}): QueryDef {
  return {
    query: `SELECT ${o.select} AS ${o.as} FROM ${o.from} WHERE ${o.where} GROUP BY time($__interval), ${o.by} fill(${o.fill})`,
    format: 'time_series',
    expect: ['time', o.as, o.by],
    alias: `$tag_${o.by}`,
  };
}

/**
 * A state timeline, one row per series: each value shown as a named, coloured state (value → [text, colour]),
 * grouped by at least a minute (the agents' and pollers' reading interval).
 */
export function stateTimeline(o: {
  title: string;
  description?: string;
  w: number;
  h: number;
  query: QueryDef;
  states: Record<string, [text: string, color: string]>;
}): PanelDef {
  return {
    title: o.title,
    ...(o.description ? { description: o.description } : {}),
    w: o.w,
    h: o.h,
    queries: [o.query],
    viz: () => stateTimelinePanel({ interval: '1m', mappings: [valueText(o.states)] }),
  };
}
