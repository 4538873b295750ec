import {
  attainmentThresholds,
  type DashboardDef,
  IN_REGION,
  type PanelDef,
  PROFILE,
  profileVariable,
  regionVariable,
  valueText,
} from './lib.js';
import {
  barchartPanel,
  DEVICE_COLUMNS,
  displayNames,
  groupingToMatrix,
  merge,
  statPanel,
  tablePanel,
  timeseriesPanel,
} from './viz.js';

/**
 * 教育局审计 — for education bureaus: measured 校校通 and 班班通 attainment by region, split urban / rural, its
 * trend, the use of classroom equipment in teaching time, idle equipment and 生机比.
 *
 * `attainment_day` holds, per school, profile and day, the attainment of the window (api.rollup
 * .attainmentWindowDays, 7 by default) ending that day, as /v1/attainment computes it. "Now" is each school's
 * last point in the time range: a subquery takes last() per school, the outer query sums across schools
 * (InfluxQL cannot aggregate an aggregate in one statement). Every division has a float operand: InfluxDB 1.x
 * divides integers as integers.
 */

const ATTAINMENT = `${IN_REGION} AND ${PROFILE} AND $timeFilter`;
/** The last attainment point of each school in the range, as fields for the outer query. */
const lastPerSchool = (groupBy: string) =>
  `SELECT last(judged) AS judged, last(xxt) AS xxt, last(classes) AS c, last(classes_attained) AS ca, last(classes_unmonitored) AS cu, last(students) AS st, last(student_computers) AS sc, last(teachers) AS te, last(teacher_computers) AS tc FROM attainment_day WHERE ${ATTAINMENT} GROUP BY ${groupBy}`;
/**
 * Schools judged in their window: every ratio is over the judged schools only, as /v1/attainment computes it
 * (api/README.md, Definitions). Over each school's last point, `judged` (1/0) says whether that window had
 * teaching time; `last(xxt)` alone would reach back to an older judged window. Per point (the trend), `xxt` is
 * absent when the window was not judged.
 */
const JUDGED = 'judged = 1';
const JUDGED_POINT = 'xxt >= 0';
/** Over the judged schools' latest windows: schools attaining 校校通, classes attaining 班班通, in percent. */
const XXT_PCT = '100.0 * sum(xxt) / count(xxt)';
const BBT_PCT = '100.0 * sum(ca) / sum(c)';
/** `select` over the judged schools' latest windows: all together, or per county and area. */
const judged = (select: string) => `SELECT ${select} FROM (${lastPerSchool('school')}) WHERE ${JUDGED}`;
const judgedByRegion = (select: string) =>
  `SELECT ${select} FROM (${lastPerSchool('school, region_name, area')}) WHERE ${JUDGED} GROUP BY region_name, area`;
const USAGE = `${IN_REGION} AND $timeFilter`;
/** Hours in teaching time from the rollup's bucket counts. */
const usageHours = `SELECT use_b * bucket_s / 3600.0 AS use_h, on_b * bucket_s / 3600.0 AS on_h, unused_b * bucket_s / 3600.0 AS unused_h, teaching_b * bucket_s / 3600.0 AS teach_h, used_day, online_day FROM usage_day WHERE ${USAGE}`;
/** Hours left on outside teaching time, on every rolled-up day (days without school too). */
const leftOnHours = `SELECT left_on_b * bucket_s / 3600.0 AS left_h FROM usage_day WHERE ${USAGE}`;

const AREA = valueText({ urban: ['城区 urban', 'blue'], rural: ['农村 rural', 'green'] });
const NO_COMPUTERS = valueText({ 0: ['— (无学生机 no computers)', 'text'] });

/** One share attaining, `percent` (an expression) over the judged schools: red below 60, orange below 90. */
const attainmentStat = (title: string, description: string, field: string, percent: string): PanelDef => ({
  title,
  description,
  w: 6,
  h: 5,
  queries: [{ query: judged(`${percent} AS ${field}`), format: 'time_series', expect: ['time', field] }],
  viz: () => statPanel({ unit: 'percent', decimals: 1 }).thresholds(attainmentThresholds()).min(0).max(100),
});

/** Bars per county, urban and rural side by side: `percent` (an expression) over the judged schools. */
const attainmentByRegion = (title: string, field: string, percent: string): PanelDef => ({
  title,
  w: 12,
  h: 8,
  queries: [
    {
      query: judgedByRegion(`${percent} AS ${field}`),
      format: 'table',
      expect: ['time', field, 'region_name', 'area'],
    },
  ],
  viz: () =>
    barchartPanel({ unit: 'percent', max: 100 }).transformations([
      merge(),
      groupingToMatrix('region_name', 'area', field),
    ]),
});

export const audit: DashboardDef = {
  uid: 'cfm-audit',
  title: '教育局审计 (Bureau audit)',
  description:
    '校校通 / 班班通 attainment by region (urban / rural), trend, equipment use in teaching time, idle equipment and 生机比, from the rollups (attainment_day, usage_day).',
  tags: ['cfm', 'audit'],
  time: { from: 'now-30d', to: 'now' },
  refresh: '1h',
  variables: [regionVariable('attainment_day'), profileVariable],
  panels: [
    { row: '达标 Attainment (latest window of each school in the range)' },
    attainmentStat(
      '校校通达标率 (Schools attaining 校校通, %)',
      'Schools whose uplink attains the profile ÷ schools judged (a window without teaching time is not judged).',
      'xxt_pct',
      XXT_PCT,
    ),
    attainmentStat(
      '班班通达标率 (Classes attaining 班班通, %)',
      'Classes attaining (equipped, online, healthy, used ≥ the profile’s periods per week, school connected) ÷ all classes of the judged schools, unmonitored ones included.',
      'bbt_pct',
      BBT_PCT,
    ),
    {
      title: '生机比 / 师机比 (Students, teachers per working computer)',
      description:
        'Students ÷ student computers online on at least one teaching day of the window; the same for teachers; of the judged schools. 0 means no working computers.',
      w: 6,
      h: 5,
      queries: [
        {
          query: judged(
            '1.0 * sum(st) / sum(sc) AS students_per_computer, 1.0 * sum(te) / sum(tc) AS teachers_per_computer',
          ),
          format: 'time_series',
          expect: ['time', 'students_per_computer', 'teachers_per_computer'],
        },
      ],
      viz: () =>
        displayNames(statPanel({ unit: 'none', decimals: 1 }).mappings([NO_COMPUTERS]), {
          students_per_computer: '生机比 students : 1',
          teachers_per_computer: '师机比 teachers : 1',
        }),
    },
    {
      title: '学校与班级 (Schools, classes, unmonitored classes)',
      w: 6,
      h: 5,
      queries: [
        {
          query: `SELECT count(c) AS schools, sum(c) AS classes, sum(cu) AS classes_unmonitored FROM (${lastPerSchool('school')})`,
          format: 'time_series',
          expect: ['time', 'schools', 'classes', 'classes_unmonitored'],
        },
      ],
      viz: () =>
        displayNames(statPanel({ unit: 'none', decimals: 0 }), {
          schools: '学校 schools',
          classes: '班级 classes',
          classes_unmonitored: '未监测 unmonitored',
        }),
    },
    {
      title: '分区域达标 (Attainment by region, urban / rural)',
      description:
        'Per county (the school’s own region) and area, over the schools judged in their latest window; 生机比 0 = no working student computers.',
      w: 24,
      h: 8,
      queries: [
        {
          query: judgedByRegion(
            `count(c) AS schools, ${XXT_PCT} AS xxt_pct, sum(c) AS classes, ${BBT_PCT} AS bbt_pct, 1.0 * sum(st) / sum(sc) AS students_per_computer`,
          ),
          format: 'table',
          expect: [
            'time',
            'schools',
            'xxt_pct',
            'classes',
            'bbt_pct',
            'students_per_computer',
            'region_name',
            'area',
          ],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: null,
            region_name: '区域 region',
            area: '城乡 area',
            schools: '参评学校 judged schools',
            xxt_pct: '校校通 %',
            classes: '班级 classes',
            bbt_pct: '班班通 %',
            students_per_computer: '生机比 (students : 1)',
          },
          sortBy: { column: 'region_name', desc: false },
        })
          .mappings([AREA])
          .decimals(1)
          .overrideByRegexp('/_pct$/', [
            { id: 'unit', value: 'percent' },
            { id: 'custom.cellOptions', value: { type: 'color-text' } },
            { id: 'thresholds', value: attainmentThresholds().build() },
          ]),
    },
    attainmentByRegion('校校通 by region (%, urban / rural)', 'xxt_pct', XXT_PCT),
    attainmentByRegion('班班通 by region (%, urban / rural)', 'bbt_pct', BBT_PCT),
    {
      title: '达标率趋势 (Attainment trend per day, %)',
      description: 'Each day: the attainment of the window ending that day, over the schools of the region.',
      w: 24,
      h: 8,
      queries: [
        {
          query: `SELECT 100.0 * sum(xxt) / count(xxt) AS xxt_pct, 100.0 * sum(classes_attained) / sum(classes) AS bbt_pct FROM attainment_day WHERE ${ATTAINMENT} AND ${JUDGED_POINT} GROUP BY time(1d, -8h) fill(none)`,
          format: 'time_series',
          expect: ['time', 'xxt_pct', 'bbt_pct'],
          alias: '$col',
        },
      ],
      viz: () =>
        displayNames(timeseriesPanel({ unit: 'percent', min: 0, max: 100 }), {
          xxt_pct: '校校通 %',
          bbt_pct: '班班通 %',
        }),
    },
    { row: '使用 Equipment use in teaching time' },
    {
      title: '使用时长 (Classroom equipment hours per day)',
      description:
        'Sum over classroom devices of hours in use, on but unused and switched on, in class periods only, and of hours left on outside them — before the first period, after the last, and all day on days without school (usage_day). In use is the collector’s judgement: the display on and someone at the teaching computer, or a teaching application in front that someone touched within 20 minutes (docs/usage.md); for older agents, by power.',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT sum(use_h) AS use_hours, sum(unused_h) AS unused_hours, sum(on_h) AS on_hours FROM (${usageHours}) WHERE $timeFilter GROUP BY time(1d, -8h) fill(none)`,
          format: 'time_series',
          expect: ['time', 'use_hours', 'unused_hours', 'on_hours'],
          alias: '$col',
        },
        {
          query: `SELECT sum(left_h) AS left_on_hours FROM (${leftOnHours}) WHERE $timeFilter GROUP BY time(1d, -8h) fill(none)`,
          format: 'time_series',
          expect: ['time', 'left_on_hours'],
          alias: '$col',
        },
      ],
      viz: () =>
        displayNames(timeseriesPanel({ unit: 'h', bars: true }), {
          use_hours: '使用 in use (h)',
          unused_hours: '开机未使用 on, unused (h)',
          on_hours: '开机 on (h)',
          left_on_hours: '非教学时间开机 left on (h)',
        }),
    },
    {
      title: '各校使用 (Use per school in teaching time)',
      w: 12,
      h: 8,
      queries: [
        {
          query: `SELECT sum(use_h) AS use_hours, sum(unused_h) AS unused_hours, sum(on_h) AS on_hours, sum(teach_h) AS teaching_hours, 100.0 * sum(use_h) / sum(teach_h) AS use_pct, sum(used_day) AS device_days_used, count(used_day) AS device_days FROM (${usageHours}) WHERE $timeFilter GROUP BY school`,
          format: 'table',
          expect: [
            'time',
            'use_hours',
            'unused_hours',
            'on_hours',
            'teaching_hours',
            'use_pct',
            'device_days_used',
            'device_days',
            'school',
          ],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: null,
            school: '学校 school',
            use_hours: '使用 in use (h)',
            unused_hours: '开机未使用 on, unused (h)',
            on_hours: '开机 on (h)',
            teaching_hours: '教学时间 teaching (device-h)',
            use_pct: '使用率 in use (% of teaching time)',
            device_days_used: '使用设备日 device-days used',
            device_days: '设备日 device-days',
          },
          sortBy: { column: 'use_pct', desc: false },
        })
          .decimals(1)
          .overrideByName('use_pct', [{ id: 'unit', value: 'percent' }]),
    },
    {
      title: '闲置设备 (Idle equipment: not used on any teaching day in the range)',
      description:
        'Registered classroom devices with no class period used in the range (used_day = 0 on every rolled-up teaching day). The API’s /v1/audit/idle adds purchase batch and days since last use.',
      w: 24,
      h: 8,
      queries: [
        {
          query: `SELECT * FROM (SELECT sum(used_day) AS used_days, sum(online_day) AS online_days, count(used_day) AS teaching_days FROM usage_day WHERE ${USAGE} GROUP BY school, classroom, device, kind) WHERE used_days = 0`,
          format: 'table',
          expect: [
            'time',
            'used_days',
            'online_days',
            'teaching_days',
            'school',
            'classroom',
            'device',
            'kind',
          ],
        },
      ],
      viz: () =>
        tablePanel({
          merge: true,
          columns: {
            Time: null,
            school: '学校 school',
            ...DEVICE_COLUMNS,
            teaching_days: '教学日 teaching days',
            online_days: '在线日 days online',
            used_days: '使用日 days used',
          },
          sortBy: { column: 'online_days', desc: true },
        }),
    },
  ],
};
