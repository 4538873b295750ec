import { describe, expect, it } from 'vitest';
import { rng } from '../../bench/fixtures.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { fastIface, fastTelemetry } from '../../contracts/fast-validate.js';
import { CHANNEL_SCHEMAS, decodePayload } from '../../contracts/messages.js';

// The fast paths of contracts/fast-validate.ts against zod, on the same payloads: every payload the fast path
// accepts, zod accepts with the same message; every payload zod refuses, the fast path refuses; and
// decodePayload (fast path first) gives exactly zod's verdict. The payloads: the valid examples and variants of
// them, every field of them replaced by each hostile value in turn, every key removed, an unknown key added at
// every level, and seeded random combinations of several such changes.

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = (string | number)[];

const clone = <T>(x: T): T => structuredClone(x);

function paths(x: Json, at: Path = []): Path[] {
  const out: Path[] = [];
  if (Array.isArray(x)) for (const [i, v] of x.entries()) out.push([...at, i], ...paths(v, [...at, i]));
  else if (x !== null && typeof x === 'object')
    for (const [k, v] of Object.entries(x)) out.push([...at, k], ...paths(v, [...at, k]));
  return out;
}

function containers(x: Json, at: Path = []): Path[] {
  if (x === null || typeof x !== 'object') return [];
  const out: Path[] = Array.isArray(x) ? [] : [at];
  for (const [k, v] of Object.entries(x))
    out.push(...containers(v, [...at, Array.isArray(x) ? Number(k) : k]));
  return out;
}

function parentOf(root: Json, p: Path): Record<string | number, Json> {
  let o = root as Record<string | number, Json>;
  for (const k of p.slice(0, -1)) o = o[k] as Record<string | number, Json>;
  return o;
}

function set(root: Json, p: Path, v: Json | undefined): Json {
  const r = clone(root);
  if (p.length === 0) return v as Json;
  const parent = parentOf(r, p);
  const k = p[p.length - 1]!;
  if (v === undefined) {
    if (Array.isArray(parent)) parent.splice(k as number, 1);
    else delete parent[k];
  } else parent[k] = v;
  return r;
}

/** Values a field may be replaced with: near every bound the schemas have, of every JSON type. */
const HOSTILE: Json[] = [
  null,
  true,
  false,
  0,
  -0,
  -1,
  0.5,
  1,
  1.5,
  31,
  32,
  33,
  64,
  99.999,
  100,
  100.0001,
  -50,
  -50.0001,
  200,
  200.5,
  1_000,
  1_024,
  60_000,
  366 * 86_400,
  366 * 86_400 + 1,
  2_147_483_647,
  2_147_483_648,
  946_684_800_000,
  946_684_799_999,
  4_102_444_800_000,
  4_102_444_800_001,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  1e308,
  -1e308,
  '',
  'a',
  'x'.repeat(32),
  'x'.repeat(33),
  'x'.repeat(64),
  'x'.repeat(65),
  'x'.repeat(128),
  'x'.repeat(129),
  'x'.repeat(255),
  'x'.repeat(256),
  '0',
  '-1',
  '1.5',
  ' 1',
  '1e3',
  '１２３',
  '18446744073709551615',
  '18446744073709551616',
  '99999999999999999999',
  '123456789012345678901',
  'on',
  'ON',
  'up',
  'router',
  'panel',
  'Panel',
  'windows',
  'pjlink',
  'ok',
  'error',
  'c0701',
  '-c0701',
  'a/b',
  'EasiNote.exe',
  'C:\\x.exe',
  'a\u0000b',
  'tab\there',
  '城域网',
  '__proto__',
  [],
  [1],
  ['x'],
  {},
  { a: 1 },
];

const UNKNOWN_KEYS = ['extra', '__proto__', 'constructor', 'toString'];

function variants(base: Json): Json[] {
  const out: Json[] = [base];
  for (const p of paths(base)) {
    for (const h of HOSTILE) out.push(set(base, p, h));
    out.push(set(base, p, undefined));
  }
  for (const c of containers(base)) {
    for (const k of UNKNOWN_KEYS) {
      const r = clone(base);
      const o = c.length === 0 ? r : (parentOf(r, [...c, '']) as Record<string, Json>);
      // An own key, as JSON.parse makes it (also for `__proto__`).
      Object.defineProperty(o, k, { value: 1, enumerable: true, configurable: true, writable: true });
      out.push(r);
    }
  }
  // Several changes at once.
  const rand = rng(18);
  for (let n = 0; n < 3_000; n++) {
    let r = clone(base);
    const changes = 1 + Math.floor(rand() * 3);
    for (let c = 0; c < changes; c++) {
      const ps = paths(r);
      if (ps.length === 0) break;
      const p = ps[Math.floor(rand() * ps.length)]!;
      r = set(r, p, rand() < 0.1 ? undefined : HOSTILE[Math.floor(rand() * HOSTILE.length)]);
    }
    out.push(r);
  }
  return out;
}

const telemetryBases: Json[] = (() => {
  const t = EXAMPLES.telemetry as unknown as Record<string, Json>;
  const { activity: _a, ...noActivity } = t;
  const host = t.host as Record<string, Json>;
  return [
    t,
    { ...noActivity, v: 1, inUse: true },
    { ...noActivity, spoolDropped: 7 },
    { v: 2, ts: t.ts!, seq: 0, kind: 'teacher_pc' },
    {
      ...t,
      host: { ...host, nics: [] },
      display: { source: 'command', power: 'unknown', errors: {}, errorCodes: ['E1', ''] },
      activity: { source: 'x11', loggedOn: false, teachingSite: '智慧中小学' },
    },
  ];
})();

const ifaceBases: Json[] = (() => {
  const m = EXAMPLES.iface as unknown as Record<string, Json>;
  const i = (m.ifaces as Json[])[0] as Record<string, Json>;
  const { alias: _a, speedMbps: _s, inErrors: _e, ...bare } = i;
  return [
    m,
    { ...m, ifaces: [] },
    { ...m, ifaces: [i, { ...bare, index: 2, name: 'Vlan1', inBps: null, outBps: null, counterBits: 32 }] },
  ];
})();

type Fast = (m: unknown) => boolean;
const cases: [name: string, channel: 'telemetry' | 'iface', fast: Fast, bases: Json[]][] = [
  ['telemetry', 'telemetry', fastTelemetry, telemetryBases],
  ['iface', 'iface', fastIface, ifaceBases],
];

describe.each(cases)('fast validator for %s', (_name, channel, fast, bases) => {
  const schema = CHANNEL_SCHEMAS[channel];
  const payloads = bases.flatMap(variants);

  it('accepts the valid examples (the fast path is taken)', () => {
    for (const b of bases) {
      expect(schema.safeParse(b).success).toBe(true);
      expect(fast(b)).toBe(true);
    }
  });

  it('accepts only what zod accepts, as zod returns it; refuses everything zod refuses', () => {
    let fastAccepted = 0;
    let zodRefused = 0;
    for (const p of payloads) {
      const z = schema.safeParse(p);
      const f = fast(p);
      if (!z.success) {
        zodRefused++;
        expect(f, JSON.stringify(p)).toBe(false);
      }
      if (f) {
        fastAccepted++;
        expect(z.success, JSON.stringify(p)).toBe(true);
        expect(z.data).toEqual(p);
      }
    }
    // Both sides of the table are populated: the test compares verdicts, not one kind of payload.
    expect(fastAccepted).toBeGreaterThan(bases.length * 20);
    expect(zodRefused).toBeGreaterThan(payloads.length / 4);
  });

  it('decodePayload gives zod’s verdict for every payload, as JSON text', () => {
    for (const original of payloads) {
      const text = JSON.stringify(original);
      const p = JSON.parse(text) as Json; // as the collector sees it (-0 travels as 0)
      const d = decodePayload(channel, text);
      const z = schema.safeParse(p);
      if (z.success) expect(d, JSON.stringify(p)).toEqual({ ok: true, message: z.data });
      else if (d.ok) {
        // Only zod's own path keeps a reading without its invalid activity block.
        expect(channel).toBe('telemetry');
        expect(d.droppedActivity).toBeDefined();
        expect(schema.safeParse({ ...(p as object), activity: undefined }).success).toBe(true);
      }
    }
  });

  it('refuses numbers JSON.parse makes infinite, as zod does', () => {
    for (const b of bases) {
      const text = JSON.stringify(b).replace(/"ts":\d+/, '"ts":1e400');
      const value = JSON.parse(text);
      expect(fast(value)).toBe(false);
      expect(decodePayload(channel, text)).toMatchObject({ ok: false, reason: 'invalid' });
    }
  });
});
