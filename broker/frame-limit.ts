import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/**
 * A transport-level limit on MQTT packet size. aedes (like the MQTT spec) accepts packets up to 256 MB and
 * buffers a packet whole before any hook sees it, so a payload limit in `authorizePublish` alone would still
 * let one client make the broker allocate 256 MB. This reads only the fixed header of every packet as bytes
 * arrive — type byte, then the Remaining Length varint (MQTT 3.1.1 §2.2.3: 1–4 bytes, 7 bits each, high bit =
 * continuation) — and cuts the connection as soon as a packet declares more than the limit.
 */
export class MqttFrameMeter {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private remaining = 0;

  constructor(readonly maxPacketBytes: number) {}

  /**
   * Returns an error text when the stream breaks the limit or the encoding, undefined while all is well.
   * The limit applies to the Remaining Length (variable header + payload), not the 2–5 byte fixed header.
   */
  feed(chunk: Uint8Array): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      switch (this.state) {
        case 'type':
          i++;
          this.state = 'length';
          this.length = 0;
          this.multiplier = 1;
          this.lengthBytes = 0;
          break;
        case 'length': {
          const b = chunk[i++]!;
          this.length += (b & 0x7f) * this.multiplier;
          this.multiplier *= 128;
          this.lengthBytes++;
          if (b & 0x80) {
            if (this.lengthBytes >= 4) return 'malformed Remaining Length (more than 4 bytes)';
            break;
          }
          if (this.length > this.maxPacketBytes) {
            return `packet of ${this.length} bytes exceeds maxPacketBytes ${this.maxPacketBytes}`;
          }
          this.remaining = this.length;
          this.state = this.remaining === 0 ? 'type' : 'body';
          break;
        }
        case 'body': {
          const n = Math.min(this.remaining, chunk.length - i);
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = 'type';
          break;
        }
      }
    }
    return undefined;
  }
}

/** The socket as aedes sees it, with every inbound byte metered first. */
export class FrameLimitedConnection extends Duplex {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;

  constructor(
    private readonly socket: Socket,
    maxPacketBytes: number,
    onViolation: (why: string) => void,
  ) {
    super();
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    const meter = new MqttFrameMeter(maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const why = meter.feed(chunk);
      if (why) {
        onViolation(why);
        this.destroy(new Error(why));
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }

  setKeepAlive(enable?: boolean, delayMs?: number): this {
    this.socket.setKeepAlive(enable, delayMs);
    return this;
  }
}

/** Token bucket: `ratePerSec` sustained, `burst` at once. */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSec);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
