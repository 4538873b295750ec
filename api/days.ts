import { dateOf, dayNumber, localMidnightMs } from '../common/calendar.js';
import { iql, type Storage, timeMs } from '../common/storage/index.js';

/**
 * The daily rollups in memory. A period's figures are sums over its days, and days are shared by every period
 * that contains them (a week, its month, the term), so each rolled-up day is read from InfluxDB once per API
 * process — from `usage_packed_day`, one row per school (see `usagePoints` in rollup.ts for why) — and kept
 * compactly: five 16-bit counters per device per day (~0.5 MB per city day).
 *
 * A day is read again when its `rollup_day` marker changed (a re-run of the rollup, checked at most every
 * `checkEveryMs`), or at once when this process ran the rollup itself (`invalidate`).
 */

/** Per device per day: online, on, in-use and faulty buckets, class periods used. */
export const USAGE_FIELDS = ['online_b', 'on_b', 'use_b', 'faulty_b', 'periods_used'] as const;
const NF = USAGE_FIELDS.length;

export interface UplinkDay {
  teachingB: number;
  dataB: number;
  upB: number;
  over: [number, number, number, number, number];
  p95: number | null;
  speedMbps: number | null;
}

interface Day {
  /** rollup_day marker (its run duration, a float that differs between runs); null: not rolled up. */
  marker: number | null;
  bucketS: number;
  /** Device index → offset/NF in `usage`. */
  usage: Int16Array;
  /** Which device indexes have a row this day. */
  present: Uint8Array;
  uplink: Map<string, UplinkDay>;
}

export interface DayCacheDeps {
  storage: Storage;
  checkEveryMs: number;
  /** Most days kept (least recently used dropped first). */
  maxDays: number;
  now?: () => number;
}

export class DayCache {
  /** Device id → index into every day's arrays. Grows; ids are never reused. */
  readonly deviceIndex = new Map<string, number>();
  readonly deviceIds: string[] = [];
  private readonly days = new Map<string, Day>();
  private readonly loading = new Map<string, Promise<void>>();
  private lastCheckMs = 0;
  private epoch = 0;
  /** Days read from InfluxDB (for metrics and the benchmark). */
  loads = 0;

  constructor(private readonly deps: DayCacheDeps) {}

  /** Forget one day (this process just rolled it up) or all of them. */
  invalidate(date?: string): void {
    // A read already in flight may return the old figures: the epoch tells it not to keep them.
    this.epoch++;
    if (date) this.days.delete(date);
    else this.days.clear();
  }

  private index(device: string): number {
    let i = this.deviceIndex.get(device);
    if (i === undefined) {
      i = this.deviceIds.length;
      this.deviceIndex.set(device, i);
      this.deviceIds.push(device);
    }
    return i;
  }

  /** Makes every date of [from, to] available; resolves when loaded. */
  async ensure(from: string, to: string): Promise<void> {
    const now = (this.deps.now ?? Date.now)();
    if (now - this.lastCheckMs >= this.deps.checkEveryMs) {
      this.lastCheckMs = now;
      await this.dropChanged(from, to);
    }
    // A read that raced with an invalidation keeps nothing; read again (a rollup run invalidates each day
    // once, so this settles at once).
    for (let attempt = 0; attempt < 5; attempt++) if (await this.fill(from, to)) return;
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
    // One day per query (a city day is ~40,000 rows, a few MB), two queries at a time. Each missing day is
    // registered as loading first, so a concurrent caller waits for it instead of reading it again.
    const done = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();
    for (const d of missing) {
      const p = new Promise<void>((resolve, reject) => done.set(d, { resolve, reject }));
      p.catch(() => undefined); // observed through `waits`
      this.loading.set(d, p);
      waits.push(p);
    }
    let next = 0;
    const worker = async () => {
      while (next < missing.length) {
        const d = missing[next++]!;
        try {
          await this.load([d]);
          done.get(d)!.resolve();
        } catch (e) {
          done.get(d)!.reject(e);
        } finally {
          this.loading.delete(d);
        }
      }
    };
    void Promise.all(Array.from({ length: Math.min(2, missing.length) }, worker));
    if (waits.length === 0) return true;
    await Promise.all(waits);
    while (this.days.size > this.deps.maxDays) this.days.delete(this.days.keys().next().value!);
    return false;
  }

  /** Drops loaded days in [from, to] whose rollup marker changed since they were read. */
  private async dropChanged(from: string, to: string): Promise<void> {
    const loaded = [...this.days.keys()].filter((d) => d >= from && d <= to);
    if (loaded.length === 0) return;
    const markers = await this.markers(from, to);
    for (const d of loaded) if ((markers.get(d) ?? null) !== this.days.get(d)!.marker) this.days.delete(d);
  }

  private async markers(from: string, to: string): Promise<Map<string, number>> {
    const a = timeMs(localMidnightMs(from));
    const b = timeMs(localMidnightMs(to) + 86_400_000);
    const [rows = []] = await this.deps.storage.query(
      iql`SELECT duration_ms, bucket_s FROM rollup_day WHERE time >= ${a} AND time < ${b}`,
    );
    const m = new Map<string, number>();
    for (const s of rows) for (const v of s.values) m.set(dateAt(v[0] as number), v[1] as number);
    return m;
  }

  private async load(dates: string[]): Promise<void> {
    this.loads += dates.length;
    const epoch = this.epoch;
    const from = dates[0]!;
    const to = dates.at(-1)!;
    const a = timeMs(localMidnightMs(from));
    const b = timeMs(localMidnightMs(to) + 86_400_000);
    const [usage = [], uplink = [], marks = []] = await this.deps.storage.query(
      [
        iql`SELECT devices FROM usage_packed_day WHERE time >= ${a} AND time < ${b}`,
        iql`SELECT school, teaching_b, data_b, up_b, over50_b, over60_b, over70_b, over80_b, over90_b, p95_util_pct, speed_mbps FROM uplink_day WHERE time >= ${a} AND time < ${b}`,
        iql`SELECT duration_ms, bucket_s FROM rollup_day WHERE time >= ${a} AND time < ${b}`,
      ].join('; '),
    );
    const fresh = new Map<string, { rows: unknown[][]; uplink: Map<string, UplinkDay> }>();
    const dayOf = (d: string) => {
      let x = fresh.get(d);
      if (!x) {
        x = { rows: [], uplink: new Map() };
        fresh.set(d, x);
      }
      return x;
    };
    for (const s of usage)
      for (const v of s.values) {
        const rows = dayOf(dateAt(v[0] as number)).rows;
        for (const item of String(v[1] ?? '').split('|')) {
          const colon = item.indexOf(':');
          if (colon <= 0) continue;
          rows.push([
            0,
            item.slice(0, colon),
            ...item
              .slice(colon + 1)
              .split(',')
              .map(Number),
          ]);
        }
      }
    for (const s of uplink)
      for (const v of s.values) {
        const n = (k: number) => (typeof v[k] === 'number' ? (v[k] as number) : 0);
        dayOf(dateAt(v[0] as number)).uplink.set(v[1] as string, {
          teachingB: n(2),
          dataB: n(3),
          upB: n(4),
          over: [n(5), n(6), n(7), n(8), n(9)],
          p95: typeof v[10] === 'number' ? v[10] : null,
          speedMbps: typeof v[11] === 'number' ? v[11] : null,
        });
      }
    if (epoch !== this.epoch) return; // invalidated while reading: the next ensure() reads again
    const markers = new Map<string, [number, number]>();
    for (const s of marks)
      for (const v of s.values) markers.set(dateAt(v[0] as number), [v[1] as number, v[2] as number]);
    for (const d of dates) {
      const x = fresh.get(d) ?? { rows: [], uplink: new Map() };
      for (const r of x.rows) this.index(r[1] as string);
      const size = this.deviceIds.length;
      const usageArr = new Int16Array(size * NF);
      const present = new Uint8Array(size);
      for (const r of x.rows) {
        const i = this.deviceIndex.get(r[1] as string)!;
        present[i] = 1;
        for (let f = 0; f < NF; f++) {
          const v = r[2 + f];
          usageArr[i * NF + f] = typeof v === 'number' && Number.isFinite(v) ? v : 0;
        }
      }
      const m = markers.get(d);
      this.days.set(d, {
        marker: m?.[0] ?? null,
        bucketS: m?.[1] ?? 0,
        usage: usageArr,
        present,
        uplink: x.uplink,
      });
    }
  }

  /** The loaded day, or undefined (call `ensure` first). */
  day(date: string): Readonly<Day> | undefined {
    return this.days.get(date);
  }

  /** Whether a date has been rolled up (its marker exists). */
  rolled(date: string): boolean {
    return (this.days.get(date)?.marker ?? null) !== null;
  }

  /** Counter `field` of device index `i` on a loaded day (0 when absent). */
  static get(day: Readonly<Day>, i: number, field: number): number {
    return i < day.present.length && day.present[i] ? day.usage[i * NF + field]! : 0;
  }
}

/** The local date of a rollup timestamp (local midnight, UTC+8). */
function dateAt(ms: number): string {
  return dateOf(Math.round((ms + 8 * 3_600_000) / 86_400_000));
}
