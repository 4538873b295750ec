// Child process of bench/ingest.ts: the collector and its storage, as `npm run collector` runs them, in a process
// of its own — so its CPU is the collector's alone, not the bench's fixtures and polling too (until #18's seventh
// sitting it ran inside the bench process, whose tens of megabytes of kept payloads and lines every major GC
// marked again). Protocol over IPC: parent sends the job, child answers 'ready' once subscribed; child sends
// {accepted} once the collector has accepted `messages` messages; parent sends 'stop', child answers
// {batches, version} once its writes are settled, and exits. With a profile path, 'go' (sent as the publisher
// starts) starts a CPU profile, written before {accepted} is sent.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { Collector, collectorConfigSchema } from '../collector/collector.js';
import { silentLogger } from '../common/log.js';
import { MqttSession } from '../common/mqtt.js';
import { ManualAcks } from '../common/mqtt-acks.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import type { AnyPoint } from '../contracts/influx.js';
import { makeTelemetry, topicFor } from './fixtures.js';

export interface CollectorJob {
  influxUrl: string;
  database: string;
  mqttUrl: string;
  registryFile: string;
  messages: number;
  devices: number;
  ackOnReceipt: boolean;
  maxUnacked?: number | undefined;
  /** The receive floor instead of the collector (receiveFloor). */
  floor?: boolean;
  /** Where to write a CPU profile of the measured run (.cpuprofile, for Chrome DevTools). */
  profile?: string | undefined;
}

/**
 * A deployed collector runs for months: its hot paths are compiled long before any one minute of traffic. So
 * before the measured run, a collector of its own (the same code, no broker, no database) handles a warm-up of
 * the bench's messages — what the measured collector then writes, presence included, is unchanged.
 */
function warmUp(job: CollectorJob): void {
  const sink = { write: (points: readonly AnyPoint[]) => points.length };
  const c = new Collector(collectorConfigSchema.parse({ registryFile: job.registryFile }), {
    log: silentLogger(),
    storage: sink as unknown as Storage,
  });
  const t0 = Date.now() - 6 * 3_600_000;
  for (let i = 0; i < WARM_UP; i++) {
    c.handle(topicFor(i, job.devices), Buffer.from(JSON.stringify(makeTelemetry(i, job.devices, t0))));
  }
}
const WARM_UP = 20_000;

/** Clock ticks (user + system) of this process's main thread and of all its other threads (V8's GC and compiler helpers, libuv's pool). */
function threadTicks(): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // a thread that ended
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    if (Number(tid) === process.pid) main += ticks;
    else other += ticks;
  }
  return { main, other };
}

interface Run {
  accepted: () => number;
  stop: () => Promise<{ batches: number; version: string | undefined }>;
}

/**
 * The reference below the collector (`job.floor`): the same MQTT session, subscription and batched PUBACKs
 * (common/mqtt.ts, common/mqtt-acks.ts), released every half window as the collector's writes would, and nothing
 * else — no decoding, no points, no writes. What the collector costs above it is its own work.
 */
async function receiveFloor(job: CollectorJob): Promise<Run> {
  const config = collectorConfigSchema.parse({
    mqtt: { url: job.mqttUrl, clientId: `bench-floor-${job.database}` },
    ...(job.maxUnacked !== undefined && { acks: { maxUnackedMessages: job.maxUnacked } }),
  });
  let received = 0;
  let settled = 0;
  const release = () => {
    settled = received;
    acks.release();
  };
  const acks = new ManualAcks({
    maxUnacked: config.acks.maxUnackedMessages,
    position: () => received,
    settled: () => settled,
    onFull: release,
  });
  const session = new MqttSession(config.mqtt, {
    log: silentLogger(),
    clientId: `bench-floor-${job.database}`,
    persistentSession: true,
    sessionExpiryS: 0,
    acks,
  });
  const flushAt = Math.ceil(config.acks.maxUnackedMessages / 2);
  const idle = setInterval(release, config.acks.idleFlushMs);
  session.on('message', () => {
    if (++received % flushAt === 0) release();
  });
  const subscribed = new Promise<void>((resolve) =>
    session.once(
      'connect',
      () => void session.subscribe(`$share/${job.database}/cfm/v1/+/+/+`, 1).then(() => resolve()),
    ),
  );
  session.start();
  await subscribed;
  return {
    accepted: () => received,
    stop: async () => {
      clearInterval(idle);
      release();
      await session.stop();
      return { batches: 0, version: undefined };
    },
  };
}

/** The collector and its storage, as collector/main.ts builds them. */
async function collectorProcess(job: CollectorJob): Promise<Run> {
  warmUp(job);
  const storage = new Storage(
    influxConfigSchema.parse({ url: job.influxUrl, database: job.database, flushIntervalMs: 200 }),
    { log: silentLogger() },
  );
  await storage.start();
  const collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: { url: job.mqttUrl, clientId: `bench-collector-${job.database}` },
      metrics: { port: 0 },
      group: job.database,
      // No session left behind: the next run's messages would be queued for it too.
      sessionExpiryS: 0,
      registryFile: job.registryFile,
      ...(job.maxUnacked !== undefined && { acks: { maxUnackedMessages: job.maxUnacked } }),
    }),
    { log: silentLogger(), storage, ackOnReceipt: job.ackOnReceipt },
  );
  await collector.start();
  await collector.ready();
  return {
    accepted: () => collector.stats().accepted,
    stop: async () => {
      await collector.stop();
      await storage.stop();
      return { batches: storage.stats().batchesWritten, version: storage.server?.version };
    },
  };
}

process.once('message', async (job: CollectorJob) => {
  const run = job.floor ? await receiveFloor(job) : await collectorProcess(job);
  // --profile: a CPU profile of the collector's measured run (from 'go' until it has accepted every message).
  const profiler = job.profile ? new Session() : undefined;
  let threads0 = threadTicks();
  let threads: { main: number; other: number } | undefined;
  process.on('message', async (m: unknown) => {
    if (m === 'go') threads0 = threadTicks();
    if (m === 'go' && profiler) {
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
    }
    if (m !== 'stop') return;
    process.send!({ ...(await run.stop()), threads });
    process.disconnect();
  });
  // A light poll (one look every 5 ms), not a hook in the collector's path.
  const poll = setInterval(() => {
    const accepted = run.accepted();
    if (accepted < job.messages) return;
    clearInterval(poll);
    const t1 = threadTicks();
    threads = { main: (t1.main - threads0.main) / 100, other: (t1.other - threads0.other) / 100 };
    if (profiler)
      void profiler.post('Profiler.stop').then(({ profile }) => {
        writeFileSync(job.profile!, JSON.stringify(profile));
        process.send!({ accepted });
      });
    else process.send!({ accepted });
  }, 5);
  process.send!('ready');
});
