import { createSocket, type Socket } from 'node:dgram';
import { COLUMN, OID } from '../agents/snmp/oids.js';

/**
 * A lean simulated router for `bench:snmp`: an SNMPv2c responder on 127.0.0.1 that answers Get, GetNext and
 * GetBulk from a sorted, pre-encoded table (SNMPv2-MIB system scalars, IF-MIB ifTable and ifXTable), with octet
 * counters that grow with time so the poller computes real rates.
 *
 * Why not net-snmp's own agent (`dev/snmp-sim.ts`, which the tests use for scripted scenarios): it spends
 * ~4× the poller's CPU per interface answering a GetBulk (a MIB-tree walk per varbind), so on a 2-core machine
 * the benchmark measured the simulators, not the poller. A router's SNMP engine is C; this responder is the
 * closest cheap stand-in: a binary search per request and one BER encoding per varbind.
 *
 * Wire format: RFC 3416 (PDUs), RFC 1157 §4 / X.690 BER (definite lengths only), SMIv2 application types
 * (RFC 2578: Counter32 0x41, Gauge32 0x42, TimeTicks 0x43, Counter64 0x46). Anything else is dropped, as a
 * device drops what it cannot parse.
 */
export interface RouterOptions {
  ifaces: number;
  community?: string;
  /** Varies the names and counter bases between routers. */
  seed?: number;
}

const TAG = {
  integer: 0x02,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  sequence: 0x30,
  counter32: 0x41,
  gauge32: 0x42,
  timeTicks: 0x43,
  counter64: 0x46,
  noSuchObject: 0x80,
  noSuchInstance: 0x81,
  endOfMibView: 0x82,
  getRequest: 0xa0,
  getNextRequest: 0xa1,
  response: 0xa2,
  getBulkRequest: 0xa5,
} as const;

/** Largest response sent; a GetBulk answer is cut to whole varbinds below it (RFC 3416 §4.2.3). */
const MAX_RESPONSE_BYTES = 60_000;

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  if (n < 0x100) return [0x81, n];
  if (n < 0x10000) return [0x82, n >> 8, n & 0xff];
  return [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag, ...lengthBytes(content.length)]), content]);
}

/** A non-negative integer below 2^53 as BER content (two's complement, minimal, leading 0 if the top bit is set). */
function unsignedContent(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  do {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return Buffer.from(bytes);
}

function signedContent(value: number): Buffer {
  if (value >= 0) return unsignedContent(value);
  const bytes: number[] = [];
  let v = value;
  do {
    bytes.unshift(((v % 256) + 256) % 256);
    v = Math.floor(v / 256);
  } while (v < -1 || (v === -1 && !(bytes[0]! & 0x80)));
  return Buffer.from(bytes);
}

function oidContent(oid: readonly number[]): Buffer {
  const out: number[] = [oid[0]! * 40 + oid[1]!];
  for (let i = 2; i < oid.length; i++) {
    let v = oid[i]!;
    const chunk = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return Buffer.from(out);
}

const parseOid = (s: string): number[] => s.split('.').map(Number);

function compareOids(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

interface Entry {
  oid: number[];
  /** The encoded OID TLV: the first half of the varbind. */
  name: Buffer;
  /** The encoded value TLV, now. */
  value(nowS: number): Buffer;
}

/** A cursor over a BER buffer; throws on anything malformed (the packet is then dropped). */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos = 0,
  ) {}

  /** Reads a tag and length; returns the tag and leaves `pos` at the content, `end` after it. */
  header(): { tag: number; end: number } {
    const tag = this.byte();
    let len = this.byte();
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 3) throw new Error('unsupported length');
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + this.byte();
    }
    const end = this.pos + len;
    if (end > this.buf.length) throw new Error('truncated');
    return { tag, end };
  }

  expect(tag: number): number {
    const h = this.header();
    if (h.tag !== tag) throw new Error(`expected tag ${tag}, got ${h.tag}`);
    return h.end;
  }

  integer(): number {
    const end = this.expect(TAG.integer);
    if (end === this.pos || end - this.pos > 6) throw new Error('bad integer');
    let v = this.buf[this.pos]! & 0x80 ? -1 : 0;
    while (this.pos < end) v = v * 256 + this.buf[this.pos++]!;
    return v;
  }

  octets(): Buffer {
    const end = this.expect(TAG.octetString);
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }

  oid(): number[] {
    const end = this.expect(TAG.oid);
    if (end === this.pos) throw new Error('empty OID');
    const first = this.buf[this.pos++]!;
    const out = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
    let v = 0;
    while (this.pos < end) {
      const b = this.buf[this.pos++]!;
      v = v * 128 + (b & 0x7f);
      if (!(b & 0x80)) {
        out.push(v);
        v = 0;
      }
    }
    return out;
  }

  skip(end: number): void {
    this.pos = end;
  }

  private byte(): number {
    if (this.pos >= this.buf.length) throw new Error('truncated');
    return this.buf[this.pos++]!;
  }
}

export class SimRouter {
  port = 0;
  /** Requests answered. */
  answered = 0;
  /** Packets dropped (wrong community, unsupported version or PDU, malformed). */
  dropped = 0;
  private socket: Socket | undefined;
  private readonly entries: Entry[] = [];
  private readonly byKey = new Map<string, number>();
  private readonly community: Buffer;
  private readonly started = performance.now();

  constructor(opts: RouterOptions) {
    this.community = Buffer.from(opts.community ?? 'public');
    const seed = opts.seed ?? 0;
    const uptime0 = 100_000 + seed * 1_000; // ticks at start
    const ticks = (nowS: number) =>
      tlv(TAG.timeTicks, unsignedContent((uptime0 + Math.floor(nowS * 100)) % 2 ** 32));
    const fixed = (b: Buffer) => () => b;
    const add = (oid: string, value: (nowS: number) => Buffer) =>
      this.entries.push({ oid: parseOid(oid), name: tlv(TAG.oid, oidContent(parseOid(oid))), value });

    add(OID.sysDescr, fixed(tlv(TAG.octetString, Buffer.from(`bench router ${seed}`))));
    add(OID.sysUpTime, ticks);
    add(OID.sysName, fixed(tlv(TAG.octetString, Buffer.from(`rtr-${seed}`))));
    for (let i = 1; i <= opts.ifaces; i++) {
      // Interface 1 is the busy uplink; the access ports carry a little traffic each.
      const inBps = i === 1 ? 80_000_000 : 1_000_000 + i * 10_000;
      const outBps = i === 1 ? 20_000_000 : 500_000 + i * 5_000;
      const inBase = 1_000_000_000 * (seed + 1) + i;
      const outBase = 2_000_000_000 * (seed + 1) + i;
      const inOctets = (nowS: number) => inBase + Math.floor((nowS * inBps) / 8);
      const outOctets = (nowS: number) => outBase + Math.floor((nowS * outBps) / 8);
      const name = `GigabitEthernet0/0/${i}`;
      const col = (c: string) => `${c}.${i}`;
      const int = (tag: number, v: number) => fixed(tlv(tag, signedContent(v)));
      const str = (s: string) => fixed(tlv(TAG.octetString, Buffer.from(s)));
      add(col('1.3.6.1.2.1.2.2.1.1'), int(TAG.integer, i)); // IF-MIB::ifIndex
      add(col(COLUMN.ifDescr), str(name));
      add(col(COLUMN.ifSpeed), int(TAG.gauge32, 1_000_000_000));
      add(col(COLUMN.ifOperStatus), int(TAG.integer, 1));
      add(col(COLUMN.ifInOctets), (s) => tlv(TAG.counter32, unsignedContent(inOctets(s) % 2 ** 32)));
      add(col(COLUMN.ifInDiscards), int(TAG.counter32, 0));
      add(col(COLUMN.ifInErrors), int(TAG.counter32, 0));
      add(col(COLUMN.ifOutOctets), (s) => tlv(TAG.counter32, unsignedContent(outOctets(s) % 2 ** 32)));
      add(col(COLUMN.ifOutErrors), int(TAG.counter32, 0));
      add(col(COLUMN.ifName), str(name));
      add(col(COLUMN.ifHCInOctets), (s) => tlv(TAG.counter64, unsignedContent(inOctets(s))));
      add(col(COLUMN.ifHCOutOctets), (s) => tlv(TAG.counter64, unsignedContent(outOctets(s))));
      add(col(COLUMN.ifHighSpeed), int(TAG.gauge32, 1_000));
      add(col(COLUMN.ifAlias), str(i === 1 ? 'uplink' : `access ${i}`));
      add(col(COLUMN.ifCounterDiscontinuityTime), int(TAG.timeTicks, 0));
    }
    this.entries.sort((a, b) => compareOids(a.oid, b.oid));
    for (const [k, e] of this.entries.entries()) this.byKey.set(e.oid.join('.'), k);
  }

  async start(): Promise<this> {
    const socket = createSocket('udp4');
    socket.on('message', (msg, rinfo) => {
      const out = this.answer(msg);
      if (out) socket.send(out, rinfo.port, rinfo.address);
      else this.dropped++;
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.socket = socket;
    this.port = socket.address().port;
    return this;
  }

  async stop(): Promise<void> {
    const s = this.socket;
    this.socket = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** The response to one request datagram, or undefined to drop it. */
  answer(msg: Buffer): Buffer | undefined {
    try {
      const r = new Reader(msg);
      r.expect(TAG.sequence);
      const version = r.integer();
      if (version !== 1) return undefined; // SNMPv2c only
      if (!r.octets().equals(this.community)) return undefined;
      const pdu = r.header();
      const requestId = r.integer();
      const a = r.integer(); // error-status, or non-repeaters for GetBulk
      const b = r.integer(); // error-index, or max-repetitions
      const listEnd = r.expect(TAG.sequence);
      const oids: number[][] = [];
      while (r.pos < listEnd) {
        const vbEnd = r.expect(TAG.sequence);
        oids.push(r.oid());
        r.skip(vbEnd);
      }
      const nowS = (performance.now() - this.started) / 1000;
      let varbinds: Buffer[];
      if (pdu.tag === TAG.getRequest) varbinds = oids.map((o) => this.get(o, nowS));
      else if (pdu.tag === TAG.getNextRequest) varbinds = oids.map((o) => this.next(this.after(o), o, nowS));
      else if (pdu.tag === TAG.getBulkRequest)
        varbinds = this.bulk(oids, Math.max(0, a), Math.max(0, b), nowS);
      else return undefined;
      this.answered++;
      const body = Buffer.concat([
        tlv(TAG.integer, signedContent(requestId)),
        tlv(TAG.integer, signedContent(0)),
        tlv(TAG.integer, signedContent(0)),
        tlv(TAG.sequence, Buffer.concat(varbinds)),
      ]);
      return tlv(
        TAG.sequence,
        Buffer.concat([
          tlv(TAG.integer, signedContent(1)),
          tlv(TAG.octetString, this.community),
          tlv(TAG.response, body),
        ]),
      );
    } catch {
      return undefined;
    }
  }

  /** Index of the first entry after `oid` (lexicographic). */
  private after(oid: readonly number[]): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareOids(this.entries[mid]!.oid, oid) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private varbind(name: Buffer, value: Buffer): Buffer {
    return tlv(TAG.sequence, Buffer.concat([name, value]));
  }

  private get(oid: readonly number[], nowS: number): Buffer {
    const k = this.byKey.get(oid.join('.'));
    const name = tlv(TAG.oid, oidContent(oid));
    if (k === undefined) return this.varbind(name, Buffer.from([TAG.noSuchInstance, 0]));
    return this.varbind(name, this.entries[k]!.value(nowS));
  }

  private next(k: number, asked: readonly number[], nowS: number): Buffer {
    const e = this.entries[k];
    if (!e) return this.varbind(tlv(TAG.oid, oidContent(asked)), Buffer.from([TAG.endOfMibView, 0]));
    return this.varbind(e.name, e.value(nowS));
  }

  /** RFC 3416 §4.2.3: non-repeaters get one successor each, the rest up to max-repetitions, cut to size. */
  private bulk(oids: number[][], nonRepeaters: number, maxRepetitions: number, nowS: number): Buffer[] {
    const n = Math.min(nonRepeaters, oids.length);
    const out = oids.slice(0, n).map((o) => this.next(this.after(o), o, nowS));
    const repeaters = oids.slice(n);
    const cursors = repeaters.map((o) => this.after(o));
    let size = out.reduce((s, b) => s + b.length, 0);
    for (let rep = 0; rep < maxRepetitions && repeaters.length > 0; rep++) {
      const row: Buffer[] = [];
      let rowSize = 0;
      for (let j = 0; j < repeaters.length; j++) {
        const vb = this.next(cursors[j]!, repeaters[j]!, nowS);
        cursors[j]!++;
        row.push(vb);
        rowSize += vb.length;
      }
      if (size + rowSize > MAX_RESPONSE_BYTES) break;
      out.push(...row);
      size += rowSize;
      if (cursors.every((c) => c > this.entries.length)) break; // every column at the end of the MIB
    }
    return out;
  }
}
