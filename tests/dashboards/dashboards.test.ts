import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Calendars, dateOf, dayNumber, localMidnightMs } from '../../common/calendar.js';
import { DayCache } from '../../common/figures/days.js';
import { evaluate } from '../../common/figures/evaluate.js';
import { loadPeriod, lookbackDaysFor, teachingBuckets } from '../../common/figures/load.js';
import { attainmentPoints } from '../../common/figures/points.js';
import { profileSet } from '../../common/figures/profiles.js';
import type { Series } from '../../common/storage/query.js';
import type { Storage } from '../../common/storage/storage.js';
import { MEASUREMENTS, UNASSIGNED_REGION } from '../../contracts/influx.js';
import { DASHBOARDS, DATASOURCE, renderAll, type VariableDef } from '../../dashboards/src/index.js';
import { CITY_CALENDAR, cityRollup, TEACHING_DAYS } from '../helpers/city.js';
import { cityAlertPoints, cityLabIndex, cityRawPoints } from '../helpers/city-raw.js';
import { Influxd, testStorage } from '../helpers/influx.js';

const GENERATED = fileURLToPath(new URL('../../dashboards/generated/', import.meta.url));

// ---- (a) the committed JSON is what dashboards/src generates ----------------------------------------------------

describe('dashboards/generated', () => {
  it('holds exactly the files dashboards/src generates, byte for byte', () => {
    const files = renderAll();
    const committed = existsSync(GENERATED)
      ? readdirSync(GENERATED)
          .filter((n) => n.endsWith('.json'))
          .sort()
      : [];
    expect(committed, 'dashboards/generated is stale: run `npm run gen:dashboards`').toEqual(
      [...files.keys()].sort(),
    );
    for (const [name, text] of files) {
      const onDisk = readFileSync(`${GENERATED}${name}`, 'utf8');
      expect(onDisk === text, `dashboards/generated/${name} is stale: run \`npm run gen:dashboards\``).toBe(
        true,
      );
    }
  });
});

// ---- (b) the JSON is structurally sane -----------------------------------------------------------------------

/** Grafana's own variables an InfluxQL query may use. */
const BUILTINS = new Set([
  'timeFilter',
  '__interval',
  '__interval_ms',
  'interval',
  '__from',
  '__to',
  '__range',
  '__range_s',
  '__range_ms',
]);
/** `$name`, `${name}`, `${name:format}`, `[[name]]`, `[[name:format]]`, as Grafana's template service finds them. */
const VARIABLE_RE = /\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]/g;

function variablesIn(q: string): { name: string; text: string }[] {
  return [...q.matchAll(VARIABLE_RE)].map((m) => ({ name: (m[1] ?? m[2] ?? m[4])!, text: m[0] }));
}

interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}
interface JsonPanel {
  id: number;
  type: string;
  title: string;
  gridPos: GridPos;
  datasource?: { type: string; uid: string };
  targets?: {
    refId: string;
    query: string;
    rawQuery: boolean;
    resultFormat: string;
    datasource: { type: string; uid: string };
  }[];
}
interface JsonDashboard {
  uid: string;
  title: string;
  tags: string[];
  schemaVersion: number;
  time: { from: string; to: string };
  panels: JsonPanel[];
  templating: { list: { name: string; type: string; query: string; datasource: { uid: string } }[] };
}

/** The JSON as generated (the test above holds the committed files to it). */
const generated = (uid: string) => JSON.parse(renderAll().get(`${uid}.json`)!) as JsonDashboard;

describe('the generated JSON', () => {
  it('has the four dashboards with stable uids, the cfm tag and sensible default ranges', () => {
    const got = DASHBOARDS.map((d) => generated(d.uid));
    expect(got.map((d) => d.uid)).toEqual(['cfm-network', 'cfm-audit', 'cfm-school', 'cfm-alerts']);
    for (const d of got) {
      expect(d.tags).toContain('cfm');
      expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    }
    expect(got[0]!.time).toEqual({ from: 'now-6h', to: 'now' });
    expect(got[1]!.time).toEqual({ from: 'now-30d', to: 'now' });
  });

  for (const def of DASHBOARDS) {
    describe(def.uid, () => {
      const d = generated(def.uid);
      const defined = new Set(d.templating.list.map((v) => v.name));

      it('has unique panel ids and non-overlapping grid positions within 24 columns', () => {
        const ids = d.panels.map((p) => p.id);
        expect(new Set(ids).size).toBe(ids.length);
        const cells = new Set<string>();
        for (const p of d.panels) {
          const g = p.gridPos;
          expect(g, p.title).toEqual({
            x: expect.any(Number),
            y: expect.any(Number),
            w: expect.any(Number),
            h: expect.any(Number),
          });
          expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
          for (let x = g.x; x < g.x + g.w; x++)
            for (let y = g.y; y < g.y + g.h; y++) {
              expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
              cells.add(`${x},${y}`);
            }
        }
      });

      it('queries InfluxDB through the cfm-influxdb datasource only', () => {
        const panels = d.panels.filter((p) => p.type !== 'row');
        expect(panels.length).toBeGreaterThan(0);
        for (const p of panels) {
          expect(p.datasource, p.title).toEqual(DATASOURCE);
          expect(p.targets?.length, p.title).toBeGreaterThan(0);
          for (const t of p.targets ?? []) {
            expect(t.datasource, p.title).toEqual(DATASOURCE);
            expect(t.rawQuery, p.title).toBe(true);
            expect(['time_series', 'table'], p.title).toContain(t.resultFormat);
          }
          expect(new Set(p.targets!.map((t) => t.refId)).size).toBe(p.targets!.length);
        }
        for (const v of d.templating.list) {
          expect(v.type).toBe('query');
          expect(v.datasource).toEqual(DATASOURCE);
        }
      });

      it('uses only defined template variables or Grafana builtins, regex-escaped inside regexes', () => {
        const queries = [
          ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.query)),
          ...d.templating.list.map((v) => v.query),
        ];
        const used = new Set<string>();
        for (const q of queries) {
          for (const v of variablesIn(q)) {
            expect(BUILTINS.has(v.name) || defined.has(v.name), `${v.text} in: ${q}`).toBe(true);
            if (defined.has(v.name)) used.add(v.name);
            // Region and school are matched by regex; a region path has slashes and looks like a number, which
            // Grafana's InfluxDB datasource would insert unescaped: only the regex format escapes it.
            const def = def_(v.name);
            if (def && (def.includeAll || def.multi || v.name === 'region' || v.name === 'school'))
              expect(v.text, q).toBe(`\${${v.name}:regex}`);
          }
        }
        // Every variable is used somewhere: one that nothing reads only confuses.
        expect([...defined].sort()).toEqual([...used].sort());
      });

      it('reads only measurements and tags of contracts/influx.ts', () => {
        const names = new Set(Object.keys(MEASUREMENTS));
        const allTags = new Set<string>(Object.values(MEASUREMENTS).flatMap((m) => [...m.tags]));
        for (const q of d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.query))) {
          for (const m of q.matchAll(/\bFROM\s+(\w+)/g))
            expect(names.has(m[1]!), `${m[1]} in: ${q}`).toBe(true);
          const withoutTime = q.replace(/time\([^)]*\)\s*,?\s*/g, '');
          for (const m of withoutTime.matchAll(/GROUP BY ([\w\s,]+?)(?=\s+fill\(|\)|\s+ORDER|\s+LIMIT|$)/g)) {
            const keys = m[1]!
              .split(',')
              .map((k) => k.trim())
              .filter(Boolean);
            for (const k of keys) expect(allTags.has(k), `GROUP BY ${k} in: ${q}`).toBe(true);
          }
        }
        for (const v of d.templating.list) {
          const m = /^SHOW TAG VALUES FROM (\w+) WITH KEY = (\w+)/.exec(v.query);
          expect(m, v.query).not.toBeNull();
          expect(MEASUREMENTS[m![1] as keyof typeof MEASUREMENTS].tags as readonly string[]).toContain(m![2]);
        }
      });

      it('computes ratios in floating point (InfluxDB 1.x divides integers as integers: 10 / 48 = 0)', () => {
        for (const q of d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.query)))
          expect(q, 'write 100.0 * sum(…) / …').not.toMatch(/(^|[^\d.])\d+\s*\*\s*(sum|count)\(/);
      });

      const def_ = (name: string): VariableDef | undefined => def.variables.find((v) => v.name === name);
    });
  }
});

// ---- (c) every query runs against InfluxDB 1.x holding the fixture city -----------------------------------------

/** The dashboards' time range in the test: the fixture's week, its holiday and its vacation reading. */
const FROM_MS = Date.parse('2026-10-01T00:00:00+08:00');
const TO_MS = Date.parse('2027-02-03T00:00:00+08:00');
const BUILTIN_VALUES: Record<string, string> = {
  // As Grafana's InfluxDB datasource writes an absolute range.
  timeFilter: `time >= ${FROM_MS}ms and time <= ${TO_MS}ms`,
  __interval: '1h',
  interval: '1h',
  __interval_ms: '3600000',
  __from: String(FROM_MS),
  __to: String(TO_MS),
};

const ALL: unique symbol = Symbol('All');
type Value = string | string[] | typeof ALL;

/** Grafana's kbn.regexEscape, used by the `regex` format. */
const regexEscape = (s: string) => s.replace(/[\\^$*+?.()|[\]{}/]/g, '\\$&');

/** Interpolates a query as Grafana does for InfluxQL: builtins, the `regex` format, a custom All value. */
function interpolate(q: string, variables: readonly VariableDef[], values: Record<string, Value>): string {
  return q.replace(VARIABLE_RE, (text, a?: string, b?: string, fb?: string, c?: string, fc?: string) => {
    const name = (a ?? b ?? c)!;
    const format = fb ?? fc;
    if (BUILTIN_VALUES[name] !== undefined) return BUILTIN_VALUES[name]!;
    const def = variables.find((v) => v.name === name);
    const value = values[name];
    if (!def || value === undefined) throw new Error(`no value for ${text}`);
    // A custom "All" value is inserted as it is, whatever the format.
    if (value === ALL) {
      if (!def.includeAll) throw new Error(`${name} has no All option`);
      return '.*';
    }
    if (format === 'regex') {
      if (typeof value === 'string') return regexEscape(value);
      return value.length === 1 ? regexEscape(value[0]!) : `(${value.map(regexEscape).join('|')})`;
    }
    if (format !== undefined) throw new Error(`format ${format} is not emulated here`);
    if (typeof value !== 'string') throw new Error(`${name}: a multi value without a format`);
    return value; // the datasource's own interpolation: a single value outside a regex stays as it is
  });
}

/** The fixture's variable values: one county and two of its schools, or "All". */
const SCENARIOS: { name: string; values: (v: VariableDef) => Value }[] = [
  {
    name: '西湖区 330106, schools A and B (one school where single)',
    values: (v) =>
      v.name === 'region'
        ? '330000/330100/330106'
        : v.name === 'school'
          ? v.multi
            ? ['A', 'B']
            : 'A'
          : v.name === 'profile'
            ? 'cn-2020'
            : ALL,
  },
  {
    name: 'All regions and schools',
    values: (v) => (v.includeAll ? ALL : v.name === 'school' ? 'A' : v.name === 'profile' ? 'cn-2020' : ALL),
  },
];

/** Columns of an answer: the series' columns and their tags (Grafana shows tags as columns). */
function columnsOf(series: Series[]): string[] {
  const set = new Set<string>();
  for (const s of series) {
    for (const c of s.columns) set.add(c);
    for (const t of Object.keys(s.tags)) set.add(t);
  }
  return [...set].sort();
}

/** The field columns (not time, not a tag) of an answer that have no value in any row. */
function emptyColumns(series: Series[]): string[] {
  const columns = new Set<string>();
  const filled = new Set<string>();
  for (const s of series)
    s.columns.forEach((c, i) => {
      if (c === 'time' || c in s.tags) return;
      columns.add(c);
      if (s.values.some((row) => row[i] !== null && row[i] !== undefined)) filled.add(c);
    });
  return [...columns].filter((c) => !filled.has(c)).sort();
}

const rowCount = (series: Series[]) => series.reduce((n, s) => n + s.values.length, 0);

const influxd = new Influxd();
let storage: Storage;

beforeAll(async () => {
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'city' }).storage;
  await storage.start();
  const reg = cityLabIndex();
  const calendars = new Calendars([CITY_CALENDAR]);
  const raw = cityRawPoints();
  storage.write(raw);
  // An unregistered router of school A (stored as the collector stores it: region `unassigned`) with a busy
  // uplink, and an unregistered PC: no dashboard may show them, whatever the region filter.
  const uplink = raw.find(
    (p) => p.measurement === 'iface' && p.tags.school === 'A' && p.tags.uplink === 'true',
  )!;
  const host = raw.find((p) => p.measurement === 'host' && p.tags.school === 'A')!;
  const unassigned = { region: UNASSIGNED_REGION, school: 'A', device: 'gw-unreg' };
  storage.write([
    { ...uplink, tags: { ...uplink.tags, ...unassigned, kind: 'router', classroom: undefined } },
    {
      ...host,
      tags: { ...host.tags, ...unassigned, device: 'pc-unreg', kind: 'teacher_pc', classroom: undefined },
    },
  ] as typeof raw);
  storage.write(cityAlertPoints());
  await storage.flush();
  await cityRollup(storage, () => reg, calendars).range('2026-10-05', '2026-10-11');
  // attainment_day as the API server writes it after a rollup run: per rolled-up date and profile, the
  // attainment of the 7 days ending that date.
  const days = new DayCache({ storage, checkEveryMs: 0, maxDays: 400 });
  for (const to of [...TEACHING_DAYS, '2026-10-11']) {
    const period = { from: dateOf(dayNumber(to) - 6), to };
    for (const profile of profileSet().values()) {
      const data = await loadPeriod(
        days,
        period,
        lookbackDaysFor(profile.idleDays),
        teachingBuckets(reg, calendars),
      );
      storage.write(attainmentPoints(evaluate(data, reg, calendars, profile), reg, localMidnightMs(to)));
    }
  }
  await storage.flush();
}, 120_000);

afterAll(async () => {
  await storage?.stop();
  await influxd.dispose();
});

describe('every query against InfluxDB 1.x holding the fixture city', () => {
  it('has the fixture: raw readings, rollups, attainment and alerts', async () => {
    const counts = await storage.query(
      'SELECT count(in_bps) FROM iface; SELECT count(use_b) FROM usage_day; SELECT count(classes) FROM attainment_day; SELECT count(firing) FROM alert',
    );
    // Uplinks: A 48 + 5 outside teaching time, B 48, C 40, one unregistered; usage_day: 7 classroom devices ×
    // 3 teaching days; attainment_day: 3 schools × 4 dates × 3 profiles; alerts: 9 notifications.
    expect(counts.map((st) => st[0]?.values[0]?.[1])).toEqual([142, 21, 36, 9]);
  });

  for (const scenario of SCENARIOS) {
    describe(scenario.name, () => {
      for (const def of DASHBOARDS) {
        const values: Record<string, Value> = Object.fromEntries(
          def.variables.map((v) => [v.name, scenario.values(v)]),
        );
        for (const v of def.variables) {
          it(`${def.uid} variable $${v.name} lists values`, async () => {
            const q = interpolate(v.query, def.variables, values);
            const [series = []] = await storage.query(q);
            expect(columnsOf(series), q).toEqual([...v.expect].sort());
            expect(rowCount(series), q).toBeGreaterThan(0);
            expect(JSON.stringify(series), q).not.toMatch(/unassigned|gw-unreg|pc-unreg/);
          });
        }
        for (const panel of def.panels) {
          if ('row' in panel) continue;
          panel.queries.forEach((query, i) => {
            it(`${def.uid} «${panel.title}» query ${i + 1} returns rows with its columns`, async () => {
              const q = interpolate(query.query, def.variables, values);
              const [series = []] = await storage.query(q);
              expect(columnsOf(series), q).toEqual([...query.expect].sort());
              expect(rowCount(series), q).toBeGreaterThan(0);
              expect(emptyColumns(series), `columns without any value in: ${q}`).toEqual([]);
              // Unregistered devices (region `unassigned`) are in no county's view, nor in "All".
              expect(JSON.stringify(series), q).not.toMatch(/unassigned|gw-unreg|pc-unreg/);
              // Series of a GROUP BY tag are told apart by name: the alias names the tag.
              if (query.format === 'time_series' && series.some((s) => Object.keys(s.tags).length > 0))
                expect(query.alias, panel.title).toMatch(/\$tag_\w+/);
            });
          });
        }
      }
    });
  }
});

describe('the audit judges each school on its latest window', () => {
  it("a school whose latest window had no teaching time is left out, not counted with an older window's 校校通", async () => {
    const { storage: s } = testStorage(influxd.url, { database: 'judged' });
    await s.start();
    try {
      const day1 = localMidnightMs('2026-10-09');
      const day2 = localMidnightMs('2026-10-10');
      const tags = (school: string) => ({
        region: '330000/330100/330106',
        region_name: '西湖区',
        school,
        school_name: school,
        area: 'urban',
        level: 'primary',
        profile: 'cn-2020',
      });
      const fields = {
        window_days: 7,
        classes: 10,
        classes_attained: 5,
        classes_unmonitored: 0,
        students: 400,
      };
      const point = (school: string, ts: number, xxt: 0 | 1 | null) => ({
        measurement: 'attainment_day' as const,
        ts,
        tags: tags(school),
        fields: {
          ...fields,
          teaching_days: xxt === null ? 0 : 5,
          judged: xxt === null ? 0 : 1,
          ...(xxt === null ? {} : { xxt }),
          teachers: 30,
          student_computers: 40,
          teacher_computers: 30,
        },
      });
      // A attained in the first window; its latest window is a vacation (not judged). B fails, judged.
      s.write([point('A', day1, 1), point('A', day2, null), point('B', day1, 0), point('B', day2, 0)]);
      await s.flush();
      const audit = DASHBOARDS.find((d) => d.uid === 'cfm-audit')!;
      const panel = audit.panels.find((p) => 'title' in p && p.title.startsWith('校校通达标率'));
      if (!panel || 'row' in panel) throw new Error('no 校校通 stat panel');
      const values = Object.fromEntries(
        audit.variables.map((v) => [v.name, v.name === 'profile' ? 'cn-2020' : ALL] as [string, Value]),
      );
      const [series = []] = await s.query(interpolate(panel.queries[0]!.query, audit.variables, values));
      // Only B is judged now, and it fails: 0 %, as /v1/attainment would say (A is not applicable).
      expect(series.map((r) => r.values.map((v) => v[1]))).toEqual([[0]]);
    } finally {
      await s.stop();
    }
  });
});
