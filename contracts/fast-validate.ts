import { ID_PATTERN } from './ids.js';
// A cycle (messages.ts calls these): only read inside functions, never while the modules load.
import {
  activitySchema,
  DEVICE_KINDS,
  DISPLAY_ERROR_KEYS,
  displaySchema,
  LEVELS,
  MAX_IDLE_S,
  OPER_STATUSES,
  TELEMETRY_VERSIONS,
} from './messages.js';

/**
 * Hand-written fast paths for the messages every device sends every few seconds — telemetry (classroom agents)
 * and iface (the SNMP poller) — in front of zod's generic `safeParse` (issue #18: validation was 13 % of the
 * collector's CPU).
 *
 * Contract: a fast path returns true only for a JSON value the zod schema (contracts/messages.ts) accepts, and
 * accepts unchanged — every key known, no transform — so the value itself is the validated message. Anything
 * else (an unknown key, which zod would strip or refuse; a value out of range; any doubt) returns false and
 * zod gives the verdict and its reason. A refusal here is never a verdict. tests/contracts/fast-validate.test.ts
 * feeds both the same valid and invalid payloads and requires identical verdicts and identical messages.
 *
 * Inputs are what JSON.parse returns: no undefined, functions or NaN — but `1e400` parses to Infinity, which zod
 * 4 refuses for every number schema, so every number check here is finite.
 */

type Obj = Record<string, unknown>;

const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Every own key of `o` is in `known` (zod's z.object would strip others, strictObject refuse them). */
function onlyKeys(o: Obj, known: ReadonlySet<string>): boolean {
  for (const k in o) if (!known.has(k)) return false;
  // for…in skips nothing JSON.parse makes (own enumerable string keys; `__proto__` is an own key there).
  return true;
}

/** Membership in an enum's values, taken from the schema module on first use (the import cycle above). */
const ENUM = (values: () => readonly string[]) => {
  let s: Set<string> | undefined;
  return (x: unknown) => {
    s ??= new Set(values());
    return typeof x === 'string' && s.has(x);
  };
};
const isKind = ENUM(() => DEVICE_KINDS);
const isLevel = ENUM(() => LEVELS);
const isOper = ENUM(() => OPER_STATUSES);
const isDisplaySource = ENUM(() => displaySchema.shape.source.options);
const isPower = ENUM(() => displaySchema.shape.power.options);
const isActivitySource = ENUM(() => activitySchema.shape.source.options);

/** z.number().int(): zod 4 takes only safe integers. */
const isInt = (x: unknown): x is number => Number.isSafeInteger(x);
const isNonNegInt = (x: unknown) => isInt(x) && x >= 0;
const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const isRate = (x: unknown) => isNum(x) && x >= 0;
const isPct = (x: unknown) => isNum(x) && x >= 0 && x <= 100;
const isTs = (x: unknown) => isInt(x) && x >= 946_684_800_000 && x <= 4_102_444_800_000;
const isStr = (x: unknown, min: number, max: number): x is string =>
  typeof x === 'string' && x.length >= min && x.length <= max;

const COUNTER = /^\d{1,20}$/;
const MAX_U64 = (1n << 64n) - 1n;
const isCounter = (x: unknown) =>
  typeof x === 'string' && COUNTER.test(x) && (x.length < 20 || BigInt(x) <= MAX_U64);
// biome-ignore lint/suspicious/noControlCharactersInRegex: the schema's own pattern (contracts/messages.ts)
const FOREGROUND = /^[^\\/\u0000-\u001f]+$/;

const TELEMETRY_KEYS = new Set([
  'v',
  'ts',
  'seq',
  'kind',
  'classroom',
  'host',
  'display',
  'inUse',
  'activity',
  'spoolDropped',
]);
const HOST_KEYS = new Set(['uptimeS', 'cpuPct', 'memUsedPct', 'memTotalBytes', 'nics']);
const NIC_KEYS = new Set(['name', 'rxBytes', 'txBytes', 'rxBps', 'txBps']);
const DISPLAY_KEYS = new Set([
  'source',
  'power',
  'input',
  'touchOk',
  'temperatureC',
  'lampHours',
  'errors',
  'errorCodes',
]);
let errorKeys: Set<string> | undefined;
const ACTIVITY_KEYS = new Set(['source', 'idleS', 'foreground', 'teachingSite', 'screenOn', 'loggedOn']);

function nicOk(n: unknown): boolean {
  return (
    isObj(n) &&
    onlyKeys(n, NIC_KEYS) &&
    isStr(n.name, 1, 64) &&
    isCounter(n.rxBytes) &&
    isCounter(n.txBytes) &&
    (n.rxBps === undefined || isRate(n.rxBps)) &&
    (n.txBps === undefined || isRate(n.txBps))
  );
}

function hostOk(h: unknown): boolean {
  if (!isObj(h) || !onlyKeys(h, HOST_KEYS)) return false;
  if (!isNonNegInt(h.uptimeS) || !isPct(h.cpuPct) || !isPct(h.memUsedPct) || !isNonNegInt(h.memTotalBytes))
    return false;
  const nics = h.nics;
  if (!Array.isArray(nics) || nics.length > 32) return false;
  for (const n of nics) if (!nicOk(n)) return false;
  return true;
}

function displayOk(d: unknown): boolean {
  if (!isObj(d) || !onlyKeys(d, DISPLAY_KEYS)) return false;
  if (!isDisplaySource(d.source) || !isPower(d.power)) return false;
  if (d.input !== undefined && !isStr(d.input, 0, 32)) return false;
  if (d.touchOk !== undefined && typeof d.touchOk !== 'boolean') return false;
  if (
    d.temperatureC !== undefined &&
    !(isNum(d.temperatureC) && d.temperatureC >= -50 && d.temperatureC <= 200)
  )
    return false;
  if (d.lampHours !== undefined && !isNonNegInt(d.lampHours)) return false;
  const e = d.errors;
  if (e !== undefined) {
    errorKeys ??= new Set(DISPLAY_ERROR_KEYS);
    if (!isObj(e) || !onlyKeys(e, errorKeys)) return false;
    for (const k in e) if (!isLevel(e[k])) return false;
  }
  const c = d.errorCodes;
  if (c !== undefined) {
    if (!Array.isArray(c) || c.length > 32) return false;
    for (const s of c) if (!isStr(s, 0, 64)) return false;
  }
  return true;
}

function activityOk(a: unknown): boolean {
  if (!isObj(a) || !onlyKeys(a, ACTIVITY_KEYS) || !isActivitySource(a.source)) return false;
  if (a.idleS !== undefined && !(isInt(a.idleS) && a.idleS >= 0 && a.idleS <= MAX_IDLE_S)) return false;
  if (a.foreground !== undefined && !(isStr(a.foreground, 1, 128) && FOREGROUND.test(a.foreground)))
    return false;
  if (a.teachingSite !== undefined && !isStr(a.teachingSite, 1, 64)) return false;
  if (a.screenOn !== undefined && typeof a.screenOn !== 'boolean') return false;
  if (a.loggedOn !== undefined && a.loggedOn !== false) return false;
  return true;
}

/** telemetrySchema, exactly (an invalid `activity` falls to zod, whose path drops the block and keeps the rest). */
export function fastTelemetry(m: unknown): boolean {
  if (!isObj(m) || !onlyKeys(m, TELEMETRY_KEYS)) return false;
  if (!(TELEMETRY_VERSIONS as readonly unknown[]).includes(m.v)) return false;
  if (!isTs(m.ts) || !isNonNegInt(m.seq) || !isKind(m.kind)) return false;
  if (m.classroom !== undefined && !(typeof m.classroom === 'string' && ID_PATTERN.test(m.classroom)))
    return false;
  if (m.host !== undefined && !hostOk(m.host)) return false;
  if (m.display !== undefined && !displayOk(m.display)) return false;
  if (m.inUse !== undefined && typeof m.inUse !== 'boolean') return false;
  if (m.activity !== undefined && !activityOk(m.activity)) return false;
  if (m.spoolDropped !== undefined && !isNonNegInt(m.spoolDropped)) return false;
  return true;
}

const IFACES_KEYS = new Set(['v', 'ts', 'seq', 'kind', 'sysUpTimeTicks', 'pollMs', 'ifaces']);
const IFACE_KEYS = new Set([
  'index',
  'name',
  'alias',
  'uplink',
  'speedMbps',
  'operStatus',
  'counterBits',
  'inOctets',
  'outOctets',
  'inBps',
  'outBps',
  'inErrors',
  'outErrors',
  'inDiscards',
]);

function ifaceOk(i: unknown): boolean {
  return (
    isObj(i) &&
    onlyKeys(i, IFACE_KEYS) &&
    isInt(i.index) &&
    i.index >= 1 &&
    i.index <= 2_147_483_647 &&
    isStr(i.name, 1, 128) &&
    (i.alias === undefined || isStr(i.alias, 0, 255)) &&
    typeof i.uplink === 'boolean' &&
    (i.speedMbps === undefined || isRate(i.speedMbps)) &&
    isOper(i.operStatus) &&
    (i.counterBits === 32 || i.counterBits === 64) &&
    isCounter(i.inOctets) &&
    isCounter(i.outOctets) &&
    (i.inBps === null || isRate(i.inBps)) &&
    (i.outBps === null || isRate(i.outBps)) &&
    (i.inErrors === undefined || isCounter(i.inErrors)) &&
    (i.outErrors === undefined || isCounter(i.outErrors)) &&
    (i.inDiscards === undefined || isCounter(i.inDiscards))
  );
}

/** ifaceReadingsSchema, exactly. */
export function fastIface(m: unknown): boolean {
  if (!isObj(m) || !onlyKeys(m, IFACES_KEYS) || m.v !== 1) return false;
  if (!isTs(m.ts) || !isNonNegInt(m.seq) || !isKind(m.kind) || !isNonNegInt(m.sysUpTimeTicks)) return false;
  if (m.pollMs !== undefined && !isRate(m.pollMs)) return false;
  const ifaces = m.ifaces;
  if (!Array.isArray(ifaces) || ifaces.length > 1024) return false;
  for (const i of ifaces) if (!ifaceOk(i)) return false;
  return true;
}
