import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { Telemetry } from '../../contracts/messages.js';

type HostReading = NonNullable<Telemetry['host']>;

/**
 * Host health of the classroom PC / OPS module: uptime, CPU (from the change in os.cpus() times since the last
 * sample), memory, and NIC byte counters with rates over the sampling interval.
 *
 * NIC counters come from /proc/net/dev on Linux; on Windows the agent passes those its Windows helper read
 * (Get-NetAdapterStatistics: activity/windows.ts) to `read`. Either way the rates are computed here.
 */
export interface HostSourceOptions {
  /** NIC names to report; empty = every interface except loopback. */
  nics?: readonly string[];
  procNetDev?: string;
}

/** Byte counters by NIC name. */
export type NicCounters = Map<string, { rx: bigint; tx: bigint }>;

interface NicSample {
  rx: bigint;
  tx: bigint;
  atMs: number;
}

/** Parses /proc/net/dev: `  eth0: rxBytes rxPackets … (8 rx columns) txBytes …`. */
export function parseProcNetDev(text: string): NicCounters {
  const out = new Map<string, { rx: bigint; tx: bigint }>();
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const cols = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    if (!name || cols.length < 9 || !/^\d+$/.test(cols[0]!) || !/^\d+$/.test(cols[8]!)) continue;
    out.set(name, { rx: BigInt(cols[0]!), tx: BigInt(cols[8]!) });
  }
  return out;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

export class HostSource {
  private lastCpu = cpuTimes();
  private readonly lastNic = new Map<string, NicSample>();

  constructor(private readonly opts: HostSourceOptions = {}) {}

  private async nics(nowMs: number, given?: NicCounters): Promise<HostReading['nics']> {
    let counters = given;
    if (!counters) {
      try {
        counters = parseProcNetDev(await readFile(this.opts.procNetDev ?? '/proc/net/dev', 'utf8'));
      } catch {
        return [];
      }
    }
    const wanted = this.opts.nics?.length ? new Set(this.opts.nics) : undefined;
    const out: HostReading['nics'] = [];
    for (const [name, c] of counters) {
      if (wanted ? !wanted.has(name) : name === 'lo') continue;
      const prev = this.lastNic.get(name);
      this.lastNic.set(name, { rx: c.rx, tx: c.tx, atMs: nowMs });
      const nic: HostReading['nics'][number] = {
        name: name.slice(0, 64),
        rxBytes: String(c.rx),
        txBytes: String(c.tx),
      };
      const dtS = prev ? (nowMs - prev.atMs) / 1000 : 0;
      // A counter that went down (driver reset, 32-bit wrap) gives no rate rather than a negative one.
      if (prev && dtS > 0 && c.rx >= prev.rx && c.tx >= prev.tx) {
        nic.rxBps = (Number(c.rx - prev.rx) * 8) / dtS;
        nic.txBps = (Number(c.tx - prev.tx) * 8) / dtS;
      }
      out.push(nic);
      if (out.length >= 32) break;
    }
    return out;
  }

  /** `nics`: the NIC counters read elsewhere (the Windows helper); default: /proc/net/dev. */
  async read(nowMs = Date.now(), nics?: NicCounters): Promise<HostReading> {
    const cpu = cpuTimes();
    const dTotal = cpu.total - this.lastCpu.total;
    const cpuPct =
      dTotal > 0 ? Math.min(100, Math.max(0, 100 * (1 - (cpu.idle - this.lastCpu.idle) / dTotal))) : 0;
    this.lastCpu = cpu;
    const total = os.totalmem();
    return {
      uptimeS: Math.floor(os.uptime()),
      cpuPct: Math.round(cpuPct * 10) / 10,
      memUsedPct: Math.round((1000 * (total - os.freemem())) / total) / 10,
      memTotalBytes: total,
      nics: await this.nics(nowMs, nics),
    };
  }
}
