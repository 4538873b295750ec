import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Spool, type SpoolEntry, type SpoolOptions } from '../../agents/spool.js';

let dir: string;
let spools: Spool[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-spool-'));
  spools = [];
});

afterEach(async () => {
  for (const s of spools) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Entry i; its line has the same length for every i < 1,000,000 (fixed-width payload, one-digit qos). */
function entry(i: number): SpoolEntry {
  return { topic: 'cfm/v1/s001/d01/telemetry', payload: `{"seq":${String(i).padStart(6, '0')}}`, qos: 1 };
}

function range(from: number, to: number): SpoolEntry[] {
  return Array.from({ length: to - from }, (_, k) => entry(from + k));
}

/** Bytes of one entry's line on disk, newline included. */
const LINE_BYTES = Buffer.byteLength(`${JSON.stringify(entry(0))}\n`);

async function openSpool(opts: Partial<SpoolOptions> = {}): Promise<Spool> {
  const s = new Spool({ dir, ...opts });
  spools.push(s);
  await s.open();
  return s;
}

async function appendAll(s: Spool, entries: SpoolEntry[]): Promise<void> {
  for (const e of entries) await s.append(e);
}

function segmentFiles(): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort();
}

function segmentDiskBytes(): number {
  return segmentFiles().reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
}

function lastSegment(): string {
  return join(dir, segmentFiles().at(-1)!);
}

describe('Spool', () => {
  it('creates its directory and keeps FIFO order across several segments', async () => {
    const nested = join(dir, 'nested', 'spool');
    const s = new Spool({ dir: nested, segmentBytes: 4 * LINE_BYTES });
    spools.push(s);
    await s.open();
    await appendAll(s, range(0, 30));

    const files = readdirSync(nested).filter((f) => f.endsWith('.jsonl'));
    expect(files).toHaveLength(8); // 7 segments of 4 lines + one of 2
    for (const f of files) expect(statSync(join(nested, f)).size).toBeLessThanOrEqual(4 * LINE_BYTES);
    expect(files[0]).toBe('0000000001.jsonl');
    expect(await s.peek(30)).toEqual(range(0, 30));
    expect(s.size).toBe(30);
    expect(s.stats()).toEqual({
      queued: 30,
      queuedBytes: 30 * LINE_BYTES,
      appended: 30,
      acked: 0,
      droppedOldest: 0,
      corruptSkipped: 0,
    });
  });

  it('peek does not remove', async () => {
    const s = await openSpool();
    await appendAll(s, range(0, 10));

    expect(await s.peek(3)).toEqual(range(0, 3));
    expect(await s.peek(3)).toEqual(range(0, 3));
    expect(await s.peek(0)).toEqual([]);
    expect(await s.peek(100)).toEqual(range(0, 10));
    expect(s.size).toBe(10);
  });

  it('ack removes the oldest entries and deletes finished segment files', async () => {
    const s = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    await appendAll(s, range(0, 10)); // segments of 4, 4, 2
    const [first, second] = segmentFiles();

    await s.ack(3);
    expect(segmentFiles()).toHaveLength(3); // the first segment still holds entry 3
    await s.ack(2);
    expect(segmentFiles()).toHaveLength(2);
    expect(existsSync(join(dir, first!))).toBe(false);
    expect(existsSync(join(dir, second!))).toBe(true);
    expect(await s.peek(2)).toEqual(range(5, 7));
    expect(s.stats()).toMatchObject({ queued: 5, queuedBytes: 5 * LINE_BYTES, acked: 5 });

    await s.ack(5);
    expect(s.size).toBe(0);
    expect(segmentFiles()).toEqual([]);
    expect(await s.peek(10)).toEqual([]);

    await s.append(entry(10)); // a drained spool starts a new segment
    expect(await s.peek(10)).toEqual([entry(10)]);
    expect(segmentFiles()).toHaveLength(1);
    expect(segmentFiles()[0]! > second!).toBe(true);
  });

  it('keeps entries and the head across close and open', async () => {
    const a = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    await appendAll(a, range(0, 20));
    await a.close();

    const b = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    expect(b.size).toBe(20);
    expect(await b.peek(20)).toEqual(range(0, 20));
    await b.ack(7); // ends in the middle of the second segment
    await b.close();

    const c = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    expect(c.size).toBe(13);
    expect(c.stats()).toEqual({
      queued: 13,
      queuedBytes: 13 * LINE_BYTES,
      appended: 0,
      acked: 0,
      droppedOldest: 0,
      corruptSkipped: 0,
    });
    expect(await c.peek(100)).toEqual(range(7, 20));
    await appendAll(c, range(20, 25));
    expect(await c.peek(100)).toEqual(range(7, 25));
    await c.close();

    const d = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    expect(await d.peek(100)).toEqual(range(7, 25));
  });

  it('deletes segments left behind by a crash between moving the head and deleting them', async () => {
    const s = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    await appendAll(s, range(0, 10));
    const first = join(dir, segmentFiles()[0]!);
    const saved = join(dir, 'saved');
    copyFileSync(first, saved);
    await s.ack(5);
    await s.close();
    copyFileSync(saved, first); // as if the process died after writing the head, before the unlink
    rmSync(saved);

    const t = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    expect(existsSync(first)).toBe(false);
    expect(t.size).toBe(5);
    expect(await t.peek(100)).toEqual(range(5, 10));
  });

  it('replays from the first segment when the head file is lost (duplicates, never loss)', async () => {
    const s = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    await appendAll(s, range(0, 10));
    await s.ack(2);
    await s.close();
    rmSync(join(dir, 'head.json'));

    const t = await openSpool({ segmentBytes: 4 * LINE_BYTES });
    expect(await t.peek(100)).toEqual(range(0, 10));
  });

  it('stays within maxBytes by dropping the oldest entries one at a time', async () => {
    // Exact bound: after every append the segment files total ≤ maxBytes (no extra allowance).
    const maxBytes = 64 * LINE_BYTES + 7; // not a multiple of the line or segment size
    const segmentBytes = 3 * LINE_BYTES;
    const s = await openSpool({ maxBytes, segmentBytes });
    // One segment (3 lines) is kept free for bytes acked but not yet deletable: room for 61 entries.
    expect(s.limits).toEqual({ maxBytes, segmentBytes, capacityBytes: 61 * LINE_BYTES + 7 });
    const n = 200;
    for (let i = 0; i < n; i++) {
      const before = s.stats().droppedOldest;
      await s.append(entry(i));
      expect(segmentDiskBytes()).toBeLessThanOrEqual(maxBytes);
      // Full from the 66th append on (4 acked below): each newer entry costs exactly one older one.
      expect(s.stats().droppedOldest - before).toBe(i >= 65 ? 1 : 0);
      if (i === 20) await s.ack(4); // acked entries are not counted as dropped
    }

    const kept = await s.peek(n);
    expect(kept).toEqual(range(n - 61, n)); // the newest ones, in order
    expect(s.stats()).toEqual({
      queued: 61,
      queuedBytes: 61 * LINE_BYTES,
      appended: n,
      acked: 4,
      droppedOldest: n - 4 - 61,
      corruptSkipped: 0,
    });
    await s.close();

    const t = await openSpool({ maxBytes, segmentBytes });
    expect(await t.peek(n)).toEqual(kept);
  });

  it('a maxBytes below the segment size gets smaller segments, never a queue of one segment', async () => {
    // The configuration that emptied the whole queue on every overflow: 1 MiB segments in a 64 KiB spool.
    const maxBytes = 32 * LINE_BYTES;
    const s = await openSpool({ maxBytes, segmentBytes: 100 * LINE_BYTES });
    expect(s.limits).toEqual({ maxBytes, segmentBytes: 2 * LINE_BYTES, capacityBytes: 30 * LINE_BYTES });
    for (let i = 0; i < 100; i++) {
      const before = s.stats().droppedOldest;
      await s.append(entry(i));
      expect(s.stats().droppedOldest - before).toBe(i >= 30 ? 1 : 0);
      expect(s.size).toBe(Math.min(i + 1, 30));
      expect(segmentDiskBytes()).toBeLessThanOrEqual(maxBytes);
    }
    expect(await s.peek(100)).toEqual(range(70, 100));
    for (const f of segmentFiles()) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(2 * LINE_BYTES);
  });

  it('drops from the front of a segment whose older entries were acked', async () => {
    // Two lines a segment, room for 30: dropping the second line of a half-acked segment deletes its file.
    const s = await openSpool({ maxBytes: 32 * LINE_BYTES, segmentBytes: 2 * LINE_BYTES });
    await appendAll(s, range(0, 30));
    await s.ack(1);
    await appendAll(s, range(30, 32)); // the first fits into the room the ack made, the second drops entry 1
    expect(s.stats()).toMatchObject({ acked: 1, droppedOldest: 1, queued: 30 });
    expect(segmentFiles()).toHaveLength(15);
    expect(await s.peek(100)).toEqual(range(2, 32));
  });

  it('ack after a drop removes only the peeked entries that are still queued', async () => {
    // Segments of one line (maxBytes / 16 < one line), room for 12 entries.
    const s = await openSpool({ maxBytes: 13 * LINE_BYTES, segmentBytes: 4 * LINE_BYTES });
    await appendAll(s, range(0, 12)); // full
    expect(await s.peek(6)).toEqual(range(0, 6)); // being published…
    await appendAll(s, range(12, 16)); // …while new readings drop the oldest four (0-3)
    expect(s.stats().droppedOldest).toBe(4);

    await s.ack(6); // the broker acknowledged 0-5: only 4 and 5 are still here to remove
    expect(s.stats()).toMatchObject({ acked: 2, droppedOldest: 4, queued: 10 });
    expect(await s.peek(100)).toEqual(range(6, 16));

    await s.ack(3); // without drops, ack(n) removes exactly the oldest n
    expect(await s.peek(100)).toEqual(range(9, 16));
  });

  it('skips a torn last line, counts it, and appends to a new segment after it', async () => {
    const a = await openSpool();
    await appendAll(a, range(0, 5));
    await a.close();
    appendFileSync(lastSegment(), '{"topic":"cfm/v1/s001/d01/tel'); // killed mid-write: no newline

    const b = await openSpool();
    expect(b.stats().corruptSkipped).toBe(1);
    expect(b.size).toBe(5);
    expect(await b.peek(100)).toEqual(range(0, 5));
    await appendAll(b, range(5, 7));
    expect(segmentFiles()).toHaveLength(2); // the torn segment is never appended to again
    expect(await b.peek(100)).toEqual(range(0, 7));
    await b.close();

    const c = await openSpool();
    expect(c.stats().corruptSkipped).toBe(1); // still on disk before the head: skipped again
    expect(await c.peek(100)).toEqual(range(0, 7));
    await c.ack(5); // the head passes the torn line: its segment is deleted
    expect(segmentFiles()).toHaveLength(1);
    await c.close();

    const d = await openSpool();
    expect(d.stats().corruptSkipped).toBe(0);
    expect(await d.peek(100)).toEqual(range(5, 7));
  });

  it('skips a complete last line that lacks its newline', async () => {
    const a = await openSpool();
    await appendAll(a, range(0, 2));
    await a.close();
    appendFileSync(lastSegment(), JSON.stringify(entry(2))); // the write of the newline never happened

    const b = await openSpool();
    expect(b.stats().corruptSkipped).toBe(1);
    expect(await b.peek(100)).toEqual(range(0, 2));
    await b.append(entry(3));
    expect(await b.peek(100)).toEqual([entry(0), entry(1), entry(3)]);
  });

  it('skips and counts garbage and wrongly shaped lines in the middle', async () => {
    const a = await openSpool();
    await appendAll(a, range(0, 3));
    await a.close();
    const garbage = [
      'not json',
      '{"topic":1,"payload":"x","qos":0}',
      '{"topic":"t","payload":"p","qos":2}',
      '{"topic":"t","payload":"p","qos":0,"retain":"yes"}',
      '[]',
      '', // an empty line
    ];
    appendFileSync(lastSegment(), `${garbage.join('\n')}\n`);

    const b = await openSpool();
    expect(b.stats().corruptSkipped).toBe(6); // five bad lines and one empty line
    await appendAll(b, range(3, 6)); // the file ends in a newline: same segment
    expect(segmentFiles()).toHaveLength(1);
    expect(await b.peek(100)).toEqual(range(0, 6));
    await b.ack(4); // past the garbage
    await b.close();

    const c = await openSpool();
    expect(c.stats().corruptSkipped).toBe(0); // the head is beyond the bad lines now
    expect(await c.peek(100)).toEqual(range(4, 6));
  });

  it('keeps retain, validates entries, and refuses what can never fit', async () => {
    const s = await openSpool({ maxBytes: 200 });
    const retained: SpoolEntry = {
      topic: 'cfm/v1/s001/d01/status',
      payload: '{"online":true}',
      qos: 1,
      retain: true,
    };
    await s.append(retained);
    await s.append({ ...entry(1), extra: 'dropped' } as SpoolEntry);
    expect(await s.peek(2)).toEqual([retained, entry(1)]);

    await expect(s.append({ topic: 't', payload: 'p', qos: 2 } as unknown as SpoolEntry)).rejects.toThrow(
      TypeError,
    );
    await expect(s.append({ topic: 't', payload: 'x'.repeat(200), qos: 0 })).rejects.toThrow(RangeError);
    await expect(s.ack(3)).rejects.toThrow(RangeError);
    await expect(s.peek(-1)).rejects.toThrow(RangeError);
    expect(s.stats()).toMatchObject({ queued: 2, appended: 2, droppedOldest: 0 });
    await expect(new Spool({ dir }).peek(1)).rejects.toThrow(/not open/);
  });

  it('keeps call order for concurrent appends and works with fsync', async () => {
    const a = await openSpool({ fsync: true, segmentBytes: 5 * LINE_BYTES });
    await Promise.all(range(0, 50).map((e) => a.append(e)));
    await a.ack(12);
    await a.close();

    const b = await openSpool({ fsync: true, segmentBytes: 5 * LINE_BYTES });
    expect(await b.peek(100)).toEqual(range(12, 50));
    expect(JSON.parse(readFileSync(join(dir, 'head.json'), 'utf8'))).toEqual({
      segment: 3,
      offset: 2 * LINE_BYTES,
    });
  });

  it('round-trips 10,000 entries in order in batches of 100', async () => {
    const n = 10_000;
    const s = await openSpool({ segmentBytes: 64 * 1024 });
    const started = performance.now();
    for (let i = 0; i < n; i++) await s.append(entry(i));
    const appendedAt = performance.now();
    expect(segmentFiles().length).toBeGreaterThan(1);

    const replayed: SpoolEntry[] = [];
    while (s.size > 0) {
      const batch = await s.peek(100);
      expect(batch).toHaveLength(100);
      replayed.push(...batch);
      await s.ack(batch.length);
    }
    const done = performance.now();
    expect(replayed).toEqual(range(0, n));
    expect(s.stats()).toMatchObject({ queued: 0, queuedBytes: 0, appended: n, acked: n });
    expect(segmentFiles()).toEqual([]);
    console.info(
      `spool: ${n} appends in ${(appendedAt - started).toFixed(0)} ms, ` +
        `replay in ${(done - appendedAt).toFixed(0)} ms`,
    );
  });
});
