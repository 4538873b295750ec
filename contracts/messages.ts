import { z } from 'zod';
import { fastIface, fastTelemetry } from './fast-validate.js';
import { idSchema, regionPathSchema } from './ids.js';
import type { Channel } from './topics.js';

/**
 * Message schemas: what crosses the MQTT boundary. Every payload is a JSON object with
 * - `v`: the schema version. A reader accepts the versions it knows and rejects the rest by reason
 *   `unsupported_version`, so old collectors never misread new agents.
 * - `ts`: when the reading was taken, Unix epoch milliseconds, by the publisher's clock.
 *
 * - Unknown fields are ignored (tolerant reader): a publisher may add optional fields within v1 without
 *   breaking older collectors; a change that alters the meaning of an existing field bumps `v`.
 *
 * Units are in field names (`uptimeS`, `rxBps`, `temperatureC`). Counters that may exceed 2^53 (64-bit SNMP and
 * NIC byte counters) travel as decimal strings so JSON never rounds them.
 */

/** 2000-01-01 .. 2100-01-01: anything outside is a device with a dead RTC battery or a unit mix-up (s vs ms). */
const tsSchema = z
  .number()
  .int()
  .min(946_684_800_000, { message: 'must be epoch milliseconds after 2000-01-01' })
  .max(4_102_444_800_000, { message: 'must be epoch milliseconds before 2100-01-01' });

const MAX_U64 = (1n << 64n) - 1n;
const DECIMAL = /^\d+$/;

/** An unsigned 64-bit counter as a decimal string, e.g. SNMP Counter64 (RFC 2578 §7.1.10) or /proc/net/dev bytes. */
export const counterSchema = z
  .string()
  .regex(/^\d{1,20}$/, { message: 'must be a decimal counter string' })
  // zod 4 runs this refinement even when the regex failed: BigInt() of a non-decimal string would throw out of
  // safeParse (a 20-character `xxx…` counter crashed decodePayload), so the range is checked on digits only.
  .refine((s) => s.length < 20 || !DECIMAL.test(s) || BigInt(s) <= MAX_U64, { message: 'exceeds 2^64-1' });

const pct = z.number().min(0).max(100);
const nonNegInt = z.number().int().nonnegative();
const rate = z.number().nonnegative().finite();

export const DEVICE_KINDS = [
  'whiteboard',
  'panel',
  'projector',
  'teacher_pc',
  'student_pc',
  'router',
  'switch',
  'ap',
] as const;
export const deviceKindSchema = z.enum(DEVICE_KINDS);
export type DeviceKind = z.infer<typeof deviceKindSchema>;

/**
 * Device birth / status. Published retained on `…/status`: `online` right after connecting (the birth), the
 * same schema with `state: offline, reason: will` registered as the MQTT last will (sent by the broker when the
 * connection dies without a DISCONNECT, MQTT-3.1.2-8), and `offline, reason: shutdown` before a clean stop.
 * Its kind, classroom and region are the device's claim only: the fleet registry decides where its readings
 * belong, and the collector counts and reports a claim that disagrees (collector/README.md, Trust).
 */
export const deviceStatusSchema = z.object({
  v: z.literal(1),
  ts: tsSchema,
  state: z.enum(['online', 'offline']),
  reason: z.enum(['birth', 'will', 'shutdown']).optional(),
  kind: deviceKindSchema,
  classroom: idSchema.optional(),
  region: regionPathSchema.optional(),
  agent: z.object({ name: z.string().max(64), version: z.string().max(32) }).optional(),
  info: z
    .strictObject({
      hostname: z.string().max(255).optional(),
      os: z.string().max(255).optional(),
      model: z.string().max(255).optional(),
      serial: z.string().max(128).optional(),
      sysName: z.string().max(255).optional(),
      sysDescr: z.string().max(1024).optional(),
      address: z.string().max(255).optional(),
    })
    .optional(),
  /** Heartbeat the publisher promises; the collector declares the device offline after 1.5× this with no message. */
  heartbeatS: z.number().int().min(1).max(86_400).optional(),
});
export type DeviceStatus = z.infer<typeof deviceStatusSchema>;

export const nicSchema = z.object({
  name: z.string().min(1).max(64),
  rxBytes: counterSchema,
  txBytes: counterSchema,
  /** Rates over the previous sampling interval; absent on the first sample after start. */
  rxBps: rate.optional(),
  txBps: rate.optional(),
});

export const LEVELS = ['ok', 'warning', 'error'] as const;
const levelSchema = z.enum(LEVELS);

/** PJLink class 1 `ERST` reports these six (fan, lamp, temperature, cover open, filter, other). */
export const DISPLAY_ERROR_KEYS = ['fan', 'lamp', 'temperature', 'cover', 'filter', 'other'] as const;

export const displaySchema = z.object({
  source: z.enum(['pjlink', 'command', 'simulated']),
  /** PJLink `POWR`: 0 off, 1 on, 2 cooling, 3 warming up. */
  power: z.enum(['off', 'on', 'cooling', 'warming', 'unknown']),
  /** PJLink `INPT` (e.g. `31` = digital input 1) or a vendor's input name. */
  input: z.string().max(32).optional(),
  /** Interactive whiteboard / panel touch controller answers. */
  touchOk: z.boolean().optional(),
  temperatureC: z.number().min(-50).max(200).optional(),
  /** PJLink `LAMP`: cumulative lamp hours of lamp 1. */
  lampHours: nonNegInt.optional(),
  errors: z
    .strictObject({
      fan: levelSchema,
      lamp: levelSchema,
      temperature: levelSchema,
      cover: levelSchema,
      filter: levelSchema,
      other: levelSchema,
    })
    .partial()
    .optional(),
  /** Vendor-specific error codes, verbatim. */
  errorCodes: z.array(z.string().max(64)).max(32).optional(),
});
export type DisplayHealth = z.infer<typeof displaySchema>;

/** Seconds since the last input: capped at a year (a longer figure says only "not since boot"). */
export const MAX_IDLE_S = 366 * 86_400;

/**
 * What the person at the teaching computer is doing, as its activity source read it (docs/usage.md): the
 * evidence of use, where a display's power is only evidence of being switched on.
 */
export const activitySchema = z.object({
  /** Which source read it: `windows` (the PowerShell helper), `x11` (Linux desktops), `simulated`, `command`. */
  source: z.enum(['windows', 'x11', 'simulated', 'command']),
  /**
   * Seconds since the last keyboard, mouse, pen or touch input in the interactive session (Windows
   * GetLastInputInfo, X11 XScreenSaver idle time); absent when no one is logged on or it cannot be read.
   */
  idleS: z.number().int().min(0).max(MAX_IDLE_S).optional(),
  /**
   * Executable name of the process owning the foreground window (`EasiNote.exe`, `POWERPNT.EXE`, `wpp.exe`,
   * `chrome.exe`), without a path; absent when no window has the focus or it cannot be read. Never a window
   * title (titles carry names of people and files). Matched against the teaching applications by the collector.
   */
  foreground: z
    .string()
    .min(1)
    .max(128)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    .regex(/^[^\\/\u0000-\u001f]+$/, { message: 'must be an executable name, not a path' })
    .optional(),
  /**
   * The teaching site the foreground window shows, when its title matched one of the agent's
   * `activity.teachingSites` (e.g. `智慧中小学`): the pattern's name, matched on the computer — the title itself
   * never leaves it. For a browser, whose executable name says nothing of what is taught.
   */
  teachingSite: z.string().min(1).max(64).optional(),
  /** The computer's own screen is on (not blanked by power saving, not switched off); absent: unknown. */
  screenOn: z.boolean().optional(),
  /**
   * false: nobody is logged on at the computer's console (the log-on screen) — nobody at it, which is evidence
   * of no use, though there is no idle time to send. Absent: someone is, or the agent cannot tell.
   */
  loggedOn: z.literal(false).optional(),
});
export type Activity = z.infer<typeof activitySchema>;

/** The telemetry versions a collector reads (docs/usage.md, "Compatibility"). */
export const TELEMETRY_VERSIONS = [1, 2] as const;

/**
 * Classroom telemetry from the agent on the teacher PC / OPS module, every `heartbeatS` seconds.
 *
 * v2 (#16) changes what *in use* means, so it bumps `v`: a v2 agent sends the evidence — `display.power`,
 * `activity` — and the collector judges use from it (docs/usage.md); v1's `inUse` ("on with an input selected")
 * is still read from v1 agents, stored as use judged by power only.
 */
export const telemetrySchema = z.object({
  v: z.union([z.literal(1), z.literal(2)]),
  ts: tsSchema,
  /** Per agent run, +1 per reading: lets store-and-forward replays be checked for order and gaps. */
  seq: nonNegInt,
  kind: deviceKindSchema,
  classroom: idSchema.optional(),
  host: z
    .strictObject({
      uptimeS: nonNegInt,
      cpuPct: pct,
      memUsedPct: pct,
      memTotalBytes: nonNegInt,
      nics: z.array(nicSchema).max(32),
    })
    .optional(),
  display: displaySchema.optional(),
  /**
   * v1 only: the teaching display is on and showing an input — use judged by power (docs/usage.md,
   * "Compatibility"). A v2 reader ignores it: the collector judges v2 use from `display` and `activity`.
   */
  inUse: z.boolean().optional(),
  /** v2: what the person at the teaching computer is doing (`activitySchema`). */
  activity: activitySchema.optional(),
  /**
   * Messages this agent run could not keep for delivery: dropped oldest first from its full spool
   * (`agent.spool.maxBytes`), or lost while its spool folder failed. Cumulative since the agent started, like
   * `seq`; absent while none was lost. Stored as `host.spool_dropped`.
   */
  spoolDropped: nonNegInt.optional(),
});
export type Telemetry = z.infer<typeof telemetrySchema>;

/** IF-MIB ifOperStatus (RFC 2863 §6). */
export const OPER_STATUSES = [
  'up',
  'down',
  'testing',
  'unknown',
  'dormant',
  'notPresent',
  'lowerLayerDown',
] as const;

export const ifaceReadingSchema = z.object({
  /** IF-MIB ifIndex. */
  index: z.number().int().min(1).max(2_147_483_647),
  /** IF-MIB ifName (ifXTable), or ifDescr when the device has no ifXTable. */
  name: z.string().min(1).max(128),
  /** IF-MIB ifAlias: the operator's description, e.g. "uplink to 城域网". */
  alias: z.string().max(255).optional(),
  /** This interface is the school's uplink. */
  uplink: z.boolean(),
  /** IF-MIB ifHighSpeed (Mbps), or ifSpeed / 1e6 as fallback. */
  speedMbps: z.number().nonnegative().optional(),
  operStatus: z.enum(OPER_STATUSES),
  /** ifHCInOctets/ifHCOutOctets (64) or ifInOctets/ifOutOctets (32). */
  counterBits: z.union([z.literal(32), z.literal(64)]),
  inOctets: counterSchema,
  outOctets: counterSchema,
  /** Rates over the last poll interval; null when no honest rate exists (first poll, counter reset, over speed). */
  inBps: rate.nullable(),
  outBps: rate.nullable(),
  inErrors: counterSchema.optional(),
  outErrors: counterSchema.optional(),
  inDiscards: counterSchema.optional(),
});
export type IfaceReading = z.infer<typeof ifaceReadingSchema>;

/** One SNMP poll of a router or switch, published by the poller on the device's `…/iface` topic. */
export const ifaceReadingsSchema = z.object({
  v: z.literal(1),
  ts: tsSchema,
  seq: nonNegInt,
  kind: deviceKindSchema,
  /** SNMPv2-MIB sysUpTime, hundredths of a second since the agent (re)started. */
  sysUpTimeTicks: nonNegInt,
  /** How long the poll took, for poller health. */
  pollMs: z.number().nonnegative().optional(),
  ifaces: z.array(ifaceReadingSchema).max(1024),
});
export type IfaceReadings = z.infer<typeof ifaceReadingsSchema>;

/** Largest RTT a probe reports: a minute; anything longer is a unit mix-up, not a round trip. */
const rttMs = z.number().finite().min(0).max(60_000);

/**
 * One probe cycle of one target by the poller (agents/snmp/probe.ts), on the device's `…/probe` topic: `sent`
 * ICMP echoes (fping) or TCP connects, `received` answers, their round-trip times, and jitter. A measurement
 * by our own process of the address the poller derived for the device, never a claim of the probed host.
 */
export const probeResultSchema = z
  .object({
    v: z.literal(1),
    /** When the cycle started (the poller's clock). */
    ts: tsSchema,
    /** The device's kind as the poller's target says (the registry's kind wins for a registered device). */
    kind: deviceKindSchema,
    method: z.enum(['icmp', 'tcp']),
    /** The TCP port connected to (method tcp only). */
    port: z.number().int().min(1).max(65_535).optional(),
    sent: z.number().int().min(1).max(1_000),
    received: z.number().int().min(0).max(1_000),
    /** Over the answers received; null iff none was. */
    rttMs: z.object({ min: rttMs, avg: rttMs, max: rttMs }).nullable(),
    /**
     * Mean absolute difference of consecutive answers' RTTs (RFC 3550 §6.4.1's D(i-1,i), without its 1/16
     * smoothing); null with fewer than two answers.
     */
    jitterMs: rttMs.nullable(),
    /** Time between probes of this target. */
    periodMs: z.number().int().min(1).max(60_000),
  })
  .superRefine((m, ctx) => {
    if (m.received > m.sent) ctx.addIssue({ code: 'custom', path: ['received'], message: 'must be ≤ sent' });
    if ((m.rttMs === null) !== (m.received === 0))
      ctx.addIssue({ code: 'custom', path: ['rttMs'], message: 'must be null iff received is 0' });
    if (m.rttMs && !(m.rttMs.min <= m.rttMs.avg && m.rttMs.avg <= m.rttMs.max))
      ctx.addIssue({ code: 'custom', path: ['rttMs'], message: 'must have min ≤ avg ≤ max' });
    if (m.jitterMs !== null && m.received < 2)
      ctx.addIssue({ code: 'custom', path: ['jitterMs'], message: 'must be null with fewer than 2 answers' });
    if ((m.port !== undefined) !== (m.method === 'tcp'))
      ctx.addIssue({ code: 'custom', path: ['port'], message: 'is given iff method is tcp' });
  });
export type ProbeResult = z.infer<typeof probeResultSchema>;

export const EVENT_TYPES = [
  'reboot',
  'fault',
  'fault_cleared',
  'status_change',
  'unreachable',
  'recovered',
  'clock_skew',
] as const;

/** Something happened: a reboot, a fault, a change of presence. Events are stored as they come, never merged. */
export const deviceEventSchema = z.object({
  v: z.literal(1),
  ts: tsSchema,
  type: z.enum(EVENT_TYPES),
  severity: z.enum(['info', 'warning', 'critical']),
  kind: deviceKindSchema,
  /** What part it concerns, e.g. `display`, `uplink`, `lamp`: a short name, stored as a tag (bounded values). */
  subject: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]{0,31}$/, { message: 'must be a short lower-case name like lamp or uplink' })
    .optional(),
  message: z.string().max(500),
  details: z.record(z.string().max(64), z.union([z.string().max(500), z.number(), z.boolean()])).optional(),
});
export type DeviceEvent = z.infer<typeof deviceEventSchema>;

/** The one typed map from channel to payload schema that every publisher and subscriber types against. */
export const CHANNEL_SCHEMAS = {
  status: deviceStatusSchema,
  telemetry: telemetrySchema,
  iface: ifaceReadingsSchema,
  event: deviceEventSchema,
  probe: probeResultSchema,
} as const satisfies Record<Channel, z.ZodType>;

export type TopicPayloads = { [C in Channel]: z.infer<(typeof CHANNEL_SCHEMAS)[C]> };

export type DecodeRejectReason = 'not_json' | 'not_object' | 'unsupported_version' | 'invalid' | 'too_large';

export type Decoded<C extends Channel> =
  | {
      ok: true;
      message: TopicPayloads[C];
      /**
       * A telemetry reading whose `activity` block alone was invalid: the rest is kept, the block dropped
       * (tolerant reader — a bad activity must not lose the host and display health beside it).
       */
      droppedActivity?: string;
    }
  | { ok: false; reason: DecodeRejectReason; detail: string };

/** Largest payload any publisher may send. A classroom reading is ~1 KB; a 48-port switch poll ~15 KB. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

/** Decode and validate one payload. Never throws: returns the reason for the rejection counters. */
export function decodePayload<C extends Channel>(channel: C, payload: Uint8Array | string): Decoded<C> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size > MAX_PAYLOAD_BYTES) return { ok: false, reason: 'too_large', detail: `${size} bytes` };
  let value: unknown;
  try {
    const text =
      typeof payload === 'string'
        ? payload
        : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'); // no copy
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: 'not_json', detail: (e as Error).message };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'not_object', detail: 'payload must be a JSON object' };
  }
  const v = (value as { v?: unknown }).v;
  if (!(channel === 'telemetry' ? (TELEMETRY_VERSIONS as readonly unknown[]).includes(v) : v === 1)) {
    return {
      ok: false,
      reason: 'unsupported_version',
      detail: `v=${JSON.stringify(v)}`,
    };
  }
  // The hot kinds first through their hand-written checks (contracts/fast-validate.ts): what they accept zod
  // accepts unchanged; anything else gets zod's verdict and reason.
  if (channel === 'telemetry' ? fastTelemetry(value) : channel === 'iface' && fastIface(value))
    return { ok: true, message: value as TopicPayloads[C] };
  const r = CHANNEL_SCHEMAS[channel].safeParse(value);
  if (!r.success && channel === 'telemetry' && r.error.issues.every((i) => i.path[0] === 'activity')) {
    const { activity: _bad, ...rest } = value as Record<string, unknown>;
    const again = CHANNEL_SCHEMAS.telemetry.safeParse(rest);
    if (again.success) {
      const i = r.error.issues[0]!;
      return {
        ok: true,
        message: again.data as TopicPayloads[C],
        droppedActivity: `${i.path.join('.')}: ${i.message}`,
      };
    }
  }
  if (!r.success) {
    const i = r.error.issues[0];
    return {
      ok: false,
      reason: 'invalid',
      detail: i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid',
    };
  }
  return { ok: true, message: r.data as TopicPayloads[C] };
}

export function encodePayload<C extends Channel>(_channel: C, message: TopicPayloads[C]): string {
  return JSON.stringify(message);
}
