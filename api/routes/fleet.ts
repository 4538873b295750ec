import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { uplinkCapacity, utilisationPct } from '../../common/figures/capacity.js';
import { DIGITS, roundHalfAway } from '../../common/figures/rounding.js';
import { ApiError } from '../../common/http/errors.js';
import { effectiveScope, READ_ROLES } from '../../common/http/scope.js';
import {
  type DeviceLive,
  type LinkLive,
  type LiveState,
  registryMismatch,
  schoolLink,
  schoolUplink,
  type UplinkLive,
} from '../../common/live.js';
import { carriesUplink, type RegistryIndex } from '../../common/registry/store.js';
import { idSchema } from '../../contracts/ids.js';
import { DEVICE_KINDS } from '../../contracts/messages.js';
import { type Device, DISPLAY_KINDS, type School } from '../../contracts/registry.js';
import type { AppDeps } from '../http/deps.js';
import { uplinkFile } from '../report-files.js';
import {
  announcedSchema,
  deviceEventSchema,
  deviceOutSchema,
  ERROR_RESPONSES,
  formatQuery,
  liveStateSchema,
  pageQuery,
  regionQuery,
  schoolOutSchema,
  uplinkEventSchema,
} from '../schemas.js';

/** A live stream whose client has this much unread is closed. */
const MAX_STREAM_BUFFER_BYTES = 1024 * 1024;

/**
 * An uplink reading with its utilisation: the busier direction as a share of the school's contracted Mbps, else
 * of the interface speed (as the 校校通 capacity, api/README.md).
 */
function withUtilisation(u: UplinkLive, contractedMbps: number | undefined) {
  const capacity = uplinkCapacity(contractedMbps, u.speedMbps);
  const rates = [u.inBps, u.outBps].flatMap((r) => utilisationPct(r, capacity.capacityMbps) ?? []);
  return {
    ...u,
    ...capacity,
    utilisationPct: rates.length > 0 ? roundHalfAway(Math.max(...rates), DIGITS.pct) : null,
  };
}

/** Where a school's device lies, by name (`placeFields` of the live stream's events). */
function placeOf(reg: RegistryIndex, school: string, device: string) {
  const region = reg.schoolPath(school) ?? '';
  const classroom = reg.device(school, device)?.classroom ?? null;
  return {
    schoolName: reg.schools.get(school)?.name ?? school,
    region,
    regionNames: region ? region.split('/').map((r) => reg.regions.get(r)?.name ?? r) : [],
    classroom,
    classroomName: classroom === null ? null : (reg.classroom(school, classroom)?.name ?? null),
  };
}

/** A name as searched: compatibility forms folded (full-width （2） is (2)), case ignored, no spaces. */
const folded = (s: string) => s.normalize('NFKC').toLowerCase().replace(/\s+/g, '');

/** Each registry's classroom and school names, folded once (an import makes a new index). */
const foldedNames = new WeakMap<RegistryIndex, Map<string, string>>();
function foldedName(reg: RegistryIndex, key: string, name: string): string {
  let m = foldedNames.get(reg);
  if (!m) {
    m = new Map();
    foldedNames.set(reg, m);
  }
  let f = m.get(key);
  if (f === undefined) {
    f = folded(name);
    m.set(key, f);
  }
  return f;
}

const isDisplay = (kind: string) => (DISPLAY_KINDS as readonly string[]).includes(kind);

const linkNow = (live: LiveState, l: LinkLive | null) => (l ? live.linkNow(l) : null);

/** The fleet with live status: schools, devices, unassigned devices, and the live uplink stream (SSE). */
export const fleetRoutes: FastifyPluginAsyncZod<{ deps: AppDeps }> = async (app, { deps }) => {
  const { live } = deps;
  // Open live streams, ended before the server closes (they would otherwise hold `close()` forever).
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...streams]) end();
  });
  // A device is (school, id): the live state of `wb-a1` of another school is never this one's.
  const deviceOut = (reg: RegistryIndex) => (d: Device) => {
    const l = live.device(d.school, d.id);
    return {
      id: d.id,
      school: d.school,
      classroom: d.classroom ?? null,
      kind: d.kind,
      serial: d.serial ?? null,
      batch: d.batch ?? null,
      state: l?.state ?? ('unknown' as const),
      sinceMs: l?.sinceMs ?? null,
      announced: l?.announced ?? null,
      registryMismatch: l ? registryMismatch(reg, d, l.announced) : [],
    };
  };
  const schoolOut = (s: School) => {
    const reg = deps.registry.index;
    const devices = reg.devicesBySchool.get(s.id) ?? [];
    const uplink = schoolUplink(live, reg, s.id);
    let online = 0;
    let offline = 0;
    for (const d of devices) {
      const st = live.device(s.id, d.id)?.state;
      if (st === 'online') online++;
      else if (st === 'offline') offline++;
    }
    return {
      id: s.id,
      name: s.name,
      region: reg.regionPath(s.region),
      area: s.area,
      level: s.level,
      classes: s.classes,
      students: s.students,
      teachers: s.teachers,
      contractedMbps: s.contractedMbps ?? null,
      devices: { total: devices.length, online, offline, unknown: devices.length - online - offline },
      uplink: uplink ? withUtilisation(uplink, s.contractedMbps) : null,
      link: linkNow(live, schoolLink(live, reg, s.id)),
    };
  };
  /** A school the token may see, or 404 (never 403: a scoped token does not learn what exists elsewhere). */
  const visibleSchool = (req: Parameters<typeof effectiveScope>[0], id: string): School => {
    const reg = deps.registry.index;
    const s = reg.schools.get(id);
    if (!s || !reg.schoolInScope(id, effectiveScope(req, undefined)))
      throw new ApiError(404, 'CFM_API_NOT_FOUND', `no school ${id}`, 'id');
    return s;
  };

  app.get(
    '/v1/schools',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          "Schools in scope with live device counts and uplink rate. `format=csv|xlsx`: every school in scope (no pages) as a file of their uplinks now — the console's 网络 export: down, then stale, then by utilisation; Chinese headers and labels with a code column beside each enumeration, names beside ids, times in China Standard Time (api/README.md, “Report files”).",
        querystring: z.object({ ...regionQuery, ...pageQuery, ...formatQuery }),
        response: {
          200: z.object({ total: z.number(), items: z.array(schoolOutSchema) }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req, reply) => {
      const { region, page, pageSize, format } = req.query;
      const scope = effectiveScope(req, region);
      const schools = deps.registry.index.schoolsInScope(scope);
      if (format !== 'json') {
        const f = await uplinkFile(format, schools.map(schoolOut), {
          reg: deps.registry.index,
          scope,
          staleAfterS: live.staleAfterS,
        });
        return reply
          .type(f.type)
          .header('content-disposition', `attachment; filename="${f.filename}"`)
          .send(f.body as never);
      }
      return {
        total: schools.length,
        items: schools.slice((page - 1) * pageSize, page * pageSize).map(schoolOut),
      };
    },
  );

  app.get(
    '/v1/schools/:id',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'One school: its classrooms and devices with live status.',
        params: z.object({ id: idSchema }),
        response: {
          200: schoolOutSchema.extend({
            classrooms: z.array(
              z.object({
                id: z.string(),
                name: z.string(),
                isClass: z.boolean(),
                devices: z.array(deviceOutSchema),
              }),
            ),
            otherDevices: z
              .array(deviceOutSchema)
              .describe('Devices of the school not in a classroom (routers, APs).'),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const s = visibleSchool(req, req.params.id);
      const reg = deps.registry.index;
      const rooms = reg.classroomsBySchool.get(s.id) ?? [];
      return {
        ...schoolOut(s),
        classrooms: rooms.map((c) => ({
          id: c.id,
          name: c.name,
          isClass: c.isClass,
          devices: reg.devicesIn(s.id, c.id).map(deviceOut(reg)),
        })),
        otherDevices: (reg.devicesBySchool.get(s.id) ?? []).filter((d) => !d.classroom).map(deviceOut(reg)),
      };
    },
  );

  app.get(
    '/v1/classrooms',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          "Classrooms in scope with their school and devices, found by name (the console's 设备 search): `q` is one or more words, each found in the classroom's name or id or its school's name, at least one in the classroom's; full-width and half-width forms alike, case ignored. Without `q`: every classroom in scope (or of `school`). By school id, then classroom id; paginated.",
        querystring: z.object({
          ...regionQuery,
          ...pageQuery,
          q: z
            .string()
            .trim()
            .max(64)
            .transform((v) => v || undefined)
            .optional()
            .describe('Words separated by spaces, e.g. `一(2)班` or `第一小学 一(2)`.'),
          school: idSchema.optional().describe("Only this school's classrooms."),
        }),
        response: {
          200: z.object({
            total: z.number(),
            items: z.array(
              z.object({
                id: z.string(),
                name: z.string(),
                isClass: z.boolean(),
                school: z.string(),
                schoolName: z.string(),
                region: z.string().describe("The school's region path."),
                devices: z
                  .array(z.object({ id: z.string(), kind: z.enum(DEVICE_KINDS) }))
                  .describe('The devices registered in the room, its teaching displays first.'),
              }),
            ),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const { region, page, pageSize, q, school } = req.query;
      const reg = deps.registry.index;
      const schools = school ? [visibleSchool(req, school)] : reg.schoolsInScope(effectiveScope(req, region));
      const words = (q ?? '').split(/\s+/).map(folded).filter(Boolean);
      const items = [];
      for (const s of schools) {
        const schoolName = foldedName(reg, `s\u0000${s.id}`, s.name);
        for (const c of reg.classroomsBySchool.get(s.id) ?? []) {
          if (words.length > 0) {
            const room = foldedName(reg, `c\u0000${s.id}\u0000${c.id}`, c.name);
            const id = c.id.toLowerCase();
            const inRoom = (w: string) => room.includes(w) || id.includes(w);
            if (!words.every((w) => inRoom(w) || schoolName.includes(w)) || !words.some(inRoom)) continue;
          }
          items.push({ s, c });
        }
      }
      items.sort((a, b) => (a.s.id === b.s.id ? (a.c.id < b.c.id ? -1 : 1) : a.s.id < b.s.id ? -1 : 1));
      return {
        total: items.length,
        items: items.slice((page - 1) * pageSize, page * pageSize).map(({ s, c }) => ({
          id: c.id,
          name: c.name,
          isClass: c.isClass,
          school: s.id,
          schoolName: s.name,
          region: reg.regionPath(s.region),
          devices: reg
            .devicesIn(s.id, c.id)
            .map((d, i) => ({ d, i }))
            .sort((a, b) => Number(isDisplay(b.d.kind)) - Number(isDisplay(a.d.kind)) || a.i - b.i)
            .map(({ d }) => ({ id: d.id, kind: d.kind })),
        })),
      };
    },
  );

  app.get(
    '/v1/devices',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'Registered devices in scope with live status; filter by school, kind, state.',
        querystring: z.object({
          ...regionQuery,
          ...pageQuery,
          school: idSchema.optional(),
          kind: z.enum(DEVICE_KINDS).optional(),
          state: liveStateSchema.optional(),
        }),
        response: {
          200: z.object({ total: z.number(), items: z.array(deviceOutSchema) }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const { region, page, pageSize, school, kind, state } = req.query;
      const reg = deps.registry.index;
      const schools = school ? [visibleSchool(req, school)] : reg.schoolsInScope(effectiveScope(req, region));
      const items = schools
        .flatMap((s) => reg.devicesBySchool.get(s.id) ?? [])
        .filter((d) => !kind || d.kind === kind)
        .map(deviceOut(reg))
        .filter((d) => !state || d.state === state);
      return { total: items.length, items: items.slice((page - 1) * pageSize, page * pageSize) };
    },
  );

  app.get(
    '/v1/devices/unassigned',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          'Devices that report but are not in the registry (register them, or find who installed them), by school and id, paginated like `/v1/devices`. A device is (school, id): one reporting under a school that does not register that id is listed here, even if another school registers the same id. The live view holds a bounded number of them (`api.live`): under a flood of invented ids the least recently seen are evicted.',
        querystring: z.object({ ...regionQuery, ...pageQuery }),
        response: {
          200: z.object({
            total: z.number(),
            items: z.array(
              z.object({
                id: z.string(),
                school: z.string(),
                schoolKnown: z.boolean().describe('Whether the school it reports under is registered.'),
                kind: z.string(),
                state: liveStateSchema,
                sinceMs: z
                  .number()
                  .nullable()
                  .describe(
                    'Since when it is in `state` (ms): offline, when it went offline; null when that is not known (offline since before the API started).',
                  ),
                announced: announcedSchema,
              }),
            ),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const { region, page, pageSize } = req.query;
      const scope = effectiveScope(req, region);
      const reg = deps.registry.index;
      const items = [];
      for (const l of live.devices.values()) {
        if (reg.device(l.school, l.device)) continue;
        const known = reg.schools.has(l.school);
        // A scoped token sees an unassigned device only under a registered school in its scope.
        if (scope !== undefined && !(known && reg.schoolInScope(l.school, scope))) continue;
        items.push({
          id: l.device,
          school: l.school,
          schoolKnown: known,
          kind: l.kind,
          state: l.state,
          sinceMs: l.sinceMs,
          announced: l.announced,
        });
      }
      items.sort((a, b) => (a.school === b.school ? (a.id < b.id ? -1 : 1) : a.school < b.school ? -1 : 1));
      return { total: items.length, items: items.slice((page - 1) * pageSize, page * pageSize) };
    },
  );

  app.get(
    '/v1/bandwidth/live',
    {
      config: { roles: ['admin', 'ops'] },
      schema: {
        summary:
          "Server-sent events: `uplink` events with each school uplink reading in scope (from the school's own registered uplink device), starting with the latest of each; and one whenever an uplink's `state` changes without a reading — `down` at once when the poller says its router stopped answering SNMP, `stale` when no reading came for `api.live.staleAfterS`. Each names its school, region and classroom and gives the utilisation. With `devices=true`, also `device` events: a registered device in scope went online or offline.",
        querystring: z.object({
          ...regionQuery,
          devices: z
            .stringbool()
            .default(false)
            .describe(
              'Also send `device` events (true/false, default false): each change of a registered device between online and offline, from the time the stream opens (the state before: `/v1/devices`).',
            ),
        }),
        produces: ['text/event-stream'],
        response: {
          200: z
            .string()
            .describe(
              `text/event-stream of \`uplink\` events: ${JSON.stringify(z.toJSONSchema(uplinkEventSchema))}; and with \`devices=true\` \`device\` events: ${JSON.stringify(z.toJSONSchema(deviceEventSchema))}`,
            ),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req, reply) => {
      const scope = effectiveScope(req, req.query.region);
      const reg = () => deps.registry.index;
      // Only the school's own uplink device speaks for it: not an unregistered device, nor another school's.
      const visible = (u: { school: string; device: string }) => {
        const r = reg();
        return r.schoolInScope(u.school, scope) && carriesUplink(r, u.school, u.device);
      };
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no', // nginx: do not buffer the stream
      });
      // Headers go out now, not with the first event: a client waits for them before it reads anything.
      res.write('retry: 5000\n\n');
      let id = 0;
      const end = () => {
        clearInterval(heartbeat);
        live.off('uplink', onUplink);
        live.off('device', onDevice);
        streams.delete(end);
        if (!res.writableEnded) res.end();
      };
      const send = (event: 'uplink' | 'device', data: unknown) => {
        // A client that stops reading must not make us buffer without bound: drop it; EventSource reconnects.
        if (res.writableLength > MAX_STREAM_BUFFER_BYTES) {
          req.log.warn({ buffered: res.writableLength }, 'live stream client too slow: closed');
          end();
          return;
        }
        res.write(`id: ${++id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      const onUplink = (u: UplinkLive) => {
        if (!visible(u)) return;
        const r = reg();
        const { contractedMbps } = r.schools.get(u.school)!;
        send(
          'uplink',
          uplinkEventSchema.parse({
            ...withUtilisation(u, contractedMbps),
            ...placeOf(r, u.school, u.device),
          }),
        );
      };
      // Registered devices only: an unassigned one has no classroom or name to show (`/v1/devices/unassigned`).
      const onDevice = (d: DeviceLive) => {
        const r = reg();
        const registered = r.device(d.school, d.device);
        if (!registered || !r.schoolInScope(d.school, scope)) return;
        send(
          'device',
          deviceEventSchema.parse({
            school: d.school,
            device: d.device,
            kind: registered.kind,
            state: d.state,
            sinceMs: d.sinceMs,
            ...placeOf(r, d.school, d.device),
          }),
        );
      };
      for (const school of live.uplinks.values()) for (const u of school.values()) onUplink(u);
      live.on('uplink', onUplink);
      if (req.query.devices) live.on('device', onDevice);
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      streams.add(end);
      req.raw.on('close', end);
      res.on('error', end);
    },
  );
};
