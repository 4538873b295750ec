// Child process of bench/ingest.ts: the collector and its storage, as `npm run collector` runs them, in a process
// of its own — so its CPU is the collector's alone, not the bench's fixtures and polling too (until #18's seventh
// sitting it ran inside the bench process, beside the payloads and lines the raw writer keeps; what is left of the
// bench in it is a look at the collector's count every 5 ms). Or, with
// `floor`, the receive floor below it (receiveFloor). Node flags for it: CFM_BENCH_COLLECTOR_FLAGS (e.g.
// "--max-semi-space-size=32"), printed with the pids. Protocol over IPC: parent sends the job, child answers 'ready' once subscribed; child sends
// {accepted} once the collector has accepted `messages` messages; parent sends 'stop', child answers
// {batches, version, threads} once its writes are settled, and exits (and exits when the bench disconnects). With
// a profile path, 'go' (sent as the publisher starts) starts a CPU profile, stopped and written after {accepted}
// is sent.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { stringify } from 'yaml';
import { Collector, collectorConfigSchema, flushEvery } from '../collector/collector.js';
import { silentLogger } from '../common/log.js';
import { MqttSession } from '../common/mqtt.js';
import { ManualAcks } from '../common/mqtt-acks.js';
import { RegistryStore } from '../common/registry/store.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import { MAX_PAYLOAD_BYTES } from '../contracts/messages.js';
import { benchRegistry, LineSink, makeTelemetry, topicFor } from './fixtures.js';
import { threadCpuSeconds } from './snmp-peers.js';

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
 * before the measured run, a collector of its own (the same code, no broker, no database; its points serialised
 * as the storage would) handles a warm-up of the bench's kind of messages — from devices of their own (the
 * bench's device numbers past `devices`, in schools of their own, registered in a registry of its own), so no
 * module-level cache of the measured devices (their tags objects, their line prefixes) is filled before the run:
 * the measured collector meets its devices, and writes their presence, as a collector just started would.
 */
async function warmUp(job: CollectorJob): Promise<void> {
  const registryFile = `${job.registryFile}.warm-up.json`;
  const all = 2 * job.devices;
  await new RegistryStore(registryFile).import([
    { name: 'warm-up.yaml', data: Buffer.from(stringify(benchRegistry(all))) },
  ]);
  const c = new Collector(collectorConfigSchema.parse({ registryFile }), {
    log: silentLogger(),
    storage: new LineSink().storage,
  });
  const t0 = Date.now() - 6 * 3_600_000;
  for (let k = 0; k < WARM_UP; k++) {
    // Message i of `all` devices is from device i % all: job.devices … all − 1, never a measured one.
    const i = job.devices + (k % job.devices) + Math.floor(k / job.devices) * all;
    c.handle(topicFor(i, all), Buffer.from(JSON.stringify(makeTelemetry(i, all, t0))));
  }
}
const WARM_UP = 20_000;

interface Run {
  accepted: () => number;
  stop: () => Promise<{ batches: number; version: string | undefined }>;
}

/**
 * The reference below the collector (`job.floor`): the same MQTT session, tap, subscription and batched PUBACKs
 * (common/mqtt.ts, common/mqtt-tap.ts, common/mqtt-acks.ts), released every quarter window as the collector's writes would, and nothing
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
  // As the collector: through the MQTT tap, a write every quarter window, and one when the stream pauses for
  // idleFlushMs.
  const flushAt = flushEvery(config.acks.maxUnackedMessages);
  const idle = setTimeout(release, config.acks.idleFlushMs);
  const session = new MqttSession(config.mqtt, {
    log: silentLogger(),
    clientId: `bench-floor-${job.database}`,
    persistentSession: true,
    sessionExpiryS: 0,
    acks,
    tap: {
      maxPayloadBytes: MAX_PAYLOAD_BYTES,
      sink: (p, tap) => {
        if (++received % flushAt === 0) release();
        else idle.refresh();
        return acks.accept(p.client, p.qos, p.messageId, tap.proceed);
      },
    },
  });
  // On every connection, as the collector does (a failed subscription ends the bench: unhandled rejection).
  const subscribed = new Promise<void>((resolve, reject) =>
    session.on('connect', () =>
      session.subscribe(`$share/${job.database}/cfm/v1/+/+/+`, 1).then(() => resolve(), reject),
    ),
  );
  session.start();
  await subscribed;
  return {
    accepted: () => received,
    stop: async () => {
      clearTimeout(idle);
      release();
      await session.stop();
      return { batches: 0, version: undefined };
    },
  };
}

/** The collector and its storage, as collector/main.ts builds them. */
async function collectorProcess(job: CollectorJob): Promise<Run> {
  await warmUp(job);
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
  let profileWritten: Promise<void> | undefined;
  let threads0 = threadCpuSeconds();
  let threads: { main: number; other: number } | undefined;
  process.on('message', async (m: unknown) => {
    if (m === 'go') threads0 = threadCpuSeconds();
    if (m === 'go' && profiler) {
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
    }
    if (m !== 'stop') return;
    const stopped = await run.stop();
    await profileWritten;
    process.send!({ ...stopped, threads }, () => process.exit(0));
  });
  // A light poll (one look every 5 ms), not a hook in the collector's path.
  const poll = setInterval(() => {
    const accepted = run.accepted();
    if (accepted < job.messages) return;
    clearInterval(poll);
    const t1 = threadCpuSeconds();
    threads = { main: t1.main - threads0.main, other: t1.other - threads0.other };
    process.send!({ accepted });
    // After the measured window: stopping the profiler and writing its file are not the collector's work.
    if (profiler)
      void profiler
        .post('Profiler.stop')
        .then(({ profile }) => writeFileSync(job.profile!, JSON.stringify(profile)));
  }, 5);
  process.send!('ready');
});
// The bench gone (ended, or killed): so is this process, not left running on its pinned core.
process.on('disconnect', () => process.exit(1));
