import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import type * as common from '@grafana/grafana-foundation-sdk/common';
import {
  type Dashboard,
  DashboardBuilder,
  DashboardCursorSync,
  DashboardLinkType,
  type GridPos,
  MappingType,
  type Panel,
  QueryVariableBuilder,
  RowBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  type ValueMapping,
  VariableHide,
  type VariableModel,
  VariableRefresh,
  VariableSort,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { UNASSIGNED_REGION } from '../../contracts/ids.js';

/**
 * Dashboards as code: each dashboard is a plain definition (panels with their InfluxQL, the columns each query
 * must return, template variables), turned into Grafana JSON by `buildDashboard` with the Grafana Foundation
 * SDK. The test runs every query of every definition against a real InfluxDB holding the fixture city.
 */

/** The one datasource every panel and variable uses: provision it with this uid (dashboards/README.md). */
export const DATASOURCE = { type: 'influxdb', uid: 'cfm-influxdb' } as const satisfies common.DataSourceRef;

export type ResultFormat = 'time_series' | 'table';

/** One InfluxQL query of a panel: raw text with Grafana macros, and the columns its result must have. */
export interface QueryDef {
  /** Raw InfluxQL; may use $timeFilter, $__interval and the dashboard's variables (`${region:regex}` …). */
  query: string;
  format: ResultFormat;
  /** Every column the answer has: `time`, the selected fields (aliases) and the GROUP BY tags. */
  expect: readonly string[];
  /** Grafana's series alias (`$tag_school $col`), time series only; `$col` when absent. */
  alias?: string;
}

/** A panel: a configured SDK panel builder plus its size and queries; ids, positions and targets are added. */
export interface PanelDef {
  title: string;
  description?: string;
  /** Width (of 24) and height in grid units. */
  w: number;
  h: number;
  queries: readonly QueryDef[];
  viz: () => VizBuilder;
}

/** A row header across the full width. */
export interface RowDef {
  row: string;
}

/** A query variable over InfluxDB tag values. */
export interface VariableDef {
  name: string;
  label: string;
  description?: string;
  query: string;
  /** Offer "All" (value `.*`: every variable is used inside an InfluxQL regex). */
  includeAll?: boolean;
  multi?: boolean;
  /** The value selected when the dashboard opens (else "All" when offered, else Grafana's first value). */
  current?: string;
  /** Refresh when the time range changes (else when the dashboard loads). */
  refreshOnTime?: boolean;
  /** The columns the query returns (SHOW TAG VALUES: key and value). */
  expect: readonly string[];
}

export interface DashboardDef {
  uid: string;
  title: string;
  description: string;
  tags: readonly string[];
  time: { from: string; to: string };
  refresh?: string;
  variables: readonly VariableDef[];
  panels: readonly (PanelDef | RowDef)[];
}

/** What every SDK panel builder offers (timeseries, table, stat, barchart, statetimeline …). */
export interface VizBuilder extends cog.Builder<Panel> {
  id(id: number): this;
  title(title: string): this;
  description(description: string): this;
  datasource(datasource: common.DataSourceRef): this;
  gridPos(gridPos: GridPos): this;
  targets(targets: cog.Builder<cog.Dataquery>[]): this;
}

// ---- InfluxQL helpers: variables inside queries -----------------------------------------------------------

/** `${name}` or `${name:format}`: the Grafana variable syntax, written without a JS template placeholder. */
export const variable = (name: string, format?: string): string =>
  format ? `\${${name}:${format}}` : `\${${name}}`;

/**
 * Region and school filters. Both are regexes so "All" (`.*`) works; the `regex` format escapes the value
 * (a region path `330000/330100/330106` contains slashes and looks like a number to Grafana's InfluxDB
 * datasource, which would otherwise insert it unescaped).
 */
/**
 * Points of the selected region and below. Devices not in the registry are stored under the region
 * `unassigned` (docs/trust-model.md): no filter, "All" included, shows them; `/v1/devices/unassigned` lists them.
 */
const REGISTERED = `region != '${UNASSIGNED_REGION}'`;
export const IN_REGION = `region =~ /^${variable('region', 'regex')}/ AND ${REGISTERED}`;
/** Points of the selected schools' registered devices (an unregistered one shares its school's id). */
export const IN_SCHOOL = `school =~ /^${variable('school', 'regex')}$/ AND ${REGISTERED}`;
export const PROFILE = `profile = '${variable('profile')}'`;

/** Tag values of one key, optionally filtered by a WHERE clause. */
export const tagValues = (measurement: string, key: string, where?: string): string =>
  `SHOW TAG VALUES FROM ${measurement} WITH KEY = ${key}${where ? ` WHERE ${where}` : ''}`;

export const regionVariable = (measurement: string): VariableDef => ({
  name: 'region',
  label: '区域 Region',
  description: 'Region path (province/city/county ids); a path matches every region below it.',
  query: tagValues(measurement, 'region', REGISTERED),
  includeAll: true,
  expect: ['key', 'value'],
});

export const schoolVariable = (opts: { multi: boolean }): VariableDef => ({
  name: 'school',
  label: '学校 School',
  description: 'School id (学校标识码) within the selected region.',
  query: tagValues('uplink_day', 'school', IN_REGION),
  includeAll: opts.multi,
  multi: opts.multi,
  refreshOnTime: false,
  expect: ['key', 'value'],
});

export const profileVariable: VariableDef = {
  name: 'profile',
  label: '标准 Profile',
  description: 'Standard profile the attainment was judged by (GET /v1/profiles).',
  query: tagValues('attainment_day', 'profile'),
  current: 'cn-2020',
  expect: ['key', 'value'],
};

// ---- field config helpers ----------------------------------------------------------------------------------

export const thresholds = (...steps: [number | null, string][]) =>
  new ThresholdsConfigBuilder()
    .mode(ThresholdsMode.Absolute)
    .steps(steps.map(([value, color]) => ({ value, color })));

/** Utilisation: green below 50 %, yellow, orange from 80 %, red from 90 %. */
export const utilThresholds = () => thresholds([null, 'green'], [50, 'yellow'], [80, 'orange'], [90, 'red']);

/** Attainment in percent: red below 60, orange below 90, green from 90. */
export const attainmentThresholds = () => thresholds([null, 'red'], [60, 'orange'], [90, 'green']);

export const valueText = (map: Record<string, [text: string, color: string]>): ValueMapping => ({
  type: MappingType.ValueToText,
  options: Object.fromEntries(
    Object.entries(map).map(([value, [text, color]], index) => [value, { text, color, index }]),
  ),
});

// ---- building ------------------------------------------------------------------------------------------------

/** The Grafana InfluxDB datasource's query model for a raw InfluxQL query (the SDK has no builder for it). */
export class InfluxQLQueryBuilder implements cog.Builder<cog.Dataquery> {
  constructor(
    private readonly refId: string,
    private readonly def: QueryDef,
  ) {}

  build(): cog.Dataquery {
    const q = {
      refId: this.refId,
      datasource: { ...DATASOURCE },
      query: this.def.query,
      rawQuery: true,
      resultFormat: this.def.format,
      // Series names: `$col` (the column) unless the query says otherwise; Grafana's default would prefix the
      // measurement (`iface.in_bps`), which field overrides by name would not match.
      ...(this.def.alias || this.def.format === 'time_series' ? { alias: this.def.alias ?? '$col' } : {}),
      // Marks the object as a dataquery variant for the SDK's types; functions are left out of the JSON.
      _implementsDataqueryVariant: () => {},
    };
    return q;
  }
}

const isRow = (p: PanelDef | RowDef): p is RowDef => 'row' in p;

/** Left to right, top to bottom: a panel that does not fit the rest of the line starts a new one. */
function layout(panels: readonly (PanelDef | RowDef)[]): GridPos[] {
  let x = 0;
  let y = 0;
  let lineH = 0;
  return panels.map((p) => {
    const w = isRow(p) ? 24 : p.w;
    const h = isRow(p) ? 1 : p.h;
    if (isRow(p) || x + w > 24) {
      y += lineH;
      x = 0;
      lineH = 0;
    }
    const pos = { x, y, w, h };
    if (isRow(p)) {
      y += 1;
    } else {
      x += w;
      lineH = Math.max(lineH, h);
    }
    return pos;
  });
}

function buildVariable(v: VariableDef): cog.Builder<VariableModel> {
  const b = new QueryVariableBuilder(v.name)
    .label(v.label)
    .datasource({ ...DATASOURCE })
    .query(v.query)
    .definition(v.query)
    .refresh(v.refreshOnTime ? VariableRefresh.OnTimeRangeChanged : VariableRefresh.OnDashboardLoad)
    .sort(VariableSort.AlphabeticalAsc)
    .hide(VariableHide.DontHide)
    .multi(v.multi ?? false)
    .includeAll(v.includeAll ?? false);
  if (v.description) b.description(v.description);
  if (v.includeAll) b.allValue('.*');
  if (v.current !== undefined) b.current({ text: v.current, value: v.current, selected: true });
  else if (v.includeAll)
    b.current(
      v.multi
        ? { text: ['All'], value: ['$__all'], selected: true }
        : { text: 'All', value: '$__all', selected: true },
    );
  return b;
}

/** The dashboard as Grafana JSON (an object; `render` gives the committed text). */
export function buildDashboard(def: DashboardDef): Dashboard {
  const b = new DashboardBuilder(def.title)
    .uid(def.uid)
    .description(def.description)
    .tags([...def.tags])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .timezone('browser')
    .weekStart('monday')
    .time(def.time)
    .refresh(def.refresh ?? '')
    .annotations([
      {
        build: () => ({
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }),
      },
    ])
    .links([
      {
        build: () => ({
          title: '校园监测 Campus fleet monitor',
          type: DashboardLinkType.Dashboards,
          tags: ['cfm'],
          asDropdown: true,
          icon: 'external link',
          tooltip: '',
          url: '',
          includeVars: true,
          keepTime: true,
          targetBlank: false,
        }),
      },
    ])
    .variables(def.variables.map(buildVariable));
  const positions = layout(def.panels);
  def.panels.forEach((p, i) => {
    const id = i + 1;
    const gridPos = positions[i]!;
    if (isRow(p)) {
      b.withRow(new RowBuilder(p.row).id(id).gridPos(gridPos).collapsed(false));
      return;
    }
    const viz = p
      .viz()
      .id(id)
      .title(p.title)
      .datasource({ ...DATASOURCE })
      .gridPos(gridPos)
      .targets(p.queries.map((q, n) => new InfluxQLQueryBuilder(String.fromCharCode(65 + n), q)));
    if (p.description) viz.description(p.description);
    b.withPanel(viz);
  });
  return b.build();
}

/** Objects with their keys sorted (arrays keep their order), functions and undefined left out. */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v === undefined || typeof v === 'function') continue;
      out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** The committed file's text: sorted keys, 2-space indentation, a trailing newline. */
export function render(def: DashboardDef): string {
  return `${JSON.stringify(sortKeys(buildDashboard(def)), null, 2)}\n`;
}
