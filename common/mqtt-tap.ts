import { Duplex } from 'node:stream';
import type { MqttClient } from 'mqtt';

/**
 * The collector's inbound PUBLISH path, below mqtt.js (docs/scale.md, "Eighth sitting").
 *
 * mqtt.js turns every incoming packet into an object, copies its payload out of a buffer list, and handles the
 * next packet only on the next tick, after a chain of events and callbacks: for a collector receiving
 * thousands of small QoS 1 messages a second that is most of what it spends before doing any work of its own
 * (#18). The tap sits between mqtt.js and its connection (a wrapped `streamBuilder`): it splits the bytes the
 * broker sends into packets, hands each QoS 0/1 PUBLISH straight to the owner — topic, payload as a view of
 * the received bytes (valid during the call), retain flag, packet id — and passes every other packet through
 * to mqtt.js unchanged, which keeps the session: CONNECT/CONNACK, SUBSCRIBE, keepalive, DISCONNECT, QoS 2.
 *
 * Trust: the broker is a peer, not a friend. A malformed packet (a remaining length of more than four bytes, a
 * topic that runs past its packet, an empty topic, QoS 3, a packet id 0, a Topic Alias we never allowed — MQTT 5
 * §3.3.2.3.4 — or a packet other than PUBLISH over 64 KiB) ends the connection with an error (code
 * `ERR_MQTT_MALFORMED`), as mqtt.js's own parser would end it on what it cannot parse; mqtt.js then reports it
 * and the session reconnects. What a publisher controls never ends the connection (the broker would send it
 * again on every one): a PUBLISH whose payload is over `maxPayloadBytes`, or whose topic and properties are
 * over 128 KiB, is handed on without its payload (`undefined`, and its size), for the owner to refuse and
 * acknowledge; when it is larger than what is read of it anyway (its bound + 128 KiB) its rest is skipped as it
 * arrives, never buffered. Chunks of a packet that is not yet whole are joined once it is, not once per chunk.
 *
 * Order: packets are handed on in the order received. A PUBLISH that arrives before mqtt.js has handled the
 * CONNACK before it is still handed on at once: the PUBACKs for it are written on this connection (the
 * owner's acknowledgement code checks that the connection is open, not mqtt.js's `connected`).
 *
 * Flow: the owner returns false to hold the connection (its unacknowledged messages are at their bound):
 * nothing more is read or handed on until `proceed()`, and TCP flow control stops the broker; the socket is
 * also paused while mqtt.js reads no more. Once mqtt.js ends the connection (DISCONNECT), nothing more is
 * handed on, and the socket is read on to the broker's end so that it closes.
 */

/** One PUBLISH, as the tap hands it on. */
export interface InboundPublish {
  client: MqttClient;
  topic: string;
  /**
   * A view of the received bytes, valid only during the call; undefined when too large to hand on (over
   * maxPayloadBytes, or topic and properties over 128 KiB).
   */
  payload: Buffer | undefined;
  /** The payload's size in bytes (also when it was skipped; with properties, when those were). */
  size: number;
  retain: boolean;
  qos: 0 | 1;
  /** 0 for QoS 0. */
  messageId: number;
}

/** Takes a PUBLISH; false holds the connection until the tap's proceed() is called. */
export type PublishSink = (p: InboundPublish, tap: MqttTap) => boolean;

export interface TapOptions {
  protocolVersion: 4 | 5;
  maxPayloadBytes: number;
  sink: PublishSink;
}

/** Wraps mqtt.js's stream builder so every connection it makes goes through a tap. */
export function tapStreamBuilder(client: MqttClient, opts: TapOptions): void {
  // mqtt.js calls `streamBuilder` for each connection it opens (MqttClient.connect()); not in its typings.
  const c = client as unknown as { streamBuilder: (c: MqttClient) => Duplex };
  const build = c.streamBuilder;
  c.streamBuilder = (cl: MqttClient) => new MqttTap(cl, build(cl), opts);
}

/** Error codes mqtt.js reports (it emits stream errors that carry a code). */
const MALFORMED = 'ERR_MQTT_MALFORMED';

function malformed(why: string): Error {
  return Object.assign(new Error(`malformed packet from the broker: ${why}`), { code: MALFORMED });
}

/**
 * What is read of a PUBLISH before its payload: topic (2 + 65,535 bytes), packet id and properties. A PUBLISH
 * whose topic and properties are longer (a publisher's user properties can be) is handed on as too large, its
 * properties and payload skipped unread like an oversized payload: the broker would send it again on every
 * connection if the tap ended the connection over it.
 */
const HEADER_MAX = 128 * 1024;
/** Packets other than PUBLISH (CONNACK, SUBACK, PINGRESP, DISCONNECT, AUTH): a few bytes to a few KiB. */
const CONTROL_MAX = 64 * 1024;

type Parsed = number | 'incomplete' | 'failed';

/** readVarint's answers besides a value: its bytes run past `end`; it is longer than four bytes. */
const INCOMPLETE = -1;
const TOO_LONG = -2;
/** Where the Variable Byte Integer readVarint read last ends. */
let varEnd = 0;

/** The Variable Byte Integer at `at` (MQTT 5 §1.5.5: 1–4 bytes of 7 bits), with `varEnd` set after it. */
function readVarint(buf: Buffer, at: number, end: number): number {
  let value = 0;
  let mul = 1;
  for (let p = at; p < end; ) {
    const b = buf[p++]!;
    value += (b & 0x7f) * mul;
    if (b < 0x80) {
      varEnd = p;
      return value;
    }
    mul *= 128;
    if (mul > 128 ** 3) return TOO_LONG;
  }
  return INCOMPLETE;
}

export class MqttTap extends Duplex {
  /** Received chunks that do not yet make a whole packet (joined once `need` bytes are here). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private need = 0;
  /** The owner holds the connection (ManualAcks at its bound). */
  private held = false;
  /** mqtt.js reads no more for now (its pipe is full). */
  private readFull = false;
  /** mqtt.js is disconnecting: nothing more is handed on. */
  private ending = false;
  /** Bytes still to pass to mqtt.js, of a packet whose start was passed. */
  private passLeft = 0;
  /** Bytes still to skip, of a PUBLISH too large to hand on. */
  private skipLeft = 0;

  constructor(
    private readonly client: MqttClient,
    private readonly inner: Duplex,
    private readonly opts: TapOptions,
  ) {
    super({ allowHalfOpen: false });
    inner.on('data', (chunk: Buffer) => this.receive(chunk));
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  /** Lets a held connection go on: what was received is handed on, then reading resumes. */
  readonly proceed = (): void => {
    if (!this.held || this.destroyed) return;
    this.held = false;
    this.parse();
    this.flow();
  };

  private flow(): void {
    if (this.held || this.readFull) this.inner.pause();
    else this.inner.resume();
  }

  override _read(): void {
    this.readFull = false;
    this.flow();
  }

  override _write(chunk: Buffer, enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.inner.write(chunk, enc, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.inner.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.inner.write(chunks[i]!.chunk);
    this.inner.write(chunks[chunks.length - 1]!.chunk, cb);
    this.inner.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    // mqtt.js has sent its DISCONNECT: nothing more is handed on (the broker keeps what it sends now for the
    // next connection), but the socket is read on to the broker's end, so that it closes — a held socket would
    // not read the broker's FIN, and mqtt.js would wait for 'close' forever.
    this.ending = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.held = false;
    this.readFull = false;
    this.inner.resume();
    this.inner.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.inner.destroy();
    cb(err);
  }

  private receive(chunk: Buffer): void {
    if (this.destroyed || this.ending) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // A packet known to need more than is here waits whole; chunks are joined once, not once per chunk.
    if (this.held || this.pendingBytes < this.need) return;
    this.parse();
    this.flow();
  }

  /** Hands on, or passes to mqtt.js, every whole packet received, until the owner holds the connection. */
  private parse(): void {
    if (this.pending.length === 0) return;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.need = 0;
    let i = 0;
    let pass = -1; // start of a run of bytes for mqtt.js
    const end = buf.length;
    while (i < end && !this.held && !this.destroyed && !this.ending) {
      if (this.passLeft > 0 || this.skipLeft > 0) {
        // The rest of a packet for mqtt.js, or of a PUBLISH too large to hand on: streamed, never buffered.
        const n = Math.min(this.passLeft || this.skipLeft, end - i);
        if (this.passLeft > 0) {
          if (pass < 0) pass = i;
          this.passLeft -= n;
        } else {
          this.skipLeft -= n;
        }
        i += n;
        continue;
      }
      // Fixed header: type and flags, then the remaining length.
      const len = readVarint(buf, i + 1, end);
      if (len === TOO_LONG) {
        this.fail('remaining length over four bytes');
        return;
      }
      if (len === INCOMPLETE) break; // the length is not all here yet
      const p = varEnd;
      const first = buf[i]!;
      const qos = (first >> 1) & 3;
      if (first >> 4 !== 3 || qos === 2) {
        // mqtt.js's, streamed to it as it arrives; mqtt-packet buffers a whole packet, so bounded here.
        const max = first >> 4 === 3 ? this.opts.maxPayloadBytes + HEADER_MAX : CONTROL_MAX;
        if (len > max) {
          this.fail(`${first >> 4 === 3 ? 'QoS 2 PUBLISH' : `packet type ${first >> 4}`} of ${len} bytes`);
          return;
        }
        this.passLeft = p - i + len;
        continue;
      }
      if (qos === 3) {
        this.fail('PUBLISH with QoS 3');
        return;
      }
      // A PUBLISH we hand on: whole, unless its payload is to be skipped (then its variable header suffices).
      const big = len > this.opts.maxPayloadBytes + HEADER_MAX;
      if (!big && p + len > end) {
        this.need = p + len - i;
        break;
      }
      if (pass >= 0) {
        this.pushOut(buf.subarray(pass, i));
        pass = -1;
      }
      const r = this.publish(buf, first, qos as 0 | 1, p, len, end);
      if (r === 'failed') return;
      if (r === 'incomplete') {
        this.need = 2 * (end - i); // its header is not all here: try again with twice as much
        break;
      }
      i = r;
    }
    if (pass >= 0) this.pushOut(buf.subarray(pass, i));
    if (i < end && !this.destroyed && !this.ending) {
      this.pending = [buf.subarray(i)];
      this.pendingBytes = end - i;
    }
  }

  private pushOut(bytes: Buffer): void {
    if (!this.push(bytes)) this.readFull = true;
  }

  /** Hands on the PUBLISH at `p` (after its fixed header); where the next packet starts, or why not. */
  private publish(buf: Buffer, first: number, qos: 0 | 1, p: number, len: number, end: number): Parsed {
    const stop = p + len;
    if (p + 2 > stop) return this.fail('PUBLISH without a topic');
    if (p + 2 > end) return 'incomplete';
    const topicLen = buf.readUInt16BE(p);
    let q = p + 2 + topicLen;
    if (q > stop) return this.fail('topic runs past its packet');
    if (q > end) return 'incomplete';
    if (topicLen === 0) return this.fail('PUBLISH with an empty topic'); // we never allow Topic Aliases
    let messageId = 0;
    if (qos === 1) {
      if (q + 2 > stop) return this.fail('QoS 1 PUBLISH without a packet id');
      if (q + 2 > end) return 'incomplete';
      messageId = buf.readUInt16BE(q);
      if (messageId === 0) return this.fail('packet id 0'); // MQTT-2.3.1-1
      q += 2;
    }
    let tooLarge = false;
    if (this.opts.protocolVersion === 5) {
      // Properties: a variable byte integer length, then the properties; we look for a Topic Alias only.
      const plen = readVarint(buf, q, Math.min(stop, end));
      if (plen === TOO_LONG) return this.fail('properties length over four bytes');
      if (plen === INCOMPLETE)
        return stop <= end ? this.fail('PUBLISH properties run past their packet') : 'incomplete';
      q = varEnd;
      if (q + plen > stop) return this.fail('PUBLISH properties run past their packet');
      if (q + plen - p > HEADER_MAX) {
        tooLarge = true; // not read: the owner is told of a message too large
      } else {
        if (q + plen > end) return 'incomplete';
        const why = checkProperties(buf, q, q + plen);
        if (why) return this.fail(why);
        q += plen;
      }
    }
    const topic = buf.toString('utf8', p + 2, p + 2 + topicLen);
    const size = stop - q;
    let payload: Buffer | undefined;
    if (tooLarge || size > this.opts.maxPayloadBytes) {
      if (stop > end) this.skipLeft = stop - end;
    } else {
      payload = buf.subarray(q, stop);
    }
    const go = this.opts.sink(
      { client: this.client, topic, payload, size, retain: (first & 1) === 1, qos, messageId },
      this,
    );
    if (!go) this.held = true;
    return Math.min(stop, end);
  }

  private fail(why: string): 'failed' {
    this.pending = [];
    this.pendingBytes = 0;
    this.destroy(malformed(why));
    return 'failed';
  }
}

/** Why a PUBLISH's properties are refused, or undefined (MQTT 5 §3.3.2.3). */
function checkProperties(buf: Buffer, at: number, end: number): string | undefined {
  let q = at;
  while (q < end) {
    const id = buf[q++]!;
    let n: number;
    switch (id) {
      case 0x01: // Payload Format Indicator
        n = 1;
        break;
      case 0x02: // Message Expiry Interval
        n = 4;
        break;
      case 0x23: // Topic Alias: only when we advertised a Topic Alias Maximum, which we never do
        return 'Topic Alias without a Topic Alias Maximum';
      case 0x03: // Content Type
      case 0x08: // Response Topic
      case 0x09: // Correlation Data
        if (q + 2 > end) return 'property runs past its properties';
        n = 2 + buf.readUInt16BE(q);
        break;
      case 0x26: {
        // User Property: two strings
        if (q + 2 > end) return 'property runs past its properties';
        const k = 2 + buf.readUInt16BE(q);
        if (q + k + 2 > end) return 'property runs past its properties';
        n = k + 2 + buf.readUInt16BE(q + k);
        break;
      }
      case 0x0b: {
        // Subscription Identifier: a variable byte integer
        const v = readVarint(buf, q, end);
        if (v === TOO_LONG) return 'subscription identifier over four bytes';
        if (v === INCOMPLETE) return 'property runs past its properties';
        n = varEnd - q;
        break;
      }
      default:
        return `property 0x${id.toString(16)} is not a PUBLISH property`;
    }
    q += n;
    if (q > end) return 'property runs past its properties';
  }
  return undefined;
}
