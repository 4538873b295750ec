import type { Logger } from 'pino';
import { type Calendars, dateOf, dayNumber, localDate, localMidnightMs } from '../common/calendar.js';
import { periodBuckets } from '../common/figures/days.js';
import { type BucketQuality, cellOf, packHistogram } from '../common/figures/quality.js';
import { entityKey } from '../common/registry/key.js';
import { carriesUplink, type RegistryIndex } from '../common/registry/store.js';
import { ident, iql, raw, type Series, type Storage, StorageError, timeMs } from '../common/storage/index.js';
import type { AnyPoint } from '../contracts/influx.js';
import { COMPUTER_KINDS, DISPLAY_KINDS } from '../contracts/registry.js';

/**
 * Daily rollups (design: api/README.md#rollups). For one date: the class periods of every school's calendar,
 * and the time around them, read from raw points together (`readWindows`: plain `GROUP BY time` statements per
 * group of schools, the buckets counted per device here), then per device and per school the day's figures
 * written back as `usage_day` / `uplink_day` points at local midnight, and a `rollup_day` marker. Re-running a day overwrites
 * it (same series, same timestamp), so late data is absorbed by rolling the last days again.
 *
 * Outside teaching time — before the first period and after the last of a teaching day, all day on a day that
 * is not a teaching day (weekends, holidays, vacations) — only what was left on is counted (docs/usage.md):
 * such days get `usage_day` points too (teaching figures 0), never an `uplink_day`, which is what makes a day
 * count as a school's teaching day in the reports (common/figures/load.ts).
 *
 * Only registered devices are rolled up, each as (school, device): readings are grouped by both tags and a
 * device takes only its own school's series, so `wb-a1` of another school (registered or not, stored under the
 * `unassigned` region or not) never adds to this school's `wb-a1`. A school's uplink is read only from the
 * device that carries it (`carriesUplink`: its registered uplink device).
 */
export interface RollupDeps {
  storage: Storage;
  registry: () => RegistryIndex;
  calendars: () => Calendars;
  log: Logger;
  /** Bucket length; must be ≥ the agents' and poller's reporting intervals. */
  bucketS: number;
  /**
   * Keep the results of final windows between calls (the scheduled job, docs/scale.md): a window is read from
   * raw points once it ended `settleMs` before `nowMs`, and its results are reused by later calls until a
   * `late_data` marker of its date (the collector's: a reading stored late) says it may have changed. Without
   * it every call reads every window (backfills, the CLI).
   */
  keep?: { settleMs: number };
  /** Bucket rows per statement at most (`readWindows`; default `ROW_BUDGET`; smaller in tests). */
  rowBudget?: number;
  /** Group queries in flight at once (`readWindows`; `rollup.readsInFlight`, default 1). */
  readsInFlight?: number;
}

export interface DayResult {
  date: string;
  schools: number;
  devices: number;
  /** Schools without a calendar (not rolled up). */
  noCalendar: number;
  windows: number;
  /** Windows (teaching and outside) read from raw points, and those whose kept results were reused. */
  read: number;
  reused: number;
  durationMs: number;
}

/** A window's results kept between calls (RollupDeps.keep). */
interface Kept {
  date: string;
  /** The `nowMs` of the call that read it. */
  keptAt: number;
  /** The schools whose readings it holds (those that had the window then): a school given it later is not. */
  schools: ReadonlySet<string>;
  data: WindowData | OutsideData;
}

export interface Window {
  startMs: number;
  endMs: number;
  /** Buckets the window spans (aligned to the epoch, as InfluxDB's GROUP BY time aligns them). */
  buckets: number;
}

/** One device's teaching-time figures for one day, in buckets and class periods. */
export interface DeviceDay {
  device: string;
  classroom: string | undefined;
  kind: string;
  teaching: number;
  online: number;
  on: number;
  use: number;
  faulty: number;
  periods: number;
  periodsUsed: number;
  /** Teaching buckets on but not in use. */
  unused: number;
  /** Buckets on outside teaching time (before the first period, after the last, or all day off school). */
  leftOn: number;
  /** Teaching buckets whose readings carried activity evidence (`use_basis = activity`). */
  activity: number;
}

/**
 * The counters of a device's day in `usage_packed_day`, in order. A reader takes an item by how many counters
 * it has: 5 (rolled up before #16: `online,on,use,faulty,periodsUsed`) or 8 (these); later formats only append.
 */
export const PACKED_COUNTERS = [
  'online',
  'on',
  'use',
  'faulty',
  'periodsUsed',
  'unused',
  'leftOn',
  'activity',
] as const satisfies readonly (keyof DeviceDay)[];

/**
 * Devices per `usage_packed_day` point: keeps a packed string below InfluxDB's 64 KB field limit even at its
 * longest (64-character ids, eight counters of up to five digits: ≤ 113 bytes an item, 45 KB a part).
 */
export const PACK_PER_POINT = 400;

/**
 * A school's day as points: one `usage_day` per device (for dashboards and ad-hoc InfluxQL), and the same
 * figures packed per school into `usage_packed_day` — `device:online,on,use,faulty,periodsUsed,unused,leftOn,
 * activity|…` (PACKED_COUNTERS) — which the API's day cache reads: a city day is then 1,600 rows instead of
 * 40,000 one-point series, which InfluxDB 1.x reads an order of magnitude faster (its cost is per series). Ids
 * cannot contain `:`, `,` or `|`. `teaching`: whether the school taught that day (`teaching_day`).
 */
export function usagePoints(
  ts: number,
  bucketS: number,
  region: string,
  school: string,
  rows: readonly DeviceDay[],
): AnyPoint[] {
  const out: AnyPoint[] = [];
  for (const r of rows) {
    // A day without teaching time (no school, or no period ended yet) has no teaching figures at all — not
    // zeros — so `count(used_day)` still counts a device's teaching days, in rows rolled up before #16 too.
    const teaching = r.periods > 0;
    out.push({
      measurement: 'usage_day',
      tags: { region, school, classroom: r.classroom, device: r.device, kind: r.kind },
      fields: {
        bucket_s: bucketS,
        ...(teaching && {
          teaching_b: r.teaching,
          online_b: r.online,
          on_b: r.on,
          use_b: r.use,
          faulty_b: r.faulty,
          periods: r.periods,
          periods_used: r.periodsUsed,
          online_day: r.online > 0 ? 1 : 0,
          used_day: r.periodsUsed > 0 ? 1 : 0,
          unused_b: r.unused,
          activity_b: r.activity,
        }),
        left_on_b: r.leftOn,
        teaching_day: teaching ? 1 : 0,
      },
      ts,
    });
  }
  // `parts` lets a reader ignore a stale higher part left by an earlier run when the school had more devices.
  const parts = Math.max(1, Math.ceil(rows.length / PACK_PER_POINT));
  for (let part = 0; part < parts; part++) {
    const chunk = rows.slice(part * PACK_PER_POINT, (part + 1) * PACK_PER_POINT);
    out.push({
      measurement: 'usage_packed_day',
      tags: { region, school, part: String(part) },
      fields: {
        devices: chunk.map((r) => `${r.device}:${PACKED_COUNTERS.map((k) => r[k]).join(',')}`).join('|'),
        n: chunk.length,
        parts,
        bucket_s: bucketS,
      },
      ts,
    });
  }
  return out;
}

interface UplinkAcc {
  teaching: number;
  data: number;
  up: number;
  over: [number, number, number, number, number]; // 50, 60, 70, 80, 90 %
  utils: number[];
  speedMbps: number;
  /** Probe buckets, those with an answer, and their quality cells (common/figures/quality.ts). */
  probed: number;
  reached: number;
  quality: Map<string, number>;
  /** Buckets the link was up by either measure: its interface up (SNMP), or a probe answered. */
  available: number;
  /** Probes sent and lost in the answered buckets: the day's pooled loss. */
  sent: number;
  lost: number;
}

const OVER = [50, 60, 70, 80, 90] as const;
const ROLLED_KINDS = new Set<string>([...DISPLAY_KINDS, ...COMPUTER_KINDS]);

export class Rollup {
  /** By window kind and times (`t`/`o` start-end): results of final windows (RollupDeps.keep). */
  private readonly kept = new Map<string, Kept>();

  constructor(private readonly deps: RollupDeps) {}

  /** Forgets kept window results of dates before `date` (the scheduled job no longer rolls them up). */
  forgetBefore(date: string): void {
    for (const [k, v] of this.kept) if (v.date < date) this.kept.delete(k);
  }

  /**
   * Drops the kept windows of `date` that a reading stored late may be missing: those kept at or before
   * `settleMs` after the newest `late_data` marker of the date (written by the collector when it stores a
   * reading of that date late, at the time it does; docs/scale.md).
   */
  private async dropLate(date: string): Promise<void> {
    const settleMs = this.deps.keep?.settleMs ?? 0;
    const mine = [...this.kept].filter(([, v]) => v.date === date);
    if (mine.length === 0) return;
    const since = Math.min(...mine.map(([, v]) => v.keptAt)) - settleMs;
    const [series = []] = await this.deps.storage.query(
      iql`SELECT last(n) AS n FROM late_data WHERE ${ident('date')} = ${date} AND time >= ${timeMs(since)}`,
    );
    const times = series.flatMap((s) => s.values.map((v) => timeOf(v[s.columns.indexOf('time')])));
    if (times.length === 0) return;
    const latest = Math.max(...times);
    for (const [k, v] of mine) if (v.keptAt <= latest + settleMs) this.kept.delete(k);
  }

  /**
   * Rolls up one local date. Only class periods that have ended by `nowMs` count, so "today so far" is rolled
   * up honestly (a period still to come is neither up nor down); a later run completes the day. Time outside
   * teaching time counts as far as it has passed.
   */
  async day(date: string, nowMs: number = Date.now()): Promise<DayResult> {
    const started = performance.now();
    const { storage, bucketS } = this.deps;
    // A roll that keeps nothing (the CLI's backfill, after a restore that wrote raw readings no collector marked)
    // marks the date as a collector marks a late reading, so a scheduled worker keeping windows of it reads the
    // day again instead of writing its older figures back over these.
    if (!this.deps.keep) {
      storage.write([{ measurement: 'late_data', tags: { date }, fields: { n: 1 }, ts: nowMs }]);
      await storage.flush();
    }
    const reg = this.deps.registry();
    const cals = this.deps.calendars();
    const bucketMs = bucketS * 1000;
    const dayStartMs = localMidnightMs(date);
    const dayEndMs = dayStartMs + 86_400_000;

    // Which windows each school teaches in on this date, and which lie outside its teaching time.
    const windows = new Map<string, Window>();
    const outside = new Map<string, Window>();
    const window = (into: Map<string, Window>, startMs: number, endMs: number): Window => {
      const key = `${startMs}-${endMs}`;
      let w = into.get(key);
      if (!w) {
        w = { startMs, endMs, buckets: periodBuckets({ startMs, endMs }, bucketMs) };
        into.set(key, w);
      }
      return w;
    };
    const schoolWindows = new Map<string, Window[]>();
    const schoolOutside = new Map<string, Window[]>();
    let noCalendar = 0;
    for (const s of reg.data.schools) {
      const cal = cals.forSchool(s.id, reg.regionPath(s.region));
      if (!cal) {
        noCalendar++;
        continue;
      }
      const info = cal.day(date);
      const periods = info.kind === 'teaching' ? info.periods : [];
      const list: Window[] = [];
      for (const p of periods) if (p.endMs <= nowMs) list.push(window(windows, p.startMs, p.endMs));
      if (list.length > 0) schoolWindows.set(s.id, list);
      // Outside teaching time: the day around the timetable, or all of it. Breaks between periods are neither.
      const first = Math.min(...periods.map((p) => p.startMs));
      const last = Math.max(...periods.map((p) => p.endMs));
      const spans: [number, number][] =
        periods.length > 0
          ? [
              [dayStartMs, first],
              [last, dayEndMs],
            ]
          : [[dayStartMs, dayEndMs]];
      const out: Window[] = [];
      for (const [a, b] of spans) if (b > a && a < nowMs) out.push(window(outside, a, b));
      schoolOutside.set(s.id, out);
    }

    // The windows not kept are read together (readWindows): display and host over one span per group of
    // schools, uplink and probe per teaching window. With RollupDeps.keep, final windows are read once and their
    // results reused (docs/scale.md).
    if (this.deps.keep) await this.dropLate(date);
    const perWindow = new Map<Window, WindowData>();
    const perOutside = new Map<Window, OutsideData>();
    const toRead: WindowSet = { teaching: [], outside: [] };
    // The schools that have each window now: a kept result serves only if it holds all of them (a school
    // imported, or moved to another timetable, since it was read has no readings in it).
    const holders = new Map<Window, string[]>();
    for (const byWindow of [schoolWindows, schoolOutside])
      for (const [id, list] of byWindow)
        for (const w of list) getOr(holders, w, () => [] as string[]).push(id);
    for (const [kind, all, into, list] of [
      ['t', windows, perWindow, toRead.teaching],
      ['o', outside, perOutside, toRead.outside],
    ] as const)
      for (const w of all.values()) {
        const hit = this.kept.get(`${kind}${w.startMs}-${w.endMs}`);
        if (hit && (holders.get(w) ?? []).every((id) => hit.schools.has(id)))
          (into as Map<Window, WindowData | OutsideData>).set(w, hit.data);
        else list.push(w);
      }
    const read = toRead.teaching.length + toRead.outside.length;
    const counts = { read, reused: windows.size + outside.size - read };
    const schools = [...schoolOutside].map(([id, out]) => ({
      id,
      teaching: schoolWindows.get(id) ?? [],
      outside: out,
      devices: reg.devicesBySchool.get(id)?.length ?? 0,
    }));
    const got = await readWindows(storage, bucketS, toRead, schools, {
      rowBudget: this.deps.rowBudget,
      inFlight: this.deps.readsInFlight,
    });
    for (const [kind, results, into] of [
      ['t', got.teaching, perWindow],
      ['o', got.outside, perOutside],
    ] as const)
      for (const [w, data] of results) {
        (into as Map<Window, WindowData | OutsideData>).set(w, data);
        if (this.deps.keep && nowMs >= w.endMs + this.deps.keep.settleMs)
          this.kept.set(`${kind}${w.startMs}-${w.endMs}`, {
            date,
            keptAt: nowMs,
            schools: new Set(holders.get(w)),
            data,
          });
      }

    const points: AnyPoint[] = [];
    const ts = dayStartMs;
    let devices = 0;
    for (const [schoolId, out] of schoolOutside) {
      const list = schoolWindows.get(schoolId) ?? [];
      const path = reg.schoolPath(schoolId)!;
      const rows: DeviceDay[] = [];
      for (const d of reg.devicesBySchool.get(schoolId) ?? []) {
        if (!ROLLED_KINDS.has(d.kind)) continue;
        const isDisplay = (DISPLAY_KINDS as readonly string[]).includes(d.kind);
        const acc: DeviceDay = {
          device: d.id,
          classroom: d.classroom,
          kind: d.kind,
          teaching: 0,
          online: 0,
          on: 0,
          use: 0,
          faulty: 0,
          periods: 0,
          periodsUsed: 0,
          unused: 0,
          leftOn: 0,
          activity: 0,
        };
        const key = entityKey(schoolId, d.id);
        for (const w of list) {
          const data = perWindow.get(w)!;
          const disp = data.display.get(key);
          const hostOnline = data.host.get(key) ?? 0;
          const online = Math.max(disp?.online ?? 0, hostOnline);
          // A display's use is what its readings were judged (docs/usage.md). A computer with display points (a
          // v2 teacher PC: its screen, its activity) likewise; one with host readings only (v1) has nothing but
          // its reporting: on while it reports, and on is in use (use basis power).
          const byPower = !isDisplay && !disp;
          const on = byPower ? online : (disp?.on ?? 0);
          const use = byPower ? online : (disp?.use ?? 0);
          acc.teaching += w.buckets;
          acc.online += online;
          acc.on += on;
          acc.use += use;
          acc.unused += byPower ? 0 : (disp?.unused ?? 0);
          acc.activity += disp?.activity ?? 0;
          acc.faulty += data.faulty.get(key) ?? 0;
          acc.periods++;
          if (use * 2 >= w.buckets) acc.periodsUsed++;
        }
        for (const w of out) {
          const data = perOutside.get(w)!;
          const on = data.on.get(key);
          acc.leftOn += on ?? (isDisplay ? 0 : (data.host.get(key) ?? 0));
        }
        rows.push(acc);
      }
      devices += rows.length;
      points.push(...usagePoints(ts, bucketS, path, schoolId, rows));
      // An uplink_day only for a day the school taught in: it is what counts the day as a teaching day.
      if (list.length === 0) continue;
      const up: UplinkAcc = {
        teaching: 0,
        data: 0,
        up: 0,
        over: [0, 0, 0, 0, 0],
        utils: [],
        speedMbps: 0,
        probed: 0,
        reached: 0,
        quality: new Map(),
        available: 0,
        sent: 0,
        lost: 0,
      };
      for (const w of list) {
        up.teaching += w.buckets;
        const upAt = new Set<number>();
        for (const b of uplinkBuckets(reg, schoolId, perWindow.get(w)!.uplink.get(schoolId))) {
          up.data++;
          if (b.up === 1) {
            up.up++;
            upAt.add(b.timeMs);
          }
          if (b.util !== null) {
            up.utils.push(b.util);
            OVER.forEach((t, i) => {
              if (b.util! >= t) up.over[i]!++;
            });
          }
          if (b.speedMbps !== null) up.speedMbps = Math.max(up.speedMbps, b.speedMbps);
        }
        for (const b of probeBuckets(reg, schoolId, perWindow.get(w)!.probe.get(schoolId))) {
          up.probed++;
          // An unanswered bucket is an outage (availability), not a link of low quality: it has no cell.
          if (!b.answered) continue;
          up.reached++;
          upAt.add(b.timeMs);
          up.sent += b.sent;
          up.lost += b.sent - b.received;
          const cell = cellOf(b);
          up.quality.set(cell, (up.quality.get(cell) ?? 0) + 1);
        }
        up.available += upAt.size;
      }
      points.push({
        measurement: 'uplink_day',
        tags: { region: path, school: schoolId },
        fields: {
          bucket_s: bucketS,
          teaching_b: up.teaching,
          data_b: up.data,
          up_b: up.up,
          over50_b: up.over[0],
          over60_b: up.over[1],
          over70_b: up.over[2],
          over80_b: up.over[3],
          over90_b: up.over[4],
          ...(up.utils.length > 0 ? { p95_util_pct: percentile(up.utils, 95) } : {}),
          ...(up.speedMbps > 0 ? { speed_mbps: up.speedMbps } : {}),
          probe_b: up.probed,
          reach_b: up.reached,
          avail_b: up.available,
          probe_sent: up.sent,
          probe_lost: up.lost,
          ...(up.probed > 0 ? { quality: packHistogram(up.quality) } : {}),
        },
        ts,
      });
    }
    const durationMs = performance.now() - started;
    points.push({
      measurement: 'rollup_day',
      tags: {},
      fields: { devices, schools: schoolWindows.size, duration_ms: durationMs, bucket_s: bucketS },
      ts,
    });
    storage.write(points);
    await storage.flush();
    const result = {
      date,
      schools: schoolWindows.size,
      devices,
      noCalendar,
      windows: windows.size,
      ...counts,
      durationMs,
    };
    this.deps.log.info(result, 'rolled up a day');
    return result;
  }

  /** Rolls up every date in [from, to] (inclusive). */
  async range(from: string, to: string): Promise<DayResult[]> {
    const out: DayResult[] = [];
    for (let n = dayNumber(from); n <= dayNumber(to); n++) out.push(await this.day(dateOf(n)));
    return out;
  }

  /** The days before `nowMs` to (re-)roll: the last `lateDays` finished local dates. */
  static dueDates(nowMs: number, lateDays: number): string[] {
    const today = dayNumber(localDate(nowMs));
    return Array.from({ length: lateDays }, (_, i) => dateOf(today - lateDays + i));
  }
}

export interface WindowSet {
  teaching: Window[];
  outside: Window[];
}

/** A school's windows of the day and its registered devices (how many rows a read of it may return). */
export interface SchoolWindows {
  id: string;
  teaching: readonly Window[];
  outside: readonly Window[];
  devices: number;
}

/** A finer grid than this (edges at odd seconds) reads each window on its own instead (`readWindows`). */
const MIN_GRID_MS = 60_000;

/** Schools in one read at most (each an `OR` term of its statements). */
const MAX_GROUP_SCHOOLS = 2_000;

/** Bucket rows per statement a response may hold at most, summed over a group of schools (`readWindows`). */
export const ROW_BUDGET = 400_000;

/**
 * Reads the windows of one day for every school that has them. Display (on, in use, faults, activity) and
 * host presence are read for all the windows at once: one span from the first window's start to the last's end,
 * bucketed with a plain `GROUP BY time` on a grid every window edge lies on, per group of schools (`school = …
 * OR …`, at most `rowBudget` bucket rows per statement), and each row is given here to the windows of its own
 * school that contain it — so every series is read once per call, not once per window (InfluxDB 1.6 pays per
 * series and statement; docs/scale.md). No subqueries: the buckets are counted here. Where the edges share no
 * grid of at least `MIN_GRID_MS`, each distinct window range is its own span, bucketed by `bucketS` and clipped
 * by its range. Uplink and probe buckets (one device per school) come with the span when its grid is the
 * bucket, else are read per teaching window (`readUplink`).
 */
export async function readWindows(
  storage: Storage,
  bucketS: number,
  windows: WindowSet,
  schools: readonly SchoolWindows[],
  {
    rowBudget = ROW_BUDGET,
    inFlight = 1,
  }: { rowBudget?: number | undefined; inFlight?: number | undefined } = {},
): Promise<{ teaching: Map<Window, WindowData>; outside: Map<Window, OutsideData> }> {
  const teaching = new Map<Window, WindowData>();
  const outside = new Map<Window, OutsideData>();
  for (const w of windows.teaching)
    teaching.set(w, {
      display: new Map(),
      faulty: new Map(),
      host: new Map(),
      uplink: new Map(),
      probe: new Map(),
    });
  for (const w of windows.outside) outside.set(w, { on: new Map(), host: new Map() });
  const all = [...windows.teaching, ...windows.outside];
  if (all.length === 0) return { teaching, outside };
  const bucketMs = bucketS * 1000;
  const gridMs = commonGrid(all, bucketMs);
  // One span holding every window, or (edges off a coarse grid) one span per distinct window range holding
  // exactly the windows of that range — never another window nested in it, which its bucket grid would not cut.
  const spans: { startMs: number; endMs: number; gridMs: number; exact: boolean }[] =
    gridMs >= MIN_GRID_MS
      ? [
          {
            startMs: Math.min(...all.map((w) => w.startMs)),
            endMs: Math.max(...all.map((w) => w.endMs)),
            gridMs,
            exact: false,
          },
        ]
      : [...new Map(all.map((w) => [`${w.startMs}-${w.endMs}`, w])).values()].map((w) => ({
          startMs: w.startMs,
          endMs: w.endMs,
          gridMs: bucketMs,
          exact: true,
        }));
  const activity = new Map<Window, Map<string, number>>();
  /** Teaching windows whose uplink and probe buckets came with the span's read. */
  const uplinkRead = new Set<Window>();
  for (const span of spans) {
    // Per school, its windows being read that this span reads (all of them, with one span).
    const inSpan = (list: readonly Window[], reading: Map<Window, unknown>) =>
      list.filter(
        (w) =>
          reading.has(w) &&
          (span.exact
            ? w.startMs === span.startMs && w.endMs === span.endMs
            : w.startMs >= span.startMs && w.endMs <= span.endMs),
      );
    const perSchool = new Map<string, SchoolRead>();
    for (const s of schools) {
      const t = inSpan(s.teaching, teaching);
      const o = inSpan(s.outside, outside);
      if (t.length + o.length > 0) perSchool.set(s.id, { teaching: t, outside: o });
    }
    const rowsPerDevice = Math.ceil((span.endMs - span.startMs) / span.gridMs);
    const g = raw(`${span.gridMs / 1000}s`);
    const range = iql`time >= ${timeMs(span.startMs)} AND time < ${timeMs(span.endMs)}`;
    const per = raw(iql`GROUP BY time(${g}), school, device fill(none)`);
    // Up to `inFlight` groups at once: InfluxDB answers one while this process counts the rows of another.
    const groups = schoolGroups(schools, perSchool, rowsPerDevice, rowBudget);
    let next = 0;
    const readGroup = async (group: string[]) => {
      const where = raw(`(${group.map((id) => iql`school = ${id}`).join(' OR ')}) AND ${range}`);
      const [display = [], active = [], host = [], uplink = [], probe = []] = await readAll(storage, [
        // Per bucket: on and in use when any reading of the bucket was (max); faulty when any reported errors.
        iql`SELECT max(${ident('on')}) AS o, max(in_use) AS u, max(error_count) AS f FROM display WHERE ${where} ${per}`,
        // Buckets with activity evidence: the basis of the use figures (docs/usage.md, use_basis).
        iql`SELECT count(use_basis) AS a FROM display WHERE use_basis = 'activity' AND ${where} ${per}`,
        iql`SELECT count(cpu_pct) AS c FROM host WHERE ${where} ${per}`,
        // Uplink and probe buckets too, when the grid is the bucket (rows need no folding).
        ...(span.gridMs === bucketMs ? uplinkStatements(where.text, per.text) : []),
      ]);
      const mine = (s: Series) => perSchool.get(s.tags.school ?? '');
      for (const s of display) {
        const ws = mine(s);
        if (!ws) continue;
        const [o, u, f] = [s.columns.indexOf('o'), s.columns.indexOf('u'), s.columns.indexOf('f')];
        const k = key(s);
        for (const w of ws.teaching) {
          const cells = cellsOf(s, w, span.gridMs, bucketMs, (cell, v) => {
            cell.o = maxOf(cell.o, numOrNull(v[o]));
            cell.u = maxOf(cell.u, numOrNull(v[u]));
            cell.f = maxOf(cell.f, numOrNull(v[f]));
          });
          let d: DisplayWindow | undefined;
          let faulty = 0;
          for (const c of cells) {
            // A device with display readings saying on or in use has display figures (the former `count(o)` row).
            if (c.o !== null || c.u !== null) d ??= { online: 0, on: 0, use: 0, unused: 0, activity: 0 };
            if (d && c.o !== null) {
              d.online++;
              d.on += c.o;
              if (c.o === 1 && c.u === 0) d.unused++;
            }
            if (d && c.u !== null) d.use += c.u;
            if (c.f !== null && c.f > 0) faulty++;
          }
          const data = teaching.get(w)!;
          if (d) data.display.set(k, d);
          if (faulty > 0) data.faulty.set(k, faulty);
        }
        for (const w of ws.outside) {
          let on: number | undefined;
          for (const c of cellsOf(s, w, span.gridMs, bucketMs, (cell, v) => {
            cell.o = maxOf(cell.o, numOrNull(v[o]));
          }))
            if (c.o !== null) on = (on ?? 0) + c.o;
          if (on !== undefined) outside.get(w)!.on.set(k, on);
        }
      }
      /** Buckets with a positive `column` per window of the series' school, into that window's map. */
      const present = (
        list: Series[],
        column: string,
        targets: (ws: SchoolRead) => [Window, Map<string, number>][],
      ) => {
        for (const s of list) {
          const ws = mine(s);
          if (!ws) continue;
          const c = s.columns.indexOf(column);
          for (const [w, into] of targets(ws)) {
            const n = cellsOf(s, w, span.gridMs, bucketMs, (cell, v) => {
              if (typeof v[c] === 'number' && v[c] > 0) cell.o = 1;
            }).filter((cell) => cell.o === 1).length;
            if (n > 0) into.set(key(s), n);
          }
        }
      };
      present(active, 'a', (ws) =>
        ws.teaching.map((w) => [w, getOr(activity, w, () => new Map<string, number>())]),
      );
      present(host, 'c', (ws) => [
        ...ws.teaching.map((w): [Window, Map<string, number>] => [w, teaching.get(w)!.host]),
        ...ws.outside.map((w): [Window, Map<string, number>] => [w, outside.get(w)!.host]),
      ]);
      for (const [list, rowOf, of] of [
        [uplink, uplinkRowOf, (d: WindowData) => d.uplink],
        [probe, probeRowOf, (d: WindowData) => d.probe],
      ] as const)
        for (const s of list) {
          for (const w of mine(s)?.teaching ?? []) {
            const [from, to] = rowsIn(s, w, span.gridMs);
            addRows(
              s,
              rowOf as (s: Series) => (v: unknown[]) => UplinkRow | ProbeRow,
              of(teaching.get(w)!) as Map<string, Map<string, (UplinkRow | ProbeRow)[]>>,
              from,
              to,
            );
          }
        }
    };
    // A failed read stops the others from starting more: the roll fails as a whole (nothing kept or written).
    let failed = false;
    await Promise.all(
      Array.from({ length: Math.min(inFlight, groups.length) }, async () => {
        while (!failed && next < groups.length)
          await readGroup(groups[next++]!).catch((err: unknown) => {
            failed = true;
            throw err;
          });
      }),
    );
    if (span.gridMs === bucketMs) for (const w of windows.teaching) uplinkRead.add(w);
  }
  for (const [w, data] of teaching) {
    const act = activity.get(w);
    for (const [k, d] of data.display) d.activity = act?.get(k) ?? 0;
  }
  for (const w of windows.teaching)
    if (!uplinkRead.has(w)) await readUplink(storage, bucketS, w, teaching.get(w)!);
  return { teaching, outside };
}

/** A school's windows being read in one span. */
interface SchoolRead {
  teaching: Window[];
  outside: Window[];
}

export type DisplayWindow = WindowData['display'] extends Map<string, infer D> ? D : never;

/** One bucket of one window of one device: the maxima of its rows (sub-buckets of the read's grid). */
interface Cell {
  o: number | null;
  u: number | null;
  f: number | null;
}

/**
 * The buckets of window `w` in series `s` (one device, rows in time order): each row whose grid cell
 * `[time, time + gridMs)` meets the window is folded into its bucket's cell by `fold`. Either the window's
 * edges lie on the grid, so a row is in the window or not as a whole, or the read was of this window alone
 * (clipped by its range) and every row of it meets the window — its first one dated at the bucket's start,
 * before the window's.
 */
function cellsOf(
  s: Series,
  w: Window,
  gridMs: number,
  bucketMs: number,
  fold: (cell: Cell, v: unknown[]) => void,
): Cell[] {
  const t = s.columns.indexOf('time');
  const out: Cell[] = [];
  let bucket = Number.NaN;
  let cell: Cell | undefined;
  const [from, to] = rowsIn(s, w, gridMs);
  for (let i = from; i < to; i++) {
    const v = s.values[i]!;
    const at = timeOf(v[t]);
    const b = Math.floor(at / bucketMs);
    if (b !== bucket || !cell) {
      bucket = b;
      cell = { o: null, u: null, f: null };
      out.push(cell);
    }
    fold(cell, v);
  }
  return out;
}

/** The rows `[from, to)` of series `s` (in time order) whose grid cell `[time, time + gridMs)` meets `w`. */
function rowsIn(s: Series, w: Window, gridMs: number): [number, number] {
  const t = s.columns.indexOf('time');
  /** The first row whose time is at least `ms`. */
  const first = (ms: number) => {
    let lo = 0;
    for (let hi = s.values.length; lo < hi; ) {
      const mid = (lo + hi) >>> 1;
      if (timeOf(s.values[mid]![t]) < ms) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  // Cell end after the window's start (time > start − grid), time before its end.
  return [first(w.startMs - gridMs + 1), first(w.endMs)];
}

/**
 * The coarsest grid (ms, dividing the bucket) that every edge of `windows` lies on, counted from the epoch as
 * InfluxDB's `GROUP BY time` counts; 0 when an edge is not on a whole second.
 */
function commonGrid(windows: readonly Window[], bucketMs: number): number {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  let g = bucketMs / 1000;
  for (const w of windows)
    for (const edge of [w.startMs, w.endMs]) {
      const off = ((edge % bucketMs) + bucketMs) % bucketMs;
      if (off % 1000 !== 0) return 0;
      g = gcd(g, off / 1000);
    }
  return g * 1000;
}

/** Schools with windows in the span, in registry order, grouped so that devices × rows per device ≤ budget. */
function schoolGroups(
  schools: readonly SchoolWindows[],
  reading: Map<string, unknown>,
  rowsPerDevice: number,
  budget: number,
): string[][] {
  const groups: string[][] = [];
  let group: string[] = [];
  let rows = 0;
  for (const s of schools) {
    if (!reading.has(s.id)) continue;
    const r = Math.max(1, s.devices) * rowsPerDevice;
    if (group.length > 0 && (rows + r > budget || group.length >= MAX_GROUP_SCHOOLS)) {
      groups.push(group);
      group = [];
      rows = 0;
    }
    group.push(s.id);
    rows += r;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * The uplink and probe statements: per bucket of the grid, the uplink interfaces' busiest utilisation, worst
 * status and largest speed; the probes sent and answered, worst RTT and jitter (docs/links.md).
 */
function uplinkStatements(where: string, per: string): string[] {
  return [
    iql`SELECT max(util_in_pct) AS ui, max(util_out_pct) AS uo, min(oper_up) AS up, max(speed_mbps) AS sp FROM iface WHERE uplink = 'true' AND ${raw(where)} ${raw(per)}`,
    iql`SELECT sum(sent) AS s, sum(received) AS rx, max(rtt_avg_ms) AS r, max(jitter_ms) AS j FROM probe WHERE ${raw(where)} ${raw(per)}`,
  ];
}

function uplinkRowOf(s: Series): (v: unknown[]) => UplinkRow {
  const c = (name: string) => s.columns.indexOf(name);
  const [t, ui, uo, up, sp] = [c('time'), c('ui'), c('uo'), c('up'), c('sp')];
  return (v) => ({
    timeMs: timeOf(v[t]),
    ui: v[ui] as number | null,
    uo: v[uo] as number | null,
    up: v[up] as number | null,
    speedMbps: v[sp] as number | null,
  });
}

function probeRowOf(s: Series): (v: unknown[]) => ProbeRow {
  const c = (name: string) => s.columns.indexOf(name);
  const [t, sn, r, j, rx] = [c('time'), c('s'), c('r'), c('j'), c('rx')];
  return (v) => {
    const sent = typeof v[sn] === 'number' ? v[sn] : 0;
    const received = typeof v[rx] === 'number' ? Math.min(v[rx], sent) : 0;
    return {
      timeMs: timeOf(v[t]),
      sent,
      received,
      // Pooled over the bucket's cycles: one lost echo of ten is not a 10 % bucket.
      lossPct: sent > 0 ? (100 * (sent - received)) / sent : 100,
      rttMs: typeof v[r] === 'number' ? v[r] : null,
      jitterMs: typeof v[j] === 'number' ? v[j] : null,
      answered: received > 0,
    };
  };
}

/** Rows `[from, to)` of a (school, device) series, converted, added to that device's rows in `into`. */
function addRows<R>(
  s: Series,
  rowOf: (s: Series) => (v: unknown[]) => R,
  into: Map<string, Map<string, R[]>>,
  from = 0,
  to = s.values.length,
): void {
  if (to <= from) return;
  const rows = getOr(into, s.tags.school ?? '', () => new Map<string, R[]>());
  const device = s.tags.device ?? '';
  const toRow = rowOf(s);
  const list = rows.get(device) ?? [];
  for (let i = from; i < to; i++) list.push(toRow(s.values[i]!));
  rows.set(device, list);
}

/** A teaching window's uplink and probe buckets read on their own (few series), in slices. */
async function readUplink(storage: Storage, bucketS: number, w: Window, data: WindowData): Promise<void> {
  const per = iql`GROUP BY time(${raw(`${bucketS}s`)}), school, device fill(none)`;
  for (const [startMs, endMs] of slices(w, bucketS * 1000)) {
    const where = iql`time >= ${timeMs(startMs)} AND time < ${timeMs(endMs)}`;
    const [uplink = [], probe = []] = await readAll(storage, uplinkStatements(where, per));
    for (const s of uplink) addRows(s, uplinkRowOf, data.uplink);
    for (const s of probe) addRows(s, probeRowOf, data.probe);
  }
}

/**
 * Runs a read's statements and checks the answer is whole before anything is counted — a part counted as if
 * whole would be a wrong figure, so any doubt is a `CFM_STORAGE_QUERY` error:
 * - a server's `[http] max-row-limit` cuts an answer short (`Storage.queryWhole`), and marks a cut series
 *   partial (a series here holds one device's rows of one day, ≤ 1,440, below the 10,000 rows past which
 *   InfluxDB 1.6 also marks complete series partial);
 * - a (school, device) answered as two series of one statement would be counted apart, its buckets not
 *   folded together.
 */
async function readAll(storage: Storage, statements: string[]): Promise<Series[][]> {
  const results = await storage.queryWhole(statements, 'a rollup read');
  const cut = () =>
    new StorageError(
      'CFM_STORAGE_QUERY',
      'InfluxDB cut a rollup read short: is [http] max-row-limit set on the server? The rollup needs 0 (no limit)',
    );
  for (const list of results) {
    const seen = new Set<string>();
    for (const s of list) {
      if (s.partial) throw cut();
      const k = key(s);
      if (seen.has(k))
        throw new StorageError('CFM_STORAGE_QUERY', `InfluxDB answered ${k} as two series of one statement`);
      seen.add(k);
    }
  }
  return results;
}

const numOrNull = (v: unknown): number | null => (typeof v === 'number' ? v : null);

/** `m`'s value for `k`, made by `make` and set first if there is none. */
function getOr<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}

/** Most buckets per device in one response (a window longer than this is read in slices). */
const SLICE_BUCKETS = 24;

/**
 * A window cut at bucket boundaries into pieces of at most `SLICE_BUCKETS` buckets: no bucket is split between
 * two pieces, so counts and sums over the pieces' buckets are those over the window's.
 */
function slices(w: Window, bucketMs: number): [number, number][] {
  const out: [number, number][] = [];
  let a = w.startMs;
  while (a < w.endMs) {
    const b = Math.min(w.endMs, (Math.floor(a / bucketMs) + SLICE_BUCKETS) * bucketMs);
    out.push([a, b]);
    a = b;
  }
  return out;
}

/** One uplink bucket of one device. */
interface UplinkRow {
  timeMs: number;
  ui: number | null;
  uo: number | null;
  up: number | null;
  speedMbps: number | null;
}

/** Outside teaching time, by `entityKey(school, device)`: display-on buckets, host-reporting buckets. */
export interface OutsideData {
  on: Map<string, number>;
  host: Map<string, number>;
}

/** A series' (school, device) as `entityKey`. */
const key = (s: Series) => entityKey(s.tags.school ?? '', s.tags.device ?? '');

export interface WindowData {
  /** By `entityKey(school, device)`. */
  display: Map<string, { online: number; on: number; use: number; unused: number; activity: number }>;
  faulty: Map<string, number>;
  host: Map<string, number>;
  /** School → device → its uplink buckets. */
  uplink: Map<string, Map<string, UplinkRow[]>>;
  /** School → device → its probe buckets. */
  probe: Map<string, Map<string, ProbeRow[]>>;
}

/** One probe bucket of one device: its probes sent and answered, pooled loss, worst RTT and jitter. */
interface ProbeRow extends BucketQuality {
  timeMs: number;
  sent: number;
  received: number;
  answered: boolean;
}

/**
 * A school's uplink buckets in a window from the devices that carry its uplink (`carriesUplink`). A school
 * without a registered uplink device may have several registered routers marking an uplink: per bucket, the
 * busiest utilisation, the worst status, the largest speed — as the former `GROUP BY school` computed it.
 */
function uplinkBuckets(
  reg: RegistryIndex,
  school: string,
  perDevice: Map<string, UplinkRow[]> | undefined,
): { timeMs: number; up: number | null; util: number | null; speedMbps: number | null }[] {
  const rows = carriedBuckets(reg, school, perDevice, (o, r) => {
    o.ui = maxOf(o.ui, r.ui);
    o.uo = maxOf(o.uo, r.uo);
    o.up = o.up === null ? r.up : r.up === null ? o.up : Math.min(o.up, r.up);
    o.speedMbps = maxOf(o.speedMbps, r.speedMbps);
  });
  return rows.map((r) => ({
    timeMs: r.timeMs,
    up: r.up,
    util: r.ui === null && r.uo === null ? null : Math.max(r.ui ?? 0, r.uo ?? 0),
    speedMbps: r.speedMbps,
  }));
}

/**
 * A school's probe buckets in a window from the devices that carry its uplink (as `uplinkBuckets`): per bucket,
 * the probes of all of them pooled, the worst RTT and jitter, and answered when any was.
 */
function probeBuckets(
  reg: RegistryIndex,
  school: string,
  perDevice: Map<string, ProbeRow[]> | undefined,
): ProbeRow[] {
  return carriedBuckets(reg, school, perDevice, (o, r) => {
    o.sent += r.sent;
    o.received += r.received;
    o.lossPct = o.sent > 0 ? (100 * (o.sent - o.received)) / o.sent : 100;
    o.rttMs = maxOf(o.rttMs, r.rttMs);
    o.jitterMs = maxOf(o.jitterMs, r.jitterMs);
    o.answered ||= r.answered;
  });
}

/**
 * The buckets of the devices that carry a school's uplink (`carriesUplink`), one per bucket time: a second
 * device's bucket of the same time is folded into the first with `merge` (a copy; the rows are not changed).
 */
function carriedBuckets<R extends { timeMs: number }>(
  reg: RegistryIndex,
  school: string,
  perDevice: Map<string, R[]> | undefined,
  merge: (into: R, r: R) => void,
): R[] {
  const byTime = new Map<number, R>();
  for (const [device, rows] of perDevice ?? []) {
    if (!carriesUplink(reg, school, device)) continue;
    for (const r of rows) {
      const o = byTime.get(r.timeMs);
      if (o) merge(o, r);
      else byTime.set(r.timeMs, { ...r });
    }
  }
  return [...byTime.values()];
}

const maxOf = (a: number | null, b: number | null): number | null =>
  a === null ? b : b === null ? a : Math.max(a, b);

/** A time column as epoch ms (the storage layer returns epoch ms or an RFC 3339 string). */
const timeOf = (v: unknown): number => (typeof v === 'number' ? v : Date.parse(String(v)));

/** Nearest-rank percentile (the value at or below which p % of the samples lie). */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}
