import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ApiError } from '../../common/http/errors.js';
import { effectiveScope, READ_ROLES } from '../../common/http/scope.js';
import { carriesUplink, type RegistryIndex } from '../../common/registry/store.js';
import { iql, raw, timeMs } from '../../common/storage/index.js';
import { idSchema } from '../../contracts/ids.js';
import type { AppDeps } from '../http/deps.js';
import { ERROR_RESPONSES, regionQuery } from '../schemas.js';

/**
 * Recent history from the raw readings, for the console: every school's uplink over the last hours (a sparkline
 * each) and one device's week (online, on, in use, faults). Both are a single InfluxQL query; results keep only
 * what the registry says belongs (a school's own uplink device, a registered device in scope).
 */
/** How long an uplink history answer is kept (within one bucket of its window: a new bucket asks again). */
export const HISTORY_TTL_MS = 60_000;
/** The most values (schools × buckets) kept over all uplink history answers. */
export const HISTORY_MAX_CELLS = 5_000_000;
/** The bucket sizes the history answers in, and the most buckets a window may have (a sparkline's width). */
export const HISTORY_BUCKETS_S = [60, 300, 600, 1_800, 3_600] as const;
export const HISTORY_MAX_BUCKETS = 360;

type History = { fromMs: number; items: { school: string; name: string; util: (number | null)[] }[] };

export const historyRoutes: FastifyPluginAsyncZod<{ deps: AppDeps }> = async (app, { deps }) => {
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

  /**
   * Every registered school's uplink history over a window, for every scope: one InfluxQL query (~2 s at 1,600
   * schools), kept for `HISTORY_TTL_MS` and only while the window has the same buckets and the registry is the
   * same, so the network page's loads within a minute cost one query. What is kept is every school's answer,
   * never a token's: each request filters it to its own scope. Requests that arrive while the query runs wait
   * for it. Bounded: at most `HISTORY_MAX_CELLS` values in all (a 48-hour window in 1-minute buckets of 1,600
   * schools is 4.6 million); the oldest answers go first, and one larger than that is not kept.
   */
  const memo = new Map<
    string,
    { atMs: number; reg: RegistryIndex; cells: number; value: Promise<History> }
  >();
  const uplinkHistory = (hours: number, bucketS: number): Promise<History> => {
    const to = Date.now();
    const from = Math.floor((to - hours * 3_600_000) / (bucketS * 1000)) * bucketS * 1000;
    const reg = deps.registry.index;
    for (const [k, e] of memo) if (to - e.atMs >= HISTORY_TTL_MS || e.reg !== reg) memo.delete(k);
    const buckets = Math.ceil((to - from) / (bucketS * 1000));
    const key = `${hours}|${bucketS}|${from}|${buckets}`;
    const hit = memo.get(key);
    if (hit) return hit.value;
    const value = queryHistory(reg, from, buckets, bucketS);
    const entry = { atMs: to, reg, cells: 0, value };
    memo.set(key, entry);
    value.then(
      (h) => {
        entry.cells = h.items.length * buckets;
        if (entry.cells > HISTORY_MAX_CELLS && memo.get(key) === entry) memo.delete(key);
        let total = 0;
        for (const e of memo.values()) total += e.cells;
        for (const [k, e] of memo) {
          if (total <= HISTORY_MAX_CELLS) break;
          memo.delete(k);
          total -= e.cells;
        }
      },
      () => {
        if (memo.get(key) === entry) memo.delete(key);
      },
    );
    return value;
  };
  const queryHistory = async (
    reg: RegistryIndex,
    from: number,
    buckets: number,
    bucketS: number,
  ): Promise<History> => {
    const [series = []] = await deps.storage.query(
      iql`SELECT max(util_in_pct) AS ui, max(util_out_pct) AS uo FROM iface WHERE uplink = 'true' AND time >= ${timeMs(from)} GROUP BY time(${raw(`${bucketS}s`)}), school, device fill(none)`,
    );
    const items = [];
    for (const s of series) {
      const school = s.tags.school ?? '';
      const device = s.tags.device ?? '';
      const known = reg.schools.get(school);
      if (!known || !carriesUplink(reg, school, device)) continue;
      const util: (number | null)[] = new Array(buckets).fill(null);
      for (const v of s.values) {
        const i = Math.floor(((v[0] as number) - from) / (bucketS * 1000));
        const ui = num(v[1]);
        const uo = num(v[2]);
        if (i >= 0 && i < buckets && (ui !== null || uo !== null))
          util[i] = Math.round(Math.max(ui ?? 0, uo ?? 0) * 10) / 10;
      }
      items.push({ school, name: known.name, util });
    }
    items.sort((a, b) => (a.school < b.school ? -1 : a.school > b.school ? 1 : 0));
    return { fromMs: from, items };
  };

  app.get(
    '/v1/bandwidth/history',
    {
      config: { roles: ['admin', 'ops'] },
      schema: {
        summary:
          "Every school's uplink in scope over the last `hours`: per bucket the higher of in/out utilisation (% of the school's capacity: its contracted Mbps, else the port speed) from its own uplink device. The database's answer is kept for up to 60 s while the window's buckets stay the same (shared by every token, each answer filtered to the token's scope), so the latest bucket may lag by up to a minute.",
        querystring: z
          .object({
            ...regionQuery,
            hours: z.coerce.number().int().min(1).max(48).default(6),
            bucketS: z.coerce
              .number()
              .pipe(z.literal(HISTORY_BUCKETS_S))
              .default(600)
              .describe(
                `Bucket seconds, one of ${HISTORY_BUCKETS_S.join(', ')}; at most ${HISTORY_MAX_BUCKETS} buckets.`,
              ),
          })
          .refine((q) => (q.hours * 3_600) / q.bucketS <= HISTORY_MAX_BUCKETS, {
            message: `at most ${HISTORY_MAX_BUCKETS} buckets: a longer window takes a larger bucketS`,
            path: ['bucketS'],
          }),
        response: {
          200: z.object({
            fromMs: z.number(),
            bucketS: z.number(),
            items: z.array(
              z.object({
                school: z.string(),
                name: z.string(),
                util: z
                  .array(z.number().nullable())
                  .describe(
                    'Per bucket from `fromMs`, `bucketS` apart: the higher of in/out utilisation (%, one decimal); null: no reading.',
                  ),
              }),
            ),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const scope = effectiveScope(req, req.query.region);
      const { hours, bucketS } = req.query;
      const { fromMs, items } = await uplinkHistory(hours, bucketS);
      const reg = deps.registry.index;
      return { fromMs, bucketS, items: items.filter((i) => reg.schoolInScope(i.school, scope)) };
    },
  );

  app.get(
    '/v1/devices/:school/:device/week',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          "One registered device's last 7 days in 30-minute buckets: reporting (online), switched on, in use, faults; and its last lamp hours.",
        params: z.object({ school: idSchema, device: idSchema }),
        response: {
          200: z.object({
            school: z.string(),
            device: z.string(),
            schoolName: z.string(),
            classroom: z.string().nullable(),
            classroomName: z.string().nullable(),
            kind: z.string(),
            bucketS: z.number(),
            lampHours: z.number().nullable(),
            buckets: z
              .array(z.tuple([z.number(), z.number(), z.number(), z.number(), z.number()]))
              .describe(
                '[time ms, online 0/1, on 0/1, in use 0/1, faults 0/1], oldest first; buckets without any reading are left out.',
              ),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const { school, device } = req.params;
      const scope = effectiveScope(req, undefined);
      const reg = deps.registry.index;
      const d = reg.device(school, device);
      if (!d || !reg.schoolInScope(school, scope))
        throw new ApiError(404, 'CFM_API_NOT_FOUND', `no device ${device} of school ${school} in scope`);
      const bucketS = 1_800;
      const from = Math.floor((Date.now() - 7 * 86_400_000) / (bucketS * 1000)) * bucketS * 1000;
      const [display = [], host = []] = await deps.storage.query(
        [
          iql`SELECT max("on") AS on_, max(in_use) AS use, max(error_count) AS err, last(lamp_hours) AS lamp FROM display WHERE school = ${school} AND device = ${device} AND time >= ${timeMs(from)} GROUP BY time(${raw(`${bucketS}s`)}) fill(none)`,
          iql`SELECT count(uptime_s) AS n FROM host WHERE school = ${school} AND device = ${device} AND time >= ${timeMs(from)} GROUP BY time(${raw(`${bucketS}s`)}) fill(none)`,
        ].join('; '),
      );
      const buckets = new Map<number, [number, number, number, number, number]>();
      const at = (t: number) => {
        const b = buckets.get(t) ?? ([t, 1, 0, 0, 0] as [number, number, number, number, number]);
        buckets.set(t, b);
        return b;
      };
      let lampHours: number | null = null;
      for (const s of display)
        for (const v of s.values) {
          const b = at(v[0] as number);
          b[2] = (num(v[1]) ?? 0) > 0 ? 1 : 0;
          b[3] = (num(v[2]) ?? 0) > 0 ? 1 : 0;
          b[4] = (num(v[3]) ?? 0) > 0 ? 1 : 0;
          lampHours = num(v[4]) ?? lampHours;
        }
      for (const s of host) for (const v of s.values) at(v[0] as number);
      const classroom = d.classroom ?? null;
      return {
        school,
        device,
        schoolName: reg.schools.get(school)?.name ?? school,
        classroom,
        classroomName: classroom ? (reg.classroom(school, classroom)?.name ?? null) : null,
        kind: d.kind,
        bucketS,
        lampHours,
        buckets: [...buckets.values()].sort((a, b) => a[0] - b[0]),
      };
    },
  );
};
