import * as barchart from '@grafana/grafana-foundation-sdk/barchart';
import {
  BigValueColorMode,
  BigValueGraphMode,
  GraphDrawStyle,
  GraphThresholdsStyleConfigBuilder,
  GraphThresholdsStyleMode,
  LegendDisplayMode,
  LegendPlacement,
  ReduceDataOptionsBuilder,
  StackingConfigBuilder,
  StackingMode,
  TableCellHeight,
  TableFooterOptionsBuilder,
  TableSortByFieldStateBuilder,
  VisibilityMode,
  VizLegendOptionsBuilder,
  VizOrientation,
} from '@grafana/grafana-foundation-sdk/common';
import {
  type DataTransformerConfig,
  type DynamicConfigValue,
  FieldColorBuilder,
  FieldColorModeId,
  type ValueMapping,
} from '@grafana/grafana-foundation-sdk/dashboard';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as statetimeline from '@grafana/grafana-foundation-sdk/statetimeline';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import { thresholds } from './lib.js';

/** Panel factories with the settings the cfm dashboards share; each returns an SDK builder to refine. */

const legend = (table = false) =>
  new VizLegendOptionsBuilder()
    .showLegend(true)
    .displayMode(table ? LegendDisplayMode.Table : LegendDisplayMode.List)
    .placement(table ? LegendPlacement.Right : LegendPlacement.Bottom)
    .calcs(table ? ['mean', 'max'] : []);

export interface TimeseriesOpts {
  unit: string;
  bars?: boolean;
  stacked?: boolean;
  min?: number;
  max?: number;
  /** Minimum GROUP BY interval: at least the agents' or pollers' reading interval. */
  interval?: string;
  legendTable?: boolean;
}

export function timeseriesPanel(o: TimeseriesOpts): timeseries.PanelBuilder {
  const b = new timeseries.PanelBuilder()
    .unit(o.unit)
    .legend(legend(o.legendTable))
    .drawStyle(o.bars ? GraphDrawStyle.Bars : GraphDrawStyle.Line)
    .fillOpacity(o.bars ? 80 : 10)
    .lineWidth(1)
    .showPoints(VisibilityMode.Never)
    .spanNulls(false);
  if (o.stacked) b.stacking(new StackingConfigBuilder().mode(StackingMode.Normal));
  if (o.min !== undefined) b.min(o.min);
  if (o.max !== undefined) b.max(o.max);
  if (o.interval) b.interval(o.interval);
  return b;
}

/** A percentage 0–100 with dashed threshold lines. */
export function percentTimeseries(o: { interval?: string; steps: [number | null, string][] }) {
  return timeseriesPanel({
    unit: 'percent',
    min: 0,
    max: 100,
    ...(o.interval ? { interval: o.interval } : {}),
  })
    .thresholds(thresholds(...o.steps))
    .thresholdsStyle(new GraphThresholdsStyleConfigBuilder().mode(GraphThresholdsStyleMode.Dashed));
}

export interface TableOpts {
  /** Column renames (InfluxDB name → shown name); columns named `null` are hidden. */
  columns?: Record<string, string | null>;
  sortBy?: { column: string; desc: boolean };
  transformations?: DataTransformerConfig[];
  /** Merge the series of a GROUP BY into one table first. */
  merge?: boolean;
  footerSum?: boolean;
}

/** `organize`: hide and rename columns (Grafana names InfluxDB's time column `Time`). */
export function organize(columns: Record<string, string | null>): DataTransformerConfig {
  const excludeByName: Record<string, boolean> = {};
  const renameByName: Record<string, string> = {};
  for (const [k, v] of Object.entries(columns)) {
    if (v === null) excludeByName[k] = true;
    else renameByName[k] = v;
  }
  return { id: 'organize', options: { excludeByName, indexByName: {}, renameByName } };
}

export const merge = (): DataTransformerConfig => ({ id: 'merge', options: {} });

/** `groupingToMatrix`: a row per value of `rows`, a column per value of `columns`, the cells from `values`. */
export const groupingToMatrix = (rows: string, columns: string, values: string): DataTransformerConfig => ({
  id: 'groupingToMatrix',
  options: { columnField: columns, rowField: rows, valueField: values },
});

/** Table columns naming a device within its school (registry tags), the same on every dashboard. */
export const DEVICE_COLUMNS = {
  classroom: '教室 classroom',
  device: '设备 device',
  kind: '类型 kind',
} as const satisfies Record<string, string>;

/** Fields shown under other names (field → shown name), in the legend, the stat or the tooltip. */
export function displayNames<B extends { overrideByName(name: string, properties: DynamicConfigValue[]): B }>(
  b: B,
  names: Record<string, string>,
): B {
  for (const [field, shown] of Object.entries(names))
    b.overrideByName(field, [{ id: 'displayName', value: shown }]);
  return b;
}

export function tablePanel(o: TableOpts = {}): table.PanelBuilder {
  const transformations: DataTransformerConfig[] = [];
  if (o.merge) transformations.push(merge());
  transformations.push(...(o.transformations ?? []));
  if (o.columns) transformations.push(organize(o.columns));
  const b = new table.PanelBuilder().cellHeight(TableCellHeight.Sm).filterable(true);
  if (transformations.length > 0) b.transformations(transformations);
  if (o.sortBy) {
    const shown = o.columns?.[o.sortBy.column] ?? o.sortBy.column;
    b.sortBy([new TableSortByFieldStateBuilder().displayName(shown).desc(o.sortBy.desc)]);
  }
  if (o.footerSum)
    b.footer(new TableFooterOptionsBuilder().show(true).reducer(['sum']).countRows(false).fields([]));
  return b;
}

export function statPanel(o: { unit: string; decimals?: number; noValue?: string }): stat.PanelBuilder {
  const b = new stat.PanelBuilder()
    .unit(o.unit)
    .graphMode(BigValueGraphMode.None)
    .colorMode(BigValueColorMode.Value)
    .orientation(VizOrientation.Horizontal)
    .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false).fields(''));
  if (o.decimals !== undefined) b.decimals(o.decimals);
  if (o.noValue !== undefined) b.noValue(o.noValue);
  return b;
}

export function stateTimelinePanel(o: {
  unit?: string;
  mappings?: ValueMapping[];
  steps?: [number | null, string][];
  interval?: string;
}): statetimeline.PanelBuilder {
  const b = new statetimeline.PanelBuilder()
    .showValue(VisibilityMode.Never)
    .mergeValues(true)
    .rowHeight(0.8)
    .fillOpacity(80)
    .legend(legend());
  if (o.unit) b.unit(o.unit);
  if (o.mappings) b.mappings(o.mappings);
  if (o.steps) b.thresholds(thresholds(...o.steps)).colorScheme(thresholdsColor());
  if (o.interval) b.interval(o.interval);
  return b;
}

/** Colour by thresholds (state timelines colour by value). */
const thresholdsColor = () => new FieldColorBuilder().mode(FieldColorModeId.Thresholds);

export function barchartPanel(o: { unit: string; max?: number; xField?: string }): barchart.PanelBuilder {
  const b = new barchart.PanelBuilder()
    .unit(o.unit)
    .orientation(VizOrientation.Horizontal)
    .showValue(VisibilityMode.Auto)
    .legend(legend())
    .min(0);
  if (o.max !== undefined) b.max(o.max);
  if (o.xField) b.xField(o.xField);
  return b;
}
