import { describe, expect, it } from 'vitest';
import { EXAMPLE_TOPICS, EXAMPLES } from '../../contracts/examples.js';
import {
  CHANNEL_SCHEMAS,
  decodePayload,
  encodePayload,
  MAX_PAYLOAD_BYTES,
} from '../../contracts/messages.js';
import { buildTopic, CHANNELS, parseTopic } from '../../contracts/topics.js';

describe('message schemas', () => {
  it('has one valid example per channel, on a valid topic, that survives encode → decode', () => {
    for (const c of CHANNELS) {
      expect(CHANNEL_SCHEMAS[c].safeParse(EXAMPLES[c]).success, c).toBe(true);
      expect(parseTopic(buildTopic(EXAMPLE_TOPICS[c]))).toMatchObject({ ok: true, channel: c });
      const decoded = decodePayload(c, encodePayload(c, EXAMPLES[c] as never));
      expect(decoded).toEqual({ ok: true, message: EXAMPLES[c] });
    }
  });

  it('every schema carries a version field', () => {
    for (const c of CHANNELS) expect(Object.keys(CHANNEL_SCHEMAS[c].shape), c).toContain('v');
  });

  it('rejects garbage with a reason and the offending field', () => {
    const t = EXAMPLES.telemetry;
    const cases: [string | Uint8Array, string, RegExp?][] = [
      ['', 'not_json'],
      ['{"v":1,', 'not_json'],
      [new Uint8Array([0xff, 0xfe, 0x00]), 'not_json'],
      ['[1,2]', 'not_object'],
      ['null', 'not_object'],
      ['42', 'not_object'],
      ['{"v":3}', 'unsupported_version'],
      ['{"v":"2"}', 'unsupported_version'],
      // An invalid activity beside another invalid part: the reading is refused whole.
      [
        JSON.stringify({ ...t, v: 2, seq: -1, activity: { source: 'x11', idleS: -1 } }),
        'invalid',
        /^(seq|activity)/,
      ],
      ['{}', 'unsupported_version'],
      [JSON.stringify({ ...t, ts: 1_700_000_000 }), 'invalid', /^ts: .*after 2000/],
      [JSON.stringify({ ...t, kind: 'toaster' }), 'invalid', /^kind/],
      [JSON.stringify({ ...t, seq: -1 }), 'invalid', /^seq/],
      [JSON.stringify({ ...t, spoolDropped: -1 }), 'invalid', /^spoolDropped/],
      [JSON.stringify({ ...t, spoolDropped: 1.5 }), 'invalid', /^spoolDropped/],
      [JSON.stringify({ ...t, host: { ...t.host, cpuPct: 140 } }), 'invalid', /^host\.cpuPct/],
      [
        JSON.stringify({ ...t, host: { ...t.host!, nics: [{ name: 'e', rxBytes: 12, txBytes: '1' }] } }),
        'invalid',
        /^host\.nics\.0\.rxBytes/,
      ],
      [
        JSON.stringify({
          ...t,
          host: { ...t.host!, nics: [{ name: 'e', rxBytes: '18446744073709551616', txBytes: '1' }] },
        }),
        'invalid',
        /2\^64/,
      ],
      ['x'.repeat(MAX_PAYLOAD_BYTES + 1), 'too_large'],
    ];
    for (const [payload, reason, detail] of cases) {
      const r = decodePayload('telemetry', payload);
      expect(r.ok, String(payload).slice(0, 60)).toBe(false);
      if (!r.ok) {
        expect(r.reason, String(payload).slice(0, 60)).toBe(reason);
        if (detail) expect(r.detail).toMatch(detail);
      }
    }
    // An invalid activity alone: dropped with its reason, the rest of the reading kept (tolerant reader).
    for (const [activity, detail] of [
      [{ source: 'x11', idleS: -1 }, /^activity\.idleS/],
      [
        { source: 'windows', foreground: 'C:\\Windows\\evil.exe' },
        /^activity\.foreground: must be an executable name/,
      ],
      [{ source: 'keylogger' }, /^activity\.source/],
      ['busy', /^activity/],
    ] as const) {
      const r = decodePayload('telemetry', JSON.stringify({ ...t, v: 2, activity }));
      expect(r.ok, JSON.stringify(activity)).toBe(true);
      if (r.ok) {
        expect(r.droppedActivity).toMatch(detail);
        expect(r.message).not.toHaveProperty('activity');
        expect(r.message.display).toEqual(t.display);
      }
    }
    // v2 is telemetry's alone: the other channels are still v1.
    for (const c of ['status', 'iface', 'event'] as const)
      expect(decodePayload(c, JSON.stringify({ ...EXAMPLES[c], v: 2 }))).toMatchObject({
        ok: false,
        reason: 'unsupported_version',
      });
  });

  it('ignores unknown fields (tolerant reader: additive changes within v1 do not break older collectors)', () => {
    const r = decodePayload('telemetry', JSON.stringify({ ...EXAMPLES.telemetry, addedLater: { x: 1 } }));
    expect(r).toEqual({ ok: true, message: EXAMPLES.telemetry });
  });

  it('rejects a status with an id that could not be a topic level', () => {
    const r = decodePayload('status', JSON.stringify({ ...EXAMPLES.status, classroom: 'a/b' }));
    expect(r).toMatchObject({ ok: false, reason: 'invalid' });
    const r2 = decodePayload('status', JSON.stringify({ ...EXAMPLES.status, region: '330000//330106' }));
    expect(r2).toMatchObject({ ok: false, reason: 'invalid' });
  });

  it('refuses a long non-decimal counter with a reason instead of throwing (zod 4 runs the range check after a failed regex)', () => {
    const t = EXAMPLES.telemetry;
    const nic = t.host!.nics[0]!;
    for (const rxBytes of ['x'.repeat(20), `${'1'.repeat(19)}x`, '-'.repeat(25)]) {
      const payload = JSON.stringify({ ...t, host: { ...t.host, nics: [{ ...nic, rxBytes }] } });
      expect(decodePayload('telemetry', payload)).toMatchObject({
        ok: false,
        reason: 'invalid',
        detail: expect.stringMatching(/^host\.nics\.0\.rxBytes: must be a decimal counter string/),
      });
    }
  });

  it('accepts the full 64-bit counter range and null rates', () => {
    const iface = {
      ...EXAMPLES.iface.ifaces[0]!,
      inOctets: '18446744073709551615',
      inBps: null,
      outBps: null,
    };
    const r = decodePayload('iface', JSON.stringify({ ...EXAMPLES.iface, ifaces: [iface] }));
    expect(r.ok).toBe(true);
  });
});
