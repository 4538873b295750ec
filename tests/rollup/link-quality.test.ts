import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { ifacePoints, probePoint } from '../../collector/points.js';
import { type CalendarDef, Calendars } from '../../common/calendar.js';
import {
  bucketsOver,
  cellOf,
  classOf,
  DEFAULT_LINK_QUALITY,
  LOSS_EDGES,
  packHistogram,
  pooledLossOver,
  RTT_EDGES,
  unpackHistogram,
} from '../../common/figures/quality.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { ProbeResult } from '../../contracts/messages.js';
import type { Registry } from '../../contracts/registry.js';
import { Rollup } from '../../rollup/rollup.js';
import { testApp } from '../helpers/api.js';
import { Influxd, testStorage } from '../helpers/influx.js';

describe('link-quality classes and histograms (common/figures/quality.ts)', () => {
  it('classes a value by the edges it is above: a threshold at an edge is "over" only above it', () => {
    expect(classOf(0, LOSS_EDGES)).toBe(0);
    expect(classOf(0.1, LOSS_EDGES)).toBe(0); // at the edge: not above
    expect(classOf(0.11, LOSS_EDGES)).toBe(1);
    expect(classOf(1, LOSS_EDGES)).toBe(2);
    expect(classOf(100, LOSS_EDGES)).toBe(LOSS_EDGES.length);
    expect(classOf(200, RTT_EDGES)).toBe(3);
    expect(classOf(200.5, RTT_EDGES)).toBe(4);
    // An unanswered bucket: loss 100 %, no RTT or jitter.
    expect(cellOf({ lossPct: 100, rttMs: null, jitterMs: null })).toBe('6.0.0');
  });

  it('counts the buckets over any threshold, and round-trips its packed form', () => {
    const h = new Map([
      [cellOf({ lossPct: 0, rttMs: 20, jitterMs: 2 }), 10], // good
      [cellOf({ lossPct: 1, rttMs: 200, jitterMs: 50 }), 3], // at every threshold: not over
      [cellOf({ lossPct: 1.5, rttMs: 20, jitterMs: 2 }), 2], // loss over
      [cellOf({ lossPct: 0, rttMs: 250, jitterMs: 2 }), 4], // RTT over
      [cellOf({ lossPct: 0, rttMs: 20, jitterMs: 60 }), 5], // jitter over
    ]);
    // Loss is judged pooled over the period, not per bucket: only RTT and jitter count here.
    expect(bucketsOver(h, DEFAULT_LINK_QUALITY)).toBe(9);
    expect(pooledLossOver(10, 1_000, DEFAULT_LINK_QUALITY)).toBe(false); // exactly 1 %: not above
    expect(pooledLossOver(11, 1_000, DEFAULT_LINK_QUALITY)).toBe(true);
    expect(pooledLossOver(0, 0, DEFAULT_LINK_QUALITY)).toBe(false);
    expect(bucketsOver(h, { ...DEFAULT_LINK_QUALITY, maxLossPct: 2, maxRttMs: 300, maxJitterMs: 100 })).toBe(
      0,
    );
    const packed = packHistogram(h);
    expect(packed).toBe('0.0.0:10|0.0.4:5|0.4.0:4|2.3.3:3|3.0.0:2'); // loss 1 %: above 0.1 and 0.5, class 2
    expect(unpackHistogram(packed)).toEqual(h);
  });

  it('reads a stored histogram as data: malformed cells, classes beyond the edges and bad counts are left out', () => {
    expect(unpackHistogram('0.0.0:3|9.0.0:1|0.0:1|a.b.c:2|0.0.1:-1|0.0.2:1.5|0.0.3:x|:4|0.0.0:2')).toEqual(
      new Map([['0.0.0', 5]]),
    );
    expect(unpackHistogram(`${'0.0.0:1|'.repeat(10_000)}`).get('0.0.0')).toBe(512);
    expect(unpackHistogram(null).size).toBe(0);
  });
});

/**
 * Four schools on one teaching day (six 45-minute periods, 9 five-minute buckets each: 54), probed every five
 * minutes from 07:30 to 17:00 by the poller and, where they answer SNMP, polled:
 * - A: SNMP up all day, probes clean (RTT 20 ms, no loss) — attains;
 * - B: no SNMP at all (a router run by the operator), probes answer, but with 6 % loss in periods 1–2: pooled
 *   over the day 108 of 5,400 probes, 2 % > 1 % — measured by probes alone, available, link_quality_low;
 * - C: SNMP stops after period 2 (management down), probes answer clean all day — available all day, not
 *   uplink_availability_low;
 * - D: no SNMP, RTT 250 ms in period 1, probes unanswered from period 5 (the link cut) — 36 of 54 buckets up:
 *   availability 66.67 %; 9 of its 36 answered buckets over 200 ms (25 % > 5 %): link_quality_low too (the
 *   unanswered buckets are an outage, not low quality).
 */
const REGION = '330000/330100/330106';
const SCHOOLS = ['A', 'B', 'C', 'D'].map((x, i) => ({
  tag: x,
  id: `330106000${i + 1}`,
  gw: `gw-${x.toLowerCase()}`,
}));
const REGISTRY: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
  ],
  schools: SCHOOLS.map((s) => ({
    id: s.id,
    name: `西湖区第${s.tag}小学`,
    region: '330106',
    area: 'urban' as const,
    level: 'primary' as const,
    classes: 10,
    students: 400,
    teachers: 30,
    uplinkDevice: s.gw,
    uplinkInterface: 'ge-0/0/0',
    contractedMbps: 1_000,
  })),
  classrooms: [],
  devices: SCHOOLS.map((s) => ({
    id: s.gw,
    school: s.id,
    kind: 'router' as const,
    mgmtAddress: '10.0.0.1',
    probeAddress: '10.0.0.1',
  })),
};
const PERIODS = ['08:00-08:45', '08:55-09:40', '10:00-10:45', '10:55-11:40', '14:20-15:05', '15:15-16:00'];
const CALENDAR: CalendarDef = {
  id: 'xihu',
  regions: ['330106'],
  terms: [{ name: '2026—2027 学年第一学期', start: '2026-09-01', end: '2027-01-22' }],
  periods: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, PERIODS])),
};
const DAY = '2026-10-08';
const at = (hhmm: string) => Date.parse(`${DAY}T${hhmm}:00+08:00`);
const periodOf = (ms: number) =>
  PERIODS.findIndex((p) => {
    const [a, b] = p.split('-') as [string, string];
    return ms >= at(a) && ms < at(b);
  });
const BUCKETS_PER_PERIOD = (45 * 60) / 300; // 9

function probe(ts: number, received: number, rtt = 20): ProbeResult {
  return {
    v: 1,
    ts,
    kind: 'router',
    method: 'icmp',
    sent: 100,
    received,
    rttMs: received > 0 ? { min: rtt - 2, avg: rtt, max: rtt + 5 } : null,
    jitterMs: received > 1 ? 2 : null,
    periodMs: 1000,
  };
}

function dayPoints(): AnyPoint[] {
  const out: AnyPoint[] = [];
  for (let ts = at('07:30') + 60_000; ts < at('17:00'); ts += 300_000) {
    const p = periodOf(ts);
    for (const s of SCHOOLS) {
      const info = { kind: 'router' as const, region: REGION };
      let received = 100;
      if (s.tag === 'B' && (p === 0 || p === 1)) received = 94; // 6 % loss
      if (s.tag === 'D' && ts >= at('14:20')) received = 0;
      const rtt = s.tag === 'D' && p === 0 ? 250 : 20;
      out.push(probePoint(s.id, s.gw, probe(ts, received, rtt), info));
      const snmp = s.tag === 'A' || (s.tag === 'C' && ts < at('09:40'));
      if (snmp)
        out.push(
          ...ifacePoints(
            s.id,
            s.gw,
            {
              v: 1,
              ts,
              kind: 'router',
              seq: 0,
              sysUpTimeTicks: 100_000,
              ifaces: [
                {
                  index: 1,
                  name: 'ge-0/0/0',
                  operStatus: 'up',
                  counterBits: 64,
                  inOctets: '1000',
                  outOctets: '1000',
                  inBps: 1e6,
                  outBps: 1e6,
                  speedMbps: 1_000,
                  uplink: true,
                },
              ],
            },
            { ...info, uplinkContractMbps: 1_000 },
          ),
        );
    }
  }
  return out;
}

const influxd = new Influxd();
let storage: Storage;
let dir: string;
let app: Awaited<ReturnType<typeof testApp>>;
let token: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-link-quality-'));
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(REGISTRY)) }]);
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  token = tokens.add('西湖区教育局', 'auditor', REGION).token;
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'lq' }).storage;
  await storage.start();
  storage.write(dayPoints());
  await storage.flush();
  const calendars = new Calendars([CALENDAR]);
  const rollup = new Rollup({
    storage,
    registry: () => registry.index,
    calendars: () => calendars,
    log: silentLogger(),
    bucketS: 300,
  });
  await rollup.day(DAY);
  app = await testApp({
    registry,
    calendars,
    tokens,
    storage,
    live: new LiveState(undefined, silentLogger()),
  });
});
afterAll(async () => {
  await app?.close();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const TEACHING_B = PERIODS.length * BUCKETS_PER_PERIOD; // 54

describe('link quality and reachability rolled up and judged (校校通)', () => {
  it('rolls up each school: probed, answered and up-by-either buckets, and the quality cells', async () => {
    const rows = await storage.rows('SELECT * FROM uplink_day GROUP BY school');
    const by = new Map(rows.map((r) => [r.school as string, r]));
    const [a, b, c, d] = SCHOOLS.map((s) => by.get(s.id)!);
    expect(a).toMatchObject({
      teaching_b: TEACHING_B,
      data_b: TEACHING_B,
      up_b: TEACHING_B,
      probe_b: 54,
      reach_b: 54,
      avail_b: 54,
    });
    expect(a!.quality).toBe('0.0.0:54');
    // B: 2 periods × 9 buckets with 6 % loss (class 5: above 0.1, 0.5, 1, 2 and 5 %), the rest clean; no SNMP.
    expect(b).toMatchObject({
      data_b: 0,
      up_b: 0,
      probe_b: 54,
      reach_b: 54,
      avail_b: 54,
      probe_sent: 5_400,
      probe_lost: 18 * 6,
    });
    expect(unpackHistogram(b!.quality as string)).toEqual(
      new Map([
        ['0.0.0', 36],
        ['5.0.0', 18],
      ]),
    );
    // C: SNMP for periods 1 and 2 only (the 09:40 bucket is not one of theirs), probes all day.
    expect(c).toMatchObject({
      data_b: 2 * BUCKETS_PER_PERIOD,
      up_b: 2 * BUCKETS_PER_PERIOD,
      probe_b: 54,
      avail_b: 54,
    });
    // D: unanswered from 14:20, i.e. periods 5 and 6: no cell for those (an outage, not low quality); period 1
    // at 250 ms (RTT class 4: above 50, 100, 150 and 200 ms).
    expect(d).toMatchObject({
      data_b: 0,
      probe_b: 54,
      reach_b: 36,
      avail_b: 36,
      probe_sent: 3_600,
      probe_lost: 0,
    });
    expect(unpackHistogram(d!.quality as string)).toEqual(
      new Map([
        ['0.0.0', 27],
        ['0.4.0', 9],
      ]),
    );
  });

  it('judges 校校通 from probes where there is no SNMP, and link quality by the profile', async () => {
    const r = await app.inject({
      method: 'GET',
      url: `/v1/attainment/schools?period=${DAY}`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(r.statusCode).toBe(200);
    const items = r.json().items as {
      id: string;
      uplink: Record<string, unknown>;
      xxt: { attained: boolean; reasons: { code: string; message: string }[] };
    }[];
    const by = new Map(items.map((s) => [s.id, s]));
    const [a, b, c, d] = SCHOOLS.map((s) => by.get(s.id)!);
    expect(a!.xxt).toEqual({ attained: true, reasons: [] });
    expect(a!.uplink).toMatchObject({
      monitored: true,
      availabilityPct: 100,
      probedPct: 100,
      reachablePct: 100,
      qualityLowPct: 0,
      linkQualityLow: false,
    });
    // B: monitored by its probes alone; pooled loss 108 of 5,400 probes = 2 % > 1 %; no bucket over RTT/jitter.
    expect(b!.uplink).toMatchObject({
      monitored: true,
      availabilityPct: 100,
      lossPct: 2,
      qualityLowPct: 0,
      linkQualityLow: true,
    });
    expect(b!.xxt.attained).toBe(false);
    expect(b!.xxt.reasons.map((x) => x.code)).toEqual(['link_quality_low']);
    expect(b!.xxt.reasons[0]!.message).toBe('loss 2 % (108 of 5400 probes), above 1 %');
    // C: SNMP silent after period 2 but probes answer: the link was up (management down), attained.
    expect(c!.uplink).toMatchObject({ availabilityPct: 100, linkQualityLow: false });
    expect(c!.xxt).toEqual({ attained: true, reasons: [] });
    // D: 36 of 54 teaching buckets answered: 66.67 % < 99 %; 9 of the 36 answered over 200 ms: 25 % > 5 %.
    expect(d!.uplink).toMatchObject({
      availabilityPct: 66.67,
      reachablePct: 66.67,
      lossPct: 0,
      qualityLowPct: 25,
      linkQualityLow: true,
    });
    expect(d!.xxt.reasons.map((x) => x.code)).toEqual(['uplink_availability_low', 'link_quality_low']);
    expect(d!.xxt.reasons[0]!.message).toBe(
      'uplink up 66.67 % of teaching time (36 of 54 buckets), below 99 %',
    );
    expect(d!.xxt.reasons[1]!.message).toBe(
      'RTT above 200 ms or jitter above 50 ms on 25 % of answered teaching time (9 of 36 buckets), above 5 %',
    );
  });
});
