import { dateOf, dayNumber, localMidnightMs } from '../calendar.js';
import { entityKey } from '../registry/key.js';
import { iql, type Storage, timeMs } from '../storage/index.js';
import { unpackHistogram } from './quality.js';

/**
 * The daily rollups in memory. A period's figures are sums over its days, and days are shared by every period
 * that contains them (a week, its month, the term), so each rolled-up day is read from InfluxDB once per API
 * process — from `usage_packed_day`, one row per school (see `usagePoints` in rollup.ts for why) — and kept
 * compactly: eight 16-bit counters per device per day (~0.7 MB per city day).
 *
 * A loaded day is compared with its `rollup_day` marker again once it is `checkEveryMs` old (another process
 * may have re-run its rollup, or a backfill), and dropped at once in the process that ran the rollup
 * (`invalidate`). Days a request is reading are never evicted under it.
 */

/** Buckets a class period spans, aligned to the epoch as InfluxDB's GROUP BY time() aligns them. */
export function periodBuckets(p: { startMs: number; endMs: number }, bucketMs: number): number {
  const first = Math.floor(p.startMs / bucketMs) * bucketMs;
  return Math.ceil((p.endMs - first) / bucketMs);
}

/**
 * Per device per day, in the order of a packed item's counters (PACKED_COUNTERS, rollup/rollup.ts): online,
 * on, in-use and faulty teaching buckets, class periods used, on-but-unused teaching buckets, buckets left on
 * outside teaching time, teaching buckets with activity evidence.
 */
export const USAGE_FIELDS = [
  'online_b',
  'on_b',
  'use_b',
  'faulty_b',
  'periods_used',
  'unused_b',
  'left_on_b',
  'activity_b',
] as const;
const NF = USAGE_FIELDS.length;
/**
 * Consecutive days read by one query at most: a default shard group's seven (see `load`) — fewer for a fleet
 * past `DEVICE_DAYS_PER_QUERY`, so that a reply stays near a city week's ~12 MB (a province's week would be ~125
 * MB of JSON, and has to arrive within one `influx.timeoutMs`).
 */
const DAYS_PER_QUERY = 7;
const DEVICE_DAYS_PER_QUERY = 350_000;
/** `dayNumber(d) % 7` of a Tuesday (day 0, 1970-01-01, was a Thursday): where a run starts (`runLimit`). */
const SHARD_WEEK_START = 5;
/** Index of each counter in a day's row. */
export const U = {
  online: 0,
  on: 1,
  use: 2,
  faulty: 3,
  periodsUsed: 4,
  unused: 5,
  leftOn: 6,
  activity: 7,
} as const satisfies Record<string, number>;

/**
 * The counters of one packed item (`online,on,use,…`), read by how many it has: 8 or more, the current format
 * (counters beyond the eighth, from a later format, are ignored); 5, an item rolled up before #16 — its
 * on-but-unused buckets are its on buckets less its in-use ones (in use implied on then, as it does now), and
 * it has no left-on time nor activity evidence (0: use judged by power). Anything else: null (not read).
 */
export function unpackCounters(text: string): number[] | null {
  const parts = text.split(',');
  if (parts.length !== 5 && parts.length < NF) return null;
  const n = parts.map((x) => {
    const v = Number(x);
    return Number.isFinite(v) && v >= 0 ? Math.min(v, 32_767) : 0;
  });
  if (parts.length >= NF) return n.slice(0, NF);
  const [online = 0, on = 0, use = 0, faulty = 0, periodsUsed = 0] = n;
  return [online, on, use, faulty, periodsUsed, Math.max(0, on - use), 0, 0];
}

export interface UplinkDay {
  /** Teaching buckets the rollup counted for the school that day (periods that had ended). */
  teachingB: number;
  dataB: number;
  upB: number;
  over: [number, number, number, number, number];
  p95: number | null;
  speedMbps: number | null;
  /** Probe buckets, those with an answer, and their quality cells (common/figures/quality.ts). */
  probeB: number;
  reachB: number;
  quality: Map<string, number>;
  /** Buckets up by either measure: the interface up, or a probe answered. */
  availB: number;
  /** Probes sent and lost in the answered buckets. */
  probeSent: number;
  probeLost: number;
}

export interface Day {
  /** rollup_day marker (its run duration, a float that differs between runs); null: not rolled up. */
  marker: number | null;
  bucketS: number;
  /** Device index × 8 counters (USAGE_FIELDS). */
  usage: Int16Array;
  /** Which device indexes have a row this day. */
  present: Uint8Array;
  /** Per school: its uplink figures; every school the rollup counted that day has an entry. */
  uplink: Map<string, UplinkDay>;
  checkedAtMs: number;
}

export interface DayCacheDeps {
  storage: Storage;
  checkEveryMs: number;
  /** Days kept (least recently used dropped first, never one a request is reading). */
  maxDays: number;
  /** Devices in the fleet (the registry's): sizes the first reads, before any day read showed it (`runLimit`). */
  fleetSize?: () => number;
  now?: () => number;
}

export class DayCache {
  /**
   * `entityKey(school, device)` → index into every day's arrays. A device is (school, device): `wb-a1` of two
   * schools are two indexes, never one. Grows; indexes are never reused.
   */
  readonly deviceIndex = new Map<string, number>();
  /** Device index → `entityKey(school, device)`: the key a period's sums are kept by. */
  readonly deviceKeys: string[] = [];
  /** Device index → the device id (unique only within its school). */
  readonly deviceIds: string[] = [];
  /** Device index → its school's number in `schoolNo` (a per-day test of a device's school is then an array read). */
  readonly deviceSchoolNo: number[] = [];
  /** School → its number (dense, from 0, in order of first sight; never reused). */
  readonly schoolNo = new Map<string, number>();
  /**
   * Per school part (`school\0part`): the device ids of its packed string on the day read last, by position,
   * and their indexes — what `readPacked` compares the next day's items with.
   */
  private readonly layouts = new Map<string, { ids: string[]; idx: number[] }>();
  /** One item's counters while reading (up to 16: a later format may append). */
  private readonly scratch = new Float64Array(16);
  private readonly days = new Map<string, Day>();
  private readonly loading = new Map<string, Promise<void>>();
  /** Bumped by `invalidate()` (every day), and per date by `invalidate(date)`: a read in flight keeps a day only if neither moved. */
  private epoch = 0;
  private readonly dayEpochs = new Map<string, number>();
  /** Days read from InfluxDB and kept (for metrics and the benchmark). */
  loads = 0;
  /** Queries sent for days (a run of days each). */
  reads = 0;

  constructor(private readonly deps: DayCacheDeps) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** Forget one day (this process just rolled it up) or all of them. */
  invalidate(date?: string): void {
    // A read already in flight may return the old figures: the epoch tells it not to keep them.
    if (date) {
      this.dayEpochs.set(date, (this.dayEpochs.get(date) ?? 0) + 1);
      this.days.delete(date);
    } else {
      this.epoch++;
      this.days.clear();
    }
  }

  private index(device: string, school: string): number {
    const key = entityKey(school, device);
    let i = this.deviceIndex.get(key);
    if (i === undefined) {
      i = this.deviceIds.length;
      this.deviceIndex.set(key, i);
      this.deviceKeys.push(key);
      this.deviceIds.push(device);
      let no = this.schoolNo.get(school);
      if (no === undefined) {
        no = this.schoolNo.size;
        this.schoolNo.set(school, no);
      }
      this.deviceSchoolNo.push(no);
    }
    return i;
  }

  /** Makes every date of [from, to] available; resolves when loaded. */
  async ensure(from: string, to: string): Promise<void> {
    await this.dropChanged(from, to);
    // A read that raced with an invalidation keeps that day's figures out; read again. A rollup run invalidates
    // each day it rolls up as soon as it is done (rollup/service.ts), so a read spanning a run may need a pass
    // per day it rolls — at most one per date of the range, and each pass reads only the days invalidated.
    const passes = 5 + dayNumber(to) - dayNumber(from) + 1;
    for (let attempt = 0; attempt < passes; attempt++) {
      if (await this.fill(from, to)) {
        this.evict(from, to);
        return;
      }
    }
    throw new Error(`rollups ${from}..${to} kept changing while being read`);
  }

  /** One pass: loads what is missing; true when every date was already there. */
  private async fill(from: string, to: string): Promise<boolean> {
    const missing: string[] = [];
    const waits: Promise<void>[] = [];
    for (let n = dayNumber(from); n <= dayNumber(to); n++) {
      const d = dateOf(n);
      const day = this.days.get(d);
      if (day) {
        // Least recently used last: re-insert.
        this.days.delete(d);
        this.days.set(d, day);
        continue;
      }
      const l = this.loading.get(d);
      if (l) waits.push(l);
      else missing.push(d);
    }
    // Runs of consecutive missing days, one query each (`runLimit`), two queries at a time. Each missing day is
    // registered as loading first, so a concurrent caller waits for it instead of reading it again.
    const done = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();
    for (const d of missing) {
      const p = new Promise<void>((resolve, reject) => done.set(d, { resolve, reject }));
      p.catch(() => undefined); // observed through `waits`
      this.loading.set(d, p);
      waits.push(p);
    }
    let next = 0;
    /** The next run, sized when it is taken: the first reads teach the fleet's size. */
    const take = (): string[] => {
      const run = [missing[next++]!];
      const limit = this.runLimit();
      while (next < missing.length && run.length < limit) {
        const n = dayNumber(missing[next]!);
        // Consecutive, and not across the start of an InfluxDB week (see `runLimit`).
        if (n !== dayNumber(run.at(-1)!) + 1 || n % 7 === SHARD_WEEK_START) break;
        run.push(missing[next++]!);
      }
      return run;
    };
    let failed: { error: unknown } | undefined;
    const worker = async () => {
      while (next < missing.length) {
        const run = take();
        try {
          // After a failure the days not started fail with it at once: the caller has failed already, and a
          // request after the database recovers must read afresh, not wait on loads doomed to time out too.
          if (failed) throw failed.error;
          await this.load(run);
          for (const d of run) done.get(d)!.resolve();
        } catch (e) {
          failed ??= { error: e };
          for (const d of run) done.get(d)!.reject(e);
        } finally {
          for (const d of run) this.loading.delete(d);
        }
      }
    };
    void Promise.all(Array.from({ length: Math.min(2, missing.length) }, worker));
    if (waits.length === 0) return true;
    await Promise.all(waits);
    return false;
  }

  /** Drops least recently used days beyond `maxDays`, except those in [from, to] (being read now). */
  private evict(from: string, to: string): void {
    for (const d of this.days.keys()) {
      if (this.days.size <= this.deps.maxDays) return;
      if (d >= from && d <= to) continue;
      this.days.delete(d);
    }
  }

  /** Re-checks loaded days in [from, to] that are `checkEveryMs` old against their markers; drops changed ones. */
  private async dropChanged(from: string, to: string): Promise<void> {
    const now = this.now();
    const stale = [...this.days.entries()].filter(
      ([d, day]) => d >= from && d <= to && now - day.checkedAtMs >= this.deps.checkEveryMs,
    );
    if (stale.length === 0) return;
    const first = stale.map(([d]) => d).sort()[0]!;
    const last = stale
      .map(([d]) => d)
      .sort()
      .at(-1)!;
    const markers = await this.markers(first, last);
    for (const [d, day] of stale) {
      if ((markers.get(d)?.[0] ?? null) !== day.marker) this.days.delete(d);
      else day.checkedAtMs = now;
    }
  }

  private async markers(from: string, to: string): Promise<Map<string, [number, number]>> {
    const a = timeMs(localMidnightMs(from));
    const b = timeMs(localMidnightMs(to) + 86_400_000);
    const [rows = []] = await this.deps.storage.query(
      iql`SELECT duration_ms, bucket_s FROM rollup_day WHERE time >= ${a} AND time < ${b}`,
    );
    const m = new Map<string, [number, number]>();
    for (const s of rows)
      for (const v of s.values) m.set(dateAt(v[0] as number), [v[1] as number, v[2] as number]);
    return m;
  }

  /**
   * Days per query for the fleet known so far: `DAYS_PER_QUERY`, fewer past `DEVICE_DAYS_PER_QUERY`. Runs also
   * start at each local Tuesday: InfluxDB's default seven-day shard groups start on Mondays 00:00 UTC, which is a
   * local Monday 08:00, so a shard holds the rollups (stamped at local midnight) of Tuesday to Monday, and a run
   * within one shard decodes its blocks once.
   */
  private runLimit(): number {
    const devices = Math.max(this.deviceIds.length, this.deps.fleetSize?.() ?? 0);
    return Math.max(1, Math.min(DAYS_PER_QUERY, Math.floor(DEVICE_DAYS_PER_QUERY / Math.max(1, devices))));
  }

  /**
   * Reads consecutive days with one query: InfluxDB decodes each series' block (a shard's days of it) once per
   * query, so a week read at once costs its database about a third of seven one-day reads (docs/scale.md).
   */
  private async load(dates: string[]): Promise<void> {
    const epoch = this.epoch;
    const dayEpochs = dates.map((d) => this.dayEpochs.get(d) ?? 0);
    const checkedAtMs = this.now();
    this.reads++;
    const a = timeMs(localMidnightMs(dates[0]!));
    const b = timeMs(localMidnightMs(dates.at(-1)!) + 86_400_000);
    // Whole or not at all: a day built from a cut answer (a server's row limit) would be a wrong figure.
    const [packed = [], uplink = [], marks = []] = await this.deps.storage.queryWhole(
      [
        iql`SELECT school, part, parts, devices FROM usage_packed_day WHERE time >= ${a} AND time < ${b}`,
        iql`SELECT school, teaching_b, data_b, up_b, over50_b, over60_b, over70_b, over80_b, over90_b, p95_util_pct, speed_mbps, probe_b, reach_b, quality, avail_b, probe_sent, probe_lost FROM uplink_day WHERE time >= ${a} AND time < ${b}`,
        iql`SELECT duration_ms, bucket_s FROM rollup_day WHERE time >= ${a} AND time < ${b}`,
      ],
      'the rollups of an attainment read',
    );
    // Invalidated while reading: those days are not kept, and the next pass reads them again.
    if (epoch !== this.epoch) return;
    const rows = new Map<string, { packed: unknown[][]; uplink: unknown[][]; mark?: unknown[] }>();
    dates.forEach((d, k) => {
      if ((this.dayEpochs.get(d) ?? 0) === dayEpochs[k]) rows.set(d, { packed: [], uplink: [] });
    });
    const byDay = (v: unknown[]) => rows.get(dateAt(v[0] as number));
    for (const s of packed) for (const v of s.values) byDay(v)?.packed.push(v);
    for (const s of uplink) for (const v of s.values) byDay(v)?.uplink.push(v);
    for (const s of marks)
      for (const v of s.values) {
        const r = byDay(v);
        if (r && !r.mark) r.mark = v;
      }
    for (const [date, r] of rows) this.build(date, r.packed, r.uplink, r.mark, checkedAtMs);
  }

  /** One day's arrays and uplink figures from its rows. */
  private build(
    date: string,
    packed: unknown[][],
    uplink: unknown[][],
    m: unknown[] | undefined,
    checkedAtMs: number,
  ) {
    this.loads++;
    const into = {
      usage: new Int16Array(this.deviceIds.length * NF),
      present: new Uint8Array(this.deviceIds.length),
    };
    for (const v of packed) {
      const [, school, part, parts, devices] = v as [number, string, string, number | null, string | null];
      // A part beyond the school's current number of parts is left over from an earlier, larger run.
      if (parts !== null && Number(part) >= parts) continue;
      if (typeof devices === 'string' && devices !== '') this.readPacked(devices, school, part, into);
    }
    // Exactly one slot per device known now (devices first seen today grew the arrays while reading).
    const size = this.deviceIds.length;
    const usage = sized(into.usage, size * NF);
    const present = sized(into.present, size);
    const up = new Map<string, UplinkDay>();
    for (const v of uplink) {
      const n = (k: number) => (typeof v[k] === 'number' ? (v[k] as number) : 0);
      up.set(v[1] as string, {
        teachingB: n(2),
        dataB: n(3),
        upB: n(4),
        over: [n(5), n(6), n(7), n(8), n(9)],
        p95: typeof v[10] === 'number' ? v[10] : null,
        speedMbps: typeof v[11] === 'number' ? v[11] : null,
        probeB: n(12),
        reachB: n(13),
        quality: unpackHistogram(typeof v[14] === 'string' ? v[14] : null),
        // Rolled up before probes (#17): up by the interface alone.
        availB: typeof v[15] === 'number' ? v[15] : n(4),
        probeSent: n(16),
        probeLost: n(17),
      });
    }
    this.days.set(date, {
      marker: (m?.[1] as number | undefined) ?? null,
      bucketS: (m?.[2] as number | undefined) ?? 0,
      usage,
      present,
      uplink: up,
      checkedAtMs,
    });
  }

  /**
   * Reads one `usage_packed_day` string (`device:c1,c2,…|…`) into a day's arrays without splitting it: each
   * item's id is compared in place with the id at the same position of the same school part's layout on the
   * day read before (a school's devices rarely change from day to day), so a known device costs neither a
   * substring nor a Map lookup; counters are read digit by digit. An item the fast path cannot read exactly
   * (a new or moved id, a counter that is not plain digits) is read as before: `index`, `unpackCounters`.
   */
  private readPacked(
    text: string,
    school: string,
    part: string,
    into: { usage: Int16Array; present: Uint8Array },
  ): void {
    const key = `${school}\u0000${part}`;
    let layout = this.layouts.get(key);
    if (!layout) {
      layout = { ids: [], idx: [] };
      this.layouts.set(key, layout);
    }
    const c = this.scratch;
    const len = text.length;
    let k = 0;
    for (let pos = 0; pos <= len; k++) {
      let end = text.indexOf('|', pos);
      if (end < 0) end = len;
      const item = pos;
      pos = end + 1;
      // The device: the layout's id when the item starts with it and a colon; otherwise read and indexed.
      const known = layout.ids[k];
      let colon: number;
      let i: number;
      if (
        known !== undefined &&
        text.startsWith(known, item) &&
        text.charCodeAt(item + known.length) === 58
      ) {
        colon = item + known.length;
        i = layout.idx[k]!;
      } else {
        colon = text.indexOf(':', item);
        if (colon <= item || colon >= end) continue; // no colon in the item, or an empty id: not read
        const id = text.slice(item, colon);
        i = this.index(id, school);
        layout.ids[k] = id;
        layout.idx[k] = i;
      }
      // The counters: plain digits separated by commas; anything else goes to unpackCounters.
      let n = 0;
      let x = 0;
      let digits = 0;
      let plain = true;
      for (let p = colon + 1; p <= end; p++) {
        const ch = p < end ? text.charCodeAt(p) : 44;
        if (ch === 44) {
          if (n < c.length) c[n] = x;
          n++;
          x = 0;
          digits = 0;
        } else if (ch >= 48 && ch <= 57 && ++digits <= 15) x = x * 10 + (ch - 48);
        else {
          // Not a digit, or more digits than a double holds exactly (a damaged row): read as before.
          plain = false;
          break;
        }
      }
      let counters: ArrayLike<number>;
      if (plain) {
        if (n !== 5 && n < NF) continue;
        for (let f = 0; f < NF && f < n; f++) c[f] = Number.isFinite(c[f]!) ? Math.min(c[f]!, 32_767) : 0;
        if (n === 5) {
          c[5] = Math.max(0, c[1]! - c[2]!);
          c[6] = 0;
          c[7] = 0;
        }
        counters = c;
      } else {
        const u = unpackCounters(text.slice(colon + 1, end));
        if (!u) continue;
        counters = u;
      }
      if (i >= into.present.length) {
        // A device first seen today: grow (doubling) to the devices known now.
        const cap = Math.max(this.deviceIds.length, into.present.length * 2);
        const usage = new Int16Array(cap * NF);
        usage.set(into.usage);
        const present = new Uint8Array(cap);
        present.set(into.present);
        into.usage = usage;
        into.present = present;
      }
      into.present[i] = 1;
      for (let f = 0; f < NF; f++) into.usage[i * NF + f] = counters[f]!;
    }
  }

  /** The loaded day, or undefined (call `ensure` first). */
  day(date: string): Readonly<Day> | undefined {
    return this.days.get(date);
  }

  /** Counter `field` of device index `i` on a loaded day (0 when absent). */
  static get(day: Readonly<Day>, i: number, field: number): number {
    return i < day.present.length && day.present[i] ? day.usage[i * NF + field]! : 0;
  }
}

/** `a` at exactly `n` elements: itself, a copy of its start, or a copy padded with zeros. */
function sized<T extends Int16Array | Uint8Array>(a: T, n: number): T {
  if (a.length === n) return a;
  if (a.length > n) return a.slice(0, n) as T;
  const out = new (a.constructor as new (n: number) => T)(n);
  out.set(a);
  return out;
}

/** The local date (UTC+8) a timestamp falls in; a rollup's is its local midnight. */
function dateAt(ms: number): string {
  return dateOf(Math.floor((ms + 8 * 3_600_000) / 86_400_000));
}
