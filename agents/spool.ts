/**
 * Spool: a bounded, crash-safe, on-disk FIFO queue for the agent's store-and-forward. While the broker is
 * unreachable the agent appends outgoing messages; after reconnecting it replays them in order with
 * `peek(n)` → publish → `ack(n)` once the broker acknowledged them (at-least-once: a crash between publish
 * and ack replays those entries again, never loses them).
 *
 * On disk (`dir`):
 * - `NNNNNNNNNN.jsonl` segment files, zero-padded increasing sequence numbers, one JSON object per line
 *   (`{"topic":…,"payload":…,"qos":0|1,"retain"?:…}` + `\n`). Segments are append-only: the spool never
 *   rewrites or truncates a byte it wrote, it only appends to the newest segment and deletes whole files.
 *   A new segment is started when the next line would take the current one past `segmentBytes`, so a
 *   segment is at most max(segmentBytes, one line) bytes.
 * - `head.json` `{"segment":N,"offset":B}`: the first unacked entry. Written atomically (tmp file + rename)
 *   on every ack and whenever segments are dropped for space. Everything before the head is acked and is
 *   never replayed. The head is written *before* finished segment files are deleted, so a crash in between
 *   leaves only stale files older than the head, which `open()` deletes.
 *
 * In memory: per segment, the byte range of each valid entry (no payloads), so `peek` reads exactly the
 * bytes it returns and `ack` moves the head without reading.
 *
 * `open()` recovers: lists the segments, reads the head, deletes segments before it, then scans each
 * remaining segment from the head onwards. A line is an entry only if it ends in `\n`, parses as JSON and
 * has the shape of a `SpoolEntry`; anything else (garbage, a wrong shape, a torn last line with no
 * newline left by a kill mid-write) is skipped and counted in `corruptSkipped`. A missing or unreadable
 * head replays every segment from its start (duplicates rather than loss).
 *
 * Torn tail policy: a segment whose last line has no newline is sealed and the next append starts a NEW
 * segment; the torn bytes stay where they are (nothing is truncated) and are skipped again by a later
 * `open()` until the head passes them and the file is deleted. `corruptSkipped` counts what this
 * instance's scans skipped, so the same torn line is counted again after a restart.
 *
 * Bound: after every successful `append`, the total size of all segment files is ≤ `maxBytes`. Messages are
 * dropped one at a time, oldest first, never a whole segment or the whole queue at once: the queued entries
 * (their lines) may fill `maxBytes` minus one segment, and the one segment kept free covers the bytes of the
 * first segment that were already acked or dropped but cannot be freed until the whole file is deleted
 * (segments are append-only). Segments are at most `segmentBytes` and at most `maxBytes / 16`, so a small
 * `maxBytes` (even one below `segmentBytes`) gets smaller segments rather than a queue that holds one
 * segment; the room for entries is then at least 15/16 of `maxBytes`. Before writing, the oldest queued
 * entries are dropped until the new line fits (a drop moves the head, exactly as an ack does, and a segment
 * with nothing left is deleted); lines skipped as corrupt still count against `maxBytes`, and may make more
 * entries go. Dropped entries are counted in `droppedOldest`. A full spool never throws; only a single entry
 * larger than the room for entries is refused (RangeError), since no amount of dropping makes it fit.
 *
 * `ack(n)` after drops: the consumer acks the entries it peeked. If segments were dropped for space
 * between its `peek` and its `ack`, some of those entries are already gone, and removing "the oldest n"
 * would silently remove entries that were never published. So after a `peek`, `ack(n)` removes the entries
 * up to (the position of that peek's first entry + n), counting from the consumer's view of the queue;
 * without drops in between that is exactly the oldest n. A consumer that never peeks gets the oldest n.
 *
 * Durability: `append` resolves after the line is written to the file (the OS has it: it survives a crash
 * of this process). With `fsync: true` the file is also fsync'ed (fdatasync) after each append, the head
 * file before its rename, and the directory after a segment is created or the head renamed, so it also
 * survives power loss.
 *
 * All operations are serialised in call order, so concurrent `append` calls keep their call order.
 */
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';

export interface SpoolEntry {
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain?: boolean;
}

export interface SpoolOptions {
  /** Directory of the segment files and the head file; created if missing. */
  dir: string;
  /** Bound on the total size of all segment files. Default 64 MiB. */
  maxBytes?: number;
  /**
   * A segment file is closed when the next line would take it past this size. Default 1 MiB; never more than
   * `maxBytes / 16` (see "Bound" above).
   */
  segmentBytes?: number;
  /** fsync after each append, and the head file and directory on changes. Default false. */
  fsync?: boolean;
}

export interface SpoolStats {
  /** Entries queued (appended, not yet acked or dropped). */
  queued: number;
  /** Bytes of the queued entries' lines, newlines included. */
  queuedBytes: number;
  appended: number;
  acked: number;
  /** Queued entries dropped, oldest first, to make room for newer ones within `maxBytes`. */
  droppedOldest: number;
  /** Lines skipped by `open()`: torn, unparsable or of the wrong shape. */
  corruptSkipped: number;
}

const MIB = 1024 * 1024;
/** Segments are at most maxBytes / this, so the segment kept free for dead bytes is a small share of the bound. */
const MIN_SEGMENTS = 16;
const HEAD_FILE = 'head.json';
const SEGMENT_FILE = /^(\d{10})\.jsonl$/;
const NEWLINE = 0x0a;

interface Head {
  segment: number;
  offset: number;
}

interface Segment {
  seq: number;
  path: string;
  /** Size of the file, including acked, corrupt and torn bytes. */
  sizeBytes: number;
  /** Byte offset of the start of each valid entry's line… */
  starts: number[];
  /** …and just past its newline. */
  ends: number[];
  /** Index in starts/ends of the first entry not yet acked. */
  first: number;
  /** Never appended to again: its tail is torn, or a write to it failed. */
  sealed: boolean;
}

export class Spool {
  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  /** Room for queued entries' lines: maxBytes less one segment (see "Bound" above). */
  private readonly capacityBytes: number;
  private readonly fsync: boolean;

  private opened = false;
  private segments: Segment[] = [];
  private nextSeq = 1;
  private writer: { segment: Segment; handle: FileHandle } | undefined;
  private diskBytes = 0;
  private queued = 0;
  private queuedBytes = 0;
  private appended = 0;
  private acked = 0;
  private droppedOldest = 0;
  private corruptSkipped = 0;
  /** Position (in acked + dropped) of the first entry the consumer has not acked, as of its last peek. */
  private cursor: number | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(opts: SpoolOptions) {
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes ?? 64 * MIB;
    this.segmentBytes = Math.max(
      1,
      Math.min(opts.segmentBytes ?? MIB, Math.floor(this.maxBytes / MIN_SEGMENTS)),
    );
    this.capacityBytes = this.maxBytes - this.segmentBytes;
    this.fsync = opts.fsync ?? false;
  }

  /** The bounds in effect: `segmentBytes` after the cap of `maxBytes / 16`, and the room for entries. */
  get limits(): { maxBytes: number; segmentBytes: number; capacityBytes: number } {
    return { maxBytes: this.maxBytes, segmentBytes: this.segmentBytes, capacityBytes: this.capacityBytes };
  }

  open(): Promise<void> {
    return this.serial(async () => {
      if (this.opened) throw new Error(`spool ${this.dir} is already open`);
      for (const [name, value] of [
        ['maxBytes', this.maxBytes],
        ['segmentBytes', this.segmentBytes],
      ] as const) {
        if (!Number.isSafeInteger(value) || value <= 0) {
          throw new RangeError(`spool ${name} must be a positive integer, got ${value}`);
        }
      }
      this.segments = [];
      this.diskBytes = 0;
      this.queued = 0;
      this.queuedBytes = 0;
      this.cursor = undefined;

      await mkdir(this.dir, { recursive: true });
      const seqs = (await readdir(this.dir))
        .flatMap((name) => {
          const m = SEGMENT_FILE.exec(name);
          return m ? [Number(m[1])] : [];
        })
        .sort((a, b) => a - b);
      const head = await this.readHead();
      const headSeq = head?.segment ?? seqs[0] ?? 1;
      this.nextSeq = Math.max(headSeq, (seqs.at(-1) ?? 0) + 1);
      for (const seq of seqs) {
        const path = join(this.dir, segmentName(seq));
        // Acked: its deletion was interrupted after the head had moved past it.
        if (seq < headSeq) await rm(path, { force: true });
        else {
          const data = await readFile(path);
          const from = seq === head?.segment ? Math.min(head.offset, data.length) : 0;
          this.segments.push(this.scan(seq, path, data, from));
        }
      }
      // Also rewrites a missing or stale head, so a later segment with a reused number can never be misread.
      await this.retire(this.shiftFinished());
      this.opened = true;
    });
  }

  append(entry: SpoolEntry): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      const valid = toEntry(entry);
      if (!valid) {
        throw new TypeError('spool entry needs topic: string, payload: string, qos: 0 | 1, retain?: boolean');
      }
      const line = Buffer.from(`${JSON.stringify(valid)}\n`);
      if (line.length > this.capacityBytes) {
        throw new RangeError(
          `spool entry of ${line.length} bytes exceeds the spool's room for entries, ${this.capacityBytes} bytes ` +
            `(maxBytes ${this.maxBytes} less one segment)`,
        );
      }
      await this.makeRoom(line.length);
      const target = this.appendTarget(line.length) ?? (await this.createSegment());
      await this.write(target, line);
    });
  }

  /**
   * Drops queued entries, oldest first and one at a time, until a line of `lineBytes` fits both the room for
   * entries and `maxBytes` on disk; then persists the head and deletes segments left empty (see "Bound").
   */
  private async makeRoom(lineBytes: number): Promise<void> {
    const done: Segment[] = [];
    let freedBytes = 0;
    let dropped = 0;
    const shift = () => {
      for (const finished of this.shiftFinished()) {
        done.push(finished);
        freedBytes += finished.sizeBytes;
      }
    };
    while (
      this.queued > 0 &&
      (this.queuedBytes + lineBytes > this.capacityBytes ||
        this.diskBytes - freedBytes + lineBytes > this.maxBytes)
    ) {
      shift(); // a segment left with no entry (a failed write) is never the one to drop from
      const seg = this.segments[0]!;
      this.queuedBytes -= seg.ends[seg.first]! - seg.starts[seg.first]!;
      seg.first++;
      this.queued--;
      this.droppedOldest++;
      dropped++;
      shift();
    }
    if (dropped > 0) await this.retire(done);
  }

  peek(max: number): Promise<SpoolEntry[]> {
    return this.serial(async () => {
      this.assertOpen();
      if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`peek needs a count ≥ 0, got ${max}`);
      const out: SpoolEntry[] = [];
      for (const seg of this.segments) {
        const to = Math.min(seg.starts.length, seg.first + max - out.length);
        if (to > seg.first) for (const e of await readEntries(seg, seg.first, to)) out.push(e);
        if (out.length >= max) break;
      }
      this.cursor = this.acked + this.droppedOldest;
      return out;
    });
  }

  ack(n: number): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`ack needs a count ≥ 0, got ${n}`);
      // See "ack(n) after drops" above: entries dropped since the peek are not acked a second time.
      const removed = this.acked + this.droppedOldest;
      const count = this.cursor === undefined ? n : Math.max(0, this.cursor + n - removed);
      if (count > this.queued) throw new RangeError(`cannot ack ${n} entries: ${this.queued} queued`);
      if (this.cursor !== undefined) this.cursor += n;
      let left = count;
      for (const seg of this.segments) {
        for (; left > 0 && seg.first < seg.starts.length; left--, seg.first++) {
          this.queuedBytes -= seg.ends[seg.first]! - seg.starts[seg.first]!;
        }
        if (left === 0) break;
      }
      this.queued -= count;
      this.acked += count;
      if (count > 0) await this.retire(this.shiftFinished());
    });
  }

  get size(): number {
    return this.queued;
  }

  stats(): SpoolStats {
    return {
      queued: this.queued,
      queuedBytes: this.queuedBytes,
      appended: this.appended,
      acked: this.acked,
      droppedOldest: this.droppedOldest,
      corruptSkipped: this.corruptSkipped,
    };
  }

  close(): Promise<void> {
    return this.serial(async () => {
      await this.closeWriter();
      this.opened = false;
    });
  }

  /** Runs operations one at a time in call order; a failed one does not stop the next. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private assertOpen(): void {
    if (!this.opened) throw new Error(`spool ${this.dir} is not open`);
  }

  /** Indexes the valid entries of one segment file from byte `from` on, counting what is skipped. */
  private scan(seq: number, path: string, data: Buffer, from: number): Segment {
    const seg: Segment = { seq, path, sizeBytes: data.length, starts: [], ends: [], first: 0, sealed: false };
    this.diskBytes += data.length;
    for (let pos = from; pos < data.length; ) {
      const nl = data.indexOf(NEWLINE, pos);
      if (nl === -1) {
        // Torn tail: the process died mid-write. Never append after it (the next line would join it).
        this.corruptSkipped++;
        seg.sealed = true;
        break;
      }
      if (parseLine(data.toString('utf8', pos, nl))) {
        seg.starts.push(pos);
        seg.ends.push(nl + 1);
        this.queued++;
        this.queuedBytes += nl + 1 - pos;
      } else {
        this.corruptSkipped++;
      }
      pos = nl + 1;
    }
    return seg;
  }

  /** The newest segment if the line may go into it, else undefined (a new segment is needed). */
  private appendTarget(lineBytes: number): Segment | undefined {
    const last = this.segments.at(-1);
    if (!last || last.sealed) return undefined;
    if (last.sizeBytes > 0 && last.sizeBytes + lineBytes > this.segmentBytes) return undefined;
    return last;
  }

  /** Removes leading segments with nothing left to replay (fully acked, or only corrupt lines). */
  private shiftFinished(): Segment[] {
    const done: Segment[] = [];
    while (this.segments[0] && this.segments[0].first === this.segments[0].starts.length) {
      done.push(this.segments.shift()!);
    }
    return done;
  }

  /** Persists the head, then deletes segments already removed from `segments` (in that order: see top). */
  private async retire(done: Segment[]): Promise<void> {
    await this.writeHead();
    for (const seg of done) {
      if (this.writer?.segment === seg) await this.closeWriter();
      this.diskBytes -= seg.sizeBytes;
      await rm(seg.path, { force: true });
    }
  }

  private async writeHead(): Promise<void> {
    const first = this.segments[0];
    // A first segment with no valid entry left (only corrupt lines) may still be appended to: its head
    // is its current end, which is ≤ the start of anything appended later.
    const head: Head = first
      ? { segment: first.seq, offset: first.starts[first.first] ?? first.sizeBytes }
      : { segment: this.nextSeq, offset: 0 };
    const tmp = join(this.dir, `${HEAD_FILE}.tmp`);
    const text = `${JSON.stringify(head)}\n`;
    if (this.fsync) {
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } else {
      await writeFile(tmp, text);
    }
    await rename(tmp, join(this.dir, HEAD_FILE));
    if (this.fsync) await syncDir(this.dir);
  }

  private async readHead(): Promise<Head | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.dir, HEAD_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const v = JSON.parse(text) as Partial<Head>;
      if (Number.isSafeInteger(v.segment) && Number.isSafeInteger(v.offset) && v.offset! >= 0) {
        return { segment: v.segment!, offset: v.offset! };
      }
    } catch {
      // fall through: an unreadable head replays everything (at-least-once)
    }
    return undefined;
  }

  private async createSegment(): Promise<Segment> {
    await this.closeWriter();
    const seq = this.nextSeq++;
    const path = join(this.dir, segmentName(seq));
    // 'ax': append, and fail rather than append to a file whose bytes are not indexed.
    const handle = await open(path, 'ax');
    if (this.fsync) await syncDir(this.dir);
    const seg: Segment = { seq, path, sizeBytes: 0, starts: [], ends: [], first: 0, sealed: false };
    this.segments.push(seg);
    this.writer = { segment: seg, handle };
    return seg;
  }

  private async write(seg: Segment, line: Buffer): Promise<void> {
    if (this.writer?.segment !== seg) {
      await this.closeWriter();
      this.writer = { segment: seg, handle: await open(seg.path, 'a') };
    }
    try {
      await this.writer.handle.appendFile(line);
      if (this.fsync) await this.writer.handle.datasync();
    } catch (err) {
      // The file may now end in part of this line: never append after it, and account for what is there.
      seg.sealed = true;
      await this.closeWriter().catch(() => undefined);
      const actual = await stat(seg.path).then(
        (s) => s.size,
        () => seg.sizeBytes,
      );
      this.diskBytes += actual - seg.sizeBytes;
      seg.sizeBytes = actual;
      throw err;
    }
    seg.starts.push(seg.sizeBytes);
    seg.sizeBytes += line.length;
    seg.ends.push(seg.sizeBytes);
    this.diskBytes += line.length;
    this.queued++;
    this.queuedBytes += line.length;
    this.appended++;
  }

  private async closeWriter(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    await w?.handle.close();
  }
}

function segmentName(seq: number): string {
  return `${String(seq).padStart(10, '0')}.jsonl`;
}

/** The entry with only its known fields, or undefined if `value` does not have the shape of one. */
function toEntry(value: unknown): SpoolEntry | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.topic !== 'string' || typeof v.payload !== 'string') return undefined;
  if (v.qos !== 0 && v.qos !== 1) return undefined;
  if (v.retain !== undefined && typeof v.retain !== 'boolean') return undefined;
  const entry: SpoolEntry = { topic: v.topic, payload: v.payload, qos: v.qos };
  if (v.retain !== undefined) entry.retain = v.retain;
  return entry;
}

function parseLine(text: string): SpoolEntry | undefined {
  try {
    return toEntry(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/** Reads entries [from, to) of a segment with one read of exactly their byte range. */
async function readEntries(seg: Segment, from: number, to: number): Promise<SpoolEntry[]> {
  const base = seg.starts[from]!;
  const buf = Buffer.alloc(seg.ends[to - 1]! - base);
  const fh = await open(seg.path, 'r');
  try {
    for (let got = 0; got < buf.length; ) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, base + got);
      if (bytesRead === 0) throw new Error(`spool segment ${seg.path} was truncated by something else`);
      got += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const entries: SpoolEntry[] = [];
  for (let i = from; i < to; i++) {
    // Every indexed line was validated when written or recovered; only an outside edit can fail here.
    const entry = parseLine(buf.toString('utf8', seg.starts[i]! - base, seg.ends[i]! - 1 - base));
    if (!entry) {
      throw new Error(`spool segment ${seg.path} was changed at byte ${seg.starts[i]} by something else`);
    }
    entries.push(entry);
  }
  return entries;
}

/** Makes a created or renamed directory entry durable (POSIX: fsync the directory); a no-op where unsupported. */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Windows cannot open or fsync a directory; rename is durable there without it.
  }
}
