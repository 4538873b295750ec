import { describe, expect, it } from 'vitest';
import { clientIdAllowed, mayPublish, maySubscribe, type Principal, stripShare } from '../../broker/acl.js';
import { MqttFrameMeter, TokenBucket } from '../../broker/frame-limit.js';

const SCHOOL = '3133001234';
const SCHOOL_2 = '3133005678';
const OTHER_SCHOOL = '3133009999';

const device: Principal = { role: 'device', username: 'dev-a', school: SCHOOL, device: 'c0701-ops' };
const poller: Principal = { role: 'poller', username: 'poll-1', schools: [SCHOOL, SCHOOL_2] };
const collector: Principal = { role: 'collector', username: 'coll' };
const reader: Principal = { role: 'reader', username: 'live' };
const targeted: Principal = {
  role: 'poller',
  username: 'poll-t',
  schools: [SCHOOL, SCHOOL_2],
  devices: new Set([`${SCHOOL}/gw-01`, `${SCHOOL_2}/gw-01`]),
};
const everyone = [device, poller, collector, reader, targeted];

const topic = (school: string, dev: string, channel: string) => `cfm/v1/${school}/${dev}/${channel}`;

describe('mayPublish', () => {
  it('lets a device publish status, telemetry and event under its own subtree only', () => {
    for (const channel of ['status', 'telemetry', 'event']) {
      expect(mayPublish(device, topic(SCHOOL, 'c0701-ops', channel), false), channel).toEqual({ ok: true });
    }
    const refused = [
      topic(SCHOOL, 'c0701-ops', 'iface'), // a poller's channel
      topic(SCHOOL, 'c0701-ops', 'probe'), // a poller's measurement, not the device's claim
      topic(SCHOOL, 'c0702-ops', 'telemetry'), // another device of the same school
      topic(OTHER_SCHOOL, 'c0701-ops', 'telemetry'), // its own device id under another school
      topic(SCHOOL, 'c0701-ops', 'nope'),
    ];
    for (const t of refused) expect(mayPublish(device, t, false).ok, t).toBe(false);
    expect(mayPublish(device, topic(SCHOOL, 'c0702-ops', 'status'), false)).toEqual({
      ok: false,
      reason: 'a device publishes only under its own subtree',
    });
    expect(mayPublish(device, topic(SCHOOL, 'c0701-ops', 'iface'), false)).toEqual({
      ok: false,
      reason: 'a device does not publish iface',
    });
  });

  it('lets a poller publish status, iface, event and probe for any device of its assigned schools only', () => {
    for (const school of [SCHOOL, SCHOOL_2]) {
      for (const channel of ['status', 'iface', 'event', 'probe']) {
        expect(mayPublish(poller, topic(school, 'core-sw1', channel), false), `${school} ${channel}`).toEqual(
          {
            ok: true,
          },
        );
      }
    }
    expect(mayPublish(poller, topic(SCHOOL, 'core-sw1', 'telemetry'), false)).toEqual({
      ok: false,
      reason: 'a poller does not publish telemetry',
    });
    expect(mayPublish(poller, topic(OTHER_SCHOOL, 'core-sw1', 'iface'), false)).toEqual({
      ok: false,
      reason: `school ${OTHER_SCHOOL} is not assigned to this poller`,
    });
    expect(mayPublish(poller, topic(OTHER_SCHOOL, 'core-sw1', 'probe'), false).ok).toBe(false);
  });

  it('lets a poller with a target list publish for those devices only', () => {
    for (const school of [SCHOOL, SCHOOL_2]) {
      for (const channel of ['status', 'iface', 'event', 'probe']) {
        expect(mayPublish(targeted, topic(school, 'gw-01', channel), channel === 'status').ok).toBe(true);
      }
    }
    expect(mayPublish(targeted, topic(SCHOOL, 'gw-02', 'probe'), false).ok).toBe(false);
    expect(mayPublish(targeted, topic(SCHOOL, 'gw-02', 'status'), true)).toEqual({
      ok: false,
      reason: `device ${SCHOOL}/gw-02 is not a target of this poller`,
    });
    // The same device id under a school not assigned, and a listed device on a channel pollers do not use.
    expect(mayPublish(targeted, topic(OTHER_SCHOOL, 'gw-01', 'status'), false).ok).toBe(false);
    expect(mayPublish(targeted, topic(SCHOOL, 'gw-01', 'telemetry'), false).ok).toBe(false);
  });

  it('never lets a collector or a reader publish', () => {
    for (const channel of ['status', 'telemetry', 'iface', 'event', 'probe']) {
      expect(mayPublish(collector, topic(SCHOOL, 'c0701-ops', channel), false)).toEqual({
        ok: false,
        reason: 'a collector only subscribes',
      });
      expect(mayPublish(reader, topic(SCHOOL, 'c0701-ops', channel), false)).toEqual({
        ok: false,
        reason: 'a reader only subscribes',
      });
    }
  });

  it('allows retain on status only', () => {
    expect(mayPublish(device, topic(SCHOOL, 'c0701-ops', 'status'), true)).toEqual({ ok: true });
    expect(mayPublish(poller, topic(SCHOOL, 'core-sw1', 'status'), true)).toEqual({ ok: true });
    for (const channel of ['telemetry', 'event']) {
      expect(mayPublish(device, topic(SCHOOL, 'c0701-ops', channel), true)).toEqual({
        ok: false,
        reason: 'only status messages may be retained',
      });
    }
    for (const channel of ['iface', 'event', 'probe']) {
      expect(mayPublish(poller, topic(SCHOOL, 'core-sw1', channel), true).ok, channel).toBe(false);
    }
  });

  it('refuses $SYS, $share, foreign roots, other versions and malformed topics for every role', () => {
    const refused = [
      '$SYS/x',
      '$SYS/broker/clients',
      `$share/g/${topic(SCHOOL, 'c0701-ops', 'status')}`,
      'foo/bar',
      `other/v1/${SCHOOL}/c0701-ops/status`,
      `cfm/v2/${SCHOOL}/c0701-ops/status`,
      `cfm/v1/${SCHOOL}/c0701-ops`,
      `cfm/v1/${SCHOOL}/c0701-ops/status/extra`,
      `cfm/v1/${SCHOOL}//status`,
      `/cfm/v1/${SCHOOL}/c0701-ops/status`,
      `cfm/v1/${SCHOOL} /c0701-ops/status`,
      '',
    ];
    for (const p of everyone) {
      for (const t of refused) expect(mayPublish(p, t, false).ok, `${p.role} ${t}`).toBe(false);
    }
    expect(mayPublish(device, '$SYS/x', false)).toEqual({
      ok: false,
      reason: 'topics starting with $ are reserved for the broker',
    });
    expect(mayPublish(device, 'foo/bar', false)).toEqual({
      ok: false,
      reason: 'topic is not cfm/v1/{school}/{device}/{channel} (foreign_root)',
    });
  });
});

describe('stripShare', () => {
  it('returns the filter inside $share/{group}/ and leaves other filters alone', () => {
    expect(stripShare('$share/g/cfm/v1/+/+/+')).toBe('cfm/v1/+/+/+');
    expect(stripShare('$share/collectors/cfm/v1/#')).toBe('cfm/v1/#');
    expect(stripShare('cfm/v1/+/+/+')).toBe('cfm/v1/+/+/+');
    expect(stripShare('$SYS/#')).toBe('$SYS/#');
    expect(stripShare('$sharex/g/cfm/v1/#')).toBe('$sharex/g/cfm/v1/#');
  });

  it('refuses a missing, empty or wildcard share name (MQTT-4.8.2)', () => {
    for (const bad of [
      '$share/',
      '$share/g',
      '$share//cfm/v1/#',
      '$share/g+/cfm/v1/#',
      '$share/+/cfm/v1/#',
    ]) {
      expect(stripShare(bad), bad).toBeUndefined();
    }
    expect(stripShare('$share/#/cfm/v1/#')).toBeUndefined();
  });
});

describe('maySubscribe', () => {
  const allowed = [
    'cfm/v1/+/+/+',
    'cfm/v1/#',
    `cfm/v1/${SCHOOL}/#`,
    `cfm/v1/${SCHOOL}/+/iface`,
    'cfm/v1/+/+/status',
    '$share/g/cfm/v1/+/+/+',
    '$share/collectors/cfm/v1/#',
  ];

  it('lets a collector subscribe to filters under cfm/v1, shared or not, and a reader unshared only', () => {
    for (const f of allowed) expect(maySubscribe(collector, f), f).toEqual({ ok: true });
    for (const f of allowed.filter((f) => !f.startsWith('$share/')))
      expect(maySubscribe(reader, f), f).toEqual({ ok: true });
    for (const f of ['#', '$SYS/#', 'cfm/#']) expect(maySubscribe(reader, f).ok, f).toBe(false);
    // Joining the collectors' group would take readings away from them: they would never be stored.
    for (const f of ['$share/collectors/cfm/v1/#', '$share/g/cfm/v1/+/+/+'])
      expect(maySubscribe(reader, f), f).toEqual({
        ok: false,
        reason: 'a reader does not join shared subscriptions (it would take readings from the collectors)',
      });
  });

  it('refuses devices and pollers any subscription', () => {
    for (const p of [device, poller, targeted]) {
      for (const f of allowed) {
        expect(maySubscribe(p, f), `${p.role} ${f}`).toEqual({
          ok: false,
          reason: `a ${p.role} does not subscribe`,
        });
      }
    }
  });

  it('refuses wildcards above cfm/v1, $SYS, foreign roots and other versions', () => {
    for (const f of [
      '#',
      '+/#',
      '+/+/+/+/+',
      '+/v1/#',
      'cfm/+/#',
      'cfm/v2/#',
      'cfm/#',
      '$share/g/cfm/#',
      'cfm',
      '$SYS/#',
      '$SYS/broker/+',
      'foo/#',
      '$share/g/#',
      '$share/g/+/#',
      '$share/g/$SYS/#',
    ]) {
      expect(maySubscribe(collector, f), f).toEqual({
        ok: false,
        reason: 'only filters under cfm/v1/ are allowed',
      });
    }
  });

  it('refuses malformed $share forms and invalid filters', () => {
    for (const f of [
      '$share/g',
      '$share/',
      '$share//cfm/v1/#',
      '$share/g+/cfm/v1/#',
      '$share/#/cfm/v1/#',
      '$share/g/',
      '$share/g/cfm/v1/#/x',
      '',
      'cfm/v1/#/x',
      'cfm/v1/a#',
      'cfm/v1/a+/+/+',
      'cfm/v1/+/+/+\u0000',
    ]) {
      expect(maySubscribe(collector, f), JSON.stringify(f)).toEqual({
        ok: false,
        reason: 'not a valid topic filter',
      });
    }
  });
});

describe('clientIdAllowed', () => {
  it('accepts the username itself or username/suffix', () => {
    for (const id of ['dev-a', 'dev-a/1', 'dev-a/host-7', 'dev-a/']) {
      expect(clientIdAllowed(device, id), id).toBe(true);
    }
  });

  it('refuses ids that merely share a prefix or belong to someone else', () => {
    for (const id of [
      '',
      'dev',
      'dev-ab',
      'dev-a_1',
      // A username may contain . and -, so these could be another user's own id (dev-a-agent is a valid username).
      'dev-a-agent',
      'dev-a.1',
      'DEV-A',
      'xdev-a',
      ' dev-a',
      'coll',
      'mqttjs_1234abcd',
    ]) {
      expect(clientIdAllowed(device, id), id).toBe(false);
    }
    expect(clientIdAllowed(collector, 'coll/1')).toBe(true);
    expect(clientIdAllowed(collector, 'coll-1')).toBe(false);
    expect(clientIdAllowed(collector, 'collector/1')).toBe(false);
  });
});

/** MQTT 3.1.1 §2.2.3 Remaining Length: 7 bits per byte, least significant first, high bit = continuation. */
function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/**
 * A QoS 0 PUBLISH whose Remaining Length is exactly `length`; the payload is 0xff bytes, which would read as
 * Remaining Length continuation bytes if the meter ever mistook the body for a header.
 */
function publishPacket(length: number): Uint8Array {
  const topicBytes = Buffer.from('cfm/v1/s/d/telemetry');
  const payloadLength = length - 2 - topicBytes.length;
  if (payloadLength < 0) throw new Error(`length ${length} is too small for the topic`);
  return Buffer.concat([
    Buffer.from([0x30, ...remainingLength(length), 0x00, topicBytes.length]),
    topicBytes,
    Buffer.alloc(payloadLength, 0xff),
  ]);
}

const PINGREQ = Uint8Array.from([0xc0, 0x00]);

describe('MqttFrameMeter', () => {
  it('encodes test packets as the spec says', () => {
    expect(remainingLength(0)).toEqual([0x00]);
    expect(remainingLength(127)).toEqual([0x7f]);
    expect(remainingLength(128)).toEqual([0x80, 0x01]);
    expect(remainingLength(16_383)).toEqual([0xff, 0x7f]);
    expect(remainingLength(268_435_455)).toEqual([0xff, 0xff, 0xff, 0x7f]);
    expect(publishPacket(300).length).toBe(1 + 2 + 300);
  });

  it('follows packets split across 1-byte chunks', () => {
    const meter = new MqttFrameMeter(1_000);
    const stream = Buffer.concat([publishPacket(300), PINGREQ, publishPacket(1_000), publishPacket(200)]);
    for (const byte of stream) expect(meter.feed(Uint8Array.of(byte))).toBeUndefined();
    // Still in step: the next header is read as a header, one byte at a time.
    const over = Buffer.from([0x30, ...remainingLength(1_001)]);
    expect(meter.feed(over.subarray(0, 1))).toBeUndefined();
    expect(meter.feed(over.subarray(1, 2))).toBeUndefined();
    expect(meter.feed(over.subarray(2, 3))).toBe('packet of 1001 bytes exceeds maxPacketBytes 1000');
  });

  it('follows several packets in one chunk, and chunks that split a header', () => {
    const meter = new MqttFrameMeter(1_000);
    const stream = Buffer.concat([
      PINGREQ,
      publishPacket(130),
      publishPacket(999),
      PINGREQ,
      publishPacket(500),
    ]);
    expect(meter.feed(stream)).toBeUndefined();
    // A chunk that ends between the two Remaining Length bytes, then the rest with another packet after it.
    const two = Buffer.concat([publishPacket(400), publishPacket(700)]);
    expect(meter.feed(two.subarray(0, 2))).toBeUndefined();
    expect(meter.feed(two.subarray(2))).toBeUndefined();
    // An oversized packet after valid ones in the same chunk is still found.
    const bad = Buffer.concat([PINGREQ, publishPacket(200), Buffer.from([0x30, ...remainingLength(5_000)])]);
    expect(meter.feed(bad)).toBe('packet of 5000 bytes exceeds maxPacketBytes 1000');
  });

  it('accepts a declared length just under and at the limit and refuses one byte over, before the body', () => {
    const under = new MqttFrameMeter(4_096);
    expect(under.feed(publishPacket(4_095))).toBeUndefined();
    expect(under.feed(PINGREQ)).toBeUndefined();

    const at = new MqttFrameMeter(4_096);
    expect(at.feed(publishPacket(4_096))).toBeUndefined();
    expect(at.feed(PINGREQ)).toBeUndefined();

    // Only the fixed header is sent: the limit bites before any of the body is buffered.
    const over = new MqttFrameMeter(4_096);
    expect(over.feed(Uint8Array.from([0x30, ...remainingLength(4_097)]))).toBe(
      'packet of 4097 bytes exceeds maxPacketBytes 4096',
    );
  });

  it('refuses a 5-byte Remaining Length and accepts the largest 4-byte one', () => {
    const meter = new MqttFrameMeter(268_435_455);
    expect(meter.feed(Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(
      'malformed Remaining Length (more than 4 bytes)',
    );
    const largest = new MqttFrameMeter(268_435_455);
    expect(largest.feed(Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0x7f]))).toBeUndefined();
    // The same malformed header byte by byte: refused at the fourth continuation byte.
    const split = new MqttFrameMeter(1_000);
    const verdicts = [0x30, 0x80, 0x80, 0x80, 0x80].map((b) => split.feed(Uint8Array.of(b)));
    expect(verdicts).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      'malformed Remaining Length (more than 4 bytes)',
    ]);
  });
});

describe('TokenBucket', () => {
  // 0.001 per second: a token comes back after 1,000 s, so no test here can see a refill.
  it('allows a burst of N, then refuses', () => {
    const bucket = new TokenBucket(0.001, 5);
    const taken = Array.from({ length: 8 }, () => bucket.take());
    expect(taken).toEqual([true, true, true, true, true, false, false, false]);
  });

  it('with a burst of 1 allows exactly one', () => {
    const bucket = new TokenBucket(0.001, 1);
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
  });
});
