import { z } from 'zod';

/**
 * Link quality (docs/links.md): each class-time bucket of a school's probes is classed by its worst loss, RTT and
 * jitter over fixed edges, and the rollup keeps how many buckets fell in each (loss, RTT, jitter) cell — a joint
 * histogram, packed as one string per school day. A profile's thresholds are edges, so any profile is judged
 * from the rolled-up days without re-reading the probes: a bucket is over when any of its classes is above the
 * threshold's. Pure.
 */

/** Loss edges (%): a bucket's class is the number of edges its loss is above. */
export const LOSS_EDGES = [0.1, 0.5, 1, 2, 5, 10] as const;
/** Round-trip time edges (ms). */
export const RTT_EDGES = [50, 100, 150, 200, 300, 400, 1000] as const;
/** Jitter edges (ms). */
export const JITTER_EDGES = [10, 20, 30, 50, 100] as const;

/** The class of `v` over `edges`: how many edges it is above (0 … edges.length). */
export function classOf(v: number, edges: readonly number[]): number {
  let i = 0;
  while (i < edges.length && v > edges[i]!) i++;
  return i;
}

/** One bucket's worst figures: loss %, and RTT and jitter when any probe was answered. */
export interface BucketQuality {
  lossPct: number;
  rttMs: number | null;
  jitterMs: number | null;
}

/** The histogram cell of a bucket: `loss.rtt.jitter` classes (an unanswered bucket: loss 100 %, RTT and jitter 0). */
export function cellOf(b: BucketQuality): string {
  return `${classOf(b.lossPct, LOSS_EDGES)}.${classOf(b.rttMs ?? 0, RTT_EDGES)}.${classOf(b.jitterMs ?? 0, JITTER_EDGES)}`;
}

const CELL = /^(\d)\.(\d)\.(\d)$/;

/** `l.r.j:n|…`, cells in a stable order (what the rollup stores). */
export function packHistogram(h: ReadonlyMap<string, number>): string {
  return [...h]
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([c, n]) => `${c}:${n}`)
    .join('|');
}

/**
 * Reads a packed histogram; cells that are not `l.r.j` within the edges, or counts that are not whole and
 * positive, are left out (a stored string is data, not trusted code), and so is anything past 512 cells.
 */
export function unpackHistogram(
  s: string | null | undefined,
  into = new Map<string, number>(),
): Map<string, number> {
  if (!s) return into;
  let cells = 0;
  for (const item of s.split('|')) {
    if (++cells > 512) break;
    const colon = item.indexOf(':');
    const cell = item.slice(0, colon);
    const m = CELL.exec(cell);
    const n = Number(item.slice(colon + 1));
    if (colon <= 0 || !m || !Number.isInteger(n) || n <= 0) continue;
    if (
      Number(m[1]) > LOSS_EDGES.length ||
      Number(m[2]) > RTT_EDGES.length ||
      Number(m[3]) > JITTER_EDGES.length
    )
      continue;
    into.set(cell, (into.get(cell) ?? 0) + n);
  }
  return into;
}

export const linkQualitySchema = z
  .strictObject({
    maxLossPct: z
      .literal(LOSS_EDGES)
      .describe(`Highest loss (%) a bucket may have: one of ${LOSS_EDGES.join(', ')}.`),
    maxRttMs: z.literal(RTT_EDGES).describe(`Highest round-trip time (ms): one of ${RTT_EDGES.join(', ')}.`),
    maxJitterMs: z.literal(JITTER_EDGES).describe(`Highest jitter (ms): one of ${JITTER_EDGES.join(', ')}.`),
    maxShareOverPct: z
      .number()
      .min(0)
      .max(100)
      .describe(
        'The link is `link_quality_low` when its pooled loss over the answered class time is above `maxLossPct`, or more than this share of that time is over the RTT or jitter threshold.',
      ),
  })
  .describe("校校通 link quality: thresholds for the school's probes in class time (docs/links.md).");
export type LinkQuality = z.infer<typeof linkQualitySchema>;

/** For interactive video (同步课堂/专递课堂): the sources are in docs/links.md and LINK_QUALITY_SOURCE. */
export const DEFAULT_LINK_QUALITY: LinkQuality = {
  maxLossPct: 1,
  maxRttMs: 200,
  maxJitterMs: 50,
  maxShareOverPct: 5,
};

export const LINK_QUALITY_SOURCE =
  'interactive video: loss ≤ 1 % (ITU-T G.1010, conversational video), RTT ≤ 200 ms (twice ITU-T Y.1541 class 0’s 100 ms one-way delay), jitter ≤ 50 ms (Y.1541 class 0/1 IPDV); over on more than 5 % of class time: project default';

/**
 * Buckets of `h` over the RTT or jitter threshold. Loss is not judged per bucket: ten echoes a minute cannot
 * resolve 1 % (one lost echo is 2–10 % of a bucket), so loss is the period's pooled rate (`pooledLossOver`).
 */
export function bucketsOver(h: ReadonlyMap<string, number>, q: LinkQuality): number {
  const r = RTT_EDGES.indexOf(q.maxRttMs);
  const j = JITTER_EDGES.indexOf(q.maxJitterMs);
  let over = 0;
  for (const [cell, n] of h) {
    const m = CELL.exec(cell);
    if (!m) continue;
    if (Number(m[2]) > r || Number(m[3]) > j) over += n;
  }
  return over;
}

/** Whether `lost` of `sent` probes is more than `maxLossPct` (on counts, not a rounded share). */
export function pooledLossOver(lost: number, sent: number, q: LinkQuality): boolean {
  return sent > 0 && lost * 100 > q.maxLossPct * sent;
}
