// npm run bench:ingest [-- --messages 60000 --devices 6000 --unpinned --max-unacked 1000 --profile DIR]
//
// 1. raw: the points the collector makes of N realistic telemetry messages (its presence points included), written as line protocol in 5,000-line POSTs to /write
//    (the storage layer's batch size) — the reference, InfluxDB's own speed on this machine.
// 2. end to end: the same N messages published over MQTT (QoS 1) to a real Mosquitto, consumed by the
//    collector, written through the storage layer; timed until every point is queryable.
// 3. collector alone: decode + validate + convert + serialise, no broker, no writes.
// 4. receive floor: the same messages received by the collector's MQTT session and tap, acknowledged in batches, nothing
//    handled — what the collector costs before it does any work of its own.
// Each run uses a fresh database, so both writes pay the same series-creation cost, and starts once influxd is idle.
//
// Fair on two cores (issue #18): influxd is pinned to core 0 for both the raw reference and the end-to-end run,
// and everything else — Mosquitto, the publisher, the collector, this process (the raw writer) — to core 1
// (`taskset -a -p`, util-linux: every thread of each process). Without that the raw reference gets both cores to
// itself while the end-to-end run shares them with three other processes. CPU-seconds per 10,000 messages are
// read per process from /proc/<pid>/stat: on a shared machine they are steadier than wall-clock rates.
// `--unpinned` leaves the scheduler free, for comparison. `--max-unacked` sets the collector's
// acks.maxUnackedMessages (default: the configuration's default) for the end-to-end runs. `--profile DIR` writes
// a CPU profile of the collector process in each end-to-end run (DIR/collector-<database>.cpuprofile). The
// collector is a process of its own (bench/ingest-collector.ts), warmed up first, as a long-running one is.

import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Collector, collectorConfigSchema } from '../collector/collector.js';
import { silentLogger } from '../common/log.js';
import { RegistryStore } from '../common/registry/store.js';
import { trackChild } from '../dev/children.js';
import { Influxd } from '../dev/influxd.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';
import { benchRegistry, LineSink, makeTelemetry, topicFor, waitForCount, writeRawLines } from './fixtures.js';
import type { CollectorJob } from './ingest-collector.js';
import { processCpuSeconds, settled } from './snmp-peers.js';

const { values } = benchArgs('bench:ingest', {
  options: {
    messages: { type: 'string', default: '60000' },
    devices: { type: 'string', default: '6000' },
    unpinned: { type: 'boolean', default: false },
    'max-unacked': { type: 'string' },
    profile: { type: 'string' },
  },
});
const PINNED = !values.unpinned;
if (PINNED && availableParallelism() < 2) {
  console.error(
    'bench:ingest pins influxd and the rest to two different cores: this machine has one (--unpinned)',
  );
  process.exit(2);
}

/** Every thread of `pid` (and the threads it starts later) on `core`. */
function pin(pid: number, core: number, what: string): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
  } catch (e) {
    throw new Error(
      `taskset could not pin ${what} (pid ${pid}) to core ${core} (util-linux; deploy/install-deps.sh --bench): ${(e as Error).message}`,
    );
  }
}
const cpuOf = (pid: number) => processCpuSeconds(pid).own;
/** CPU-seconds per 10,000 messages. */
const per10k = (cpuS: number) => `${((cpuS * 10_000) / N).toFixed(2)} s`;
const N = numberArg('bench:ingest', 'messages', values.messages);
const MAX_UNACKED =
  values['max-unacked'] !== undefined
    ? numberArg('bench:ingest', 'max-unacked', values['max-unacked'])
    : undefined;
const DEVICES = numberArg('bench:ingest', 'devices', values.devices);
// Readings of the last few hours: the collector refuses readings older than collector.limits.maxPastS.
const T0 = Date.now() - 6 * 3_600_000;
// The devices are registered, as in a deployment: attribution takes region and classroom from the registry.
const dir = benchTempDir('cfm-bench-ingest-');
const registryFile = join(dir, 'registry.json');
await new RegistryStore(registryFile).import([
  { name: 'bench.yaml', data: Buffer.from(stringify(benchRegistry(DEVICES))) },
]);
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

/**
 * Each measured run starts once influxd is idle, so none pays for the compaction of the database written before
 * it (on this machine influxd was idle within a second each time: the on-receipt run's higher influxd CPU is its
 * own, not a neighbour's).
 */
const settledS: string[] = [];
async function settle(run: string): Promise<void> {
  settledS.push(`${run} ${(await settled(influxd.pid!, 120)).toFixed(0)} s`);
}
const influxd = await new Influxd().start();
const mosquitto = await new Mosquitto().start();
try {
  const influxdPid = influxd.pid!;
  const mosquittoPid = mosquitto.pid!;
  if (PINNED) {
    pin(influxdPid, 0, 'influxd');
    pin(mosquittoPid, 1, 'mosquitto');
    pin(process.pid, 1, 'the bench process');
  }
  // --- 3. the collector alone -------------------------------------------------------------------------
  const sink = new LineSink();
  const offline = new Collector(collectorConfigSchema.parse({ registryFile }), {
    log: silentLogger(),
    storage: sink.storage,
  });
  const payloads: { topic: string; payload: Buffer }[] = [];
  for (let i = 0; i < N; i++) {
    payloads.push({
      topic: topicFor(i, DEVICES),
      payload: Buffer.from(JSON.stringify(makeTelemetry(i, DEVICES, T0))),
    });
  }
  for (let i = 0; i < Math.min(N, 5_000); i++) offline.handle(payloads[i]!.topic, payloads[i]!.payload); // warm up
  // Best of three passes: one thread on a shared machine, where a neighbour can steal a pass.
  let aloneS = Number.POSITIVE_INFINITY;
  let t = 0;
  for (let pass = 0; pass < 3; pass++) {
    sink.lines = 0;
    t = performance.now();
    for (const p of payloads) offline.handle(p.topic, p.payload);
    aloneS = Math.min(aloneS, (performance.now() - t) / 1000);
  }
  const pointsPerMessage = sink.lines / N;

  // --- 1. raw line protocol -------------------------------------------------------------------------
  const raw = new LineSink(true);
  {
    const c = new Collector(collectorConfigSchema.parse({ registryFile }), {
      log: silentLogger(),
      storage: raw.storage,
    });
    for (const p of payloads) c.handle(p.topic, p.payload);
  }
  const lines = raw.kept;
  // Every point the collector writes, its presence points included (one per device first seen: 6,000 more
  // points and series on a fresh database) — the reference writes the same points as the end-to-end run. Until
  // #18's fourth sitting it left them out, so the end-to-end run paid for 6,000 series the reference did not.
  const presenceLines = lines.filter((l) => l.startsWith('presence')).length;
  await settle('raw');
  t = performance.now();
  const rawCpu0 = { influxd: cpuOf(influxdPid), writer: cpuOf(process.pid) };
  await writeRawLines(influxd, 'raw', lines);
  await waitForCount(influxd, 'raw', 'host', 'cpu_pct', N);
  const rawS = (performance.now() - t) / 1000;
  const rawCpu = {
    influxd: cpuOf(influxdPid) - rawCpu0.influxd,
    writer: cpuOf(process.pid) - rawCpu0.writer,
  };

  // --- 2. end to end ----------------------------------------------------------------------------------
  // Twice: as shipped (PUBACK once InfluxDB has the points, collector.acks) and, for the cost of that, with
  // PUBACK on receipt as before issue #13 (which loses acknowledged messages on a crash).
  const collectorFlags = process.env.CFM_BENCH_COLLECTOR_FLAGS?.split(' ').filter(Boolean) ?? [];
  if (values.profile) mkdirSync(values.profile, { recursive: true });
  const endToEnd = async (database: string, ackOnReceipt: boolean, floor = false) => {
    const collector = fork(new URL('./ingest-collector.ts', import.meta.url), [], {
      execArgv: ['--import', 'tsx', ...collectorFlags],
    });
    trackChild(collector, `bench collector ${database}`);
    const collectorPid = collector.pid!;
    if (PINNED) pin(collectorPid, 1, 'the collector');
    // The child's next message; a child that ends first (a failed start, a crash) fails the bench, not hangs it.
    const fromCollector = <T>() =>
      new Promise<T>((resolve, reject) => {
        const ended = (code: number | null, signal: string | null) =>
          reject(
            new Error(
              `the bench's collector process ended (${signal ?? `exit ${code}`}); its stderr is above`,
            ),
          );
        collector.once('exit', ended);
        collector.once('message', (m) => {
          collector.off('exit', ended);
          resolve(m as T);
        });
      });
    const job: CollectorJob = {
      influxUrl: influxd.url,
      database,
      mqttUrl: mosquitto.url,
      registryFile,
      messages: N,
      devices: DEVICES,
      ackOnReceipt,
      floor,
      profile: values.profile && join(values.profile, `collector-${database}.cpuprofile`),
      maxUnacked: MAX_UNACKED,
    };
    collector.send(job);
    await fromCollector<'ready'>();
    // The publisher is its own process, as agents are: it does not share the collector's event loop.
    const publisher = fork(new URL('./ingest-publisher.ts', import.meta.url), [], {
      execArgv: ['--import', 'tsx'],
    });
    trackChild(publisher, `bench publisher ${database}`);
    const publisherPid = publisher.pid!;
    // Inherited from this process already; said explicitly, as for the others.
    if (PINNED) pin(publisherPid, 1, 'the publisher');
    // The publisher's next message; one that ends first (a refused message, a lost connection: its stderr says
    // why) fails the bench, not hangs it.
    const fromPublisher = <T>() =>
      new Promise<T>((resolve, reject) => {
        const ended = (code: number | null, signal: string | null) =>
          reject(new Error(`the bench's publisher ended (${signal ?? `exit ${code}`}); its stderr is above`));
        publisher.once('exit', ended);
        publisher.once('message', (m) => {
          publisher.off('exit', ended);
          resolve(m as T);
        });
      });
    const ready = fromPublisher<'ready'>(); // connected, payloads built
    publisher.send({ url: mosquitto.url, messages: N, devices: DEVICES, t0: T0 });
    await ready;
    await settle(database);
    const t = performance.now();
    const cpu0 = { influxd: cpuOf(influxdPid), broker: cpuOf(mosquittoPid), collector: cpuOf(collectorPid) };
    const accepted = fromCollector<{ accepted: number }>();
    // The publisher reports its own CPU (it exits once done, taking its /proc entry with it).
    const done = fromPublisher<{ publishedMs: number; cpuS: number }>();
    collector.send('go');
    publisher.send('go');
    const { publishedMs: published, cpuS: publisherCpuS } = await done;
    await accepted;
    const receivedS = (performance.now() - t) / 1000;
    if (!floor) await waitForCount(influxd, database, 'host', 'cpu_pct', N);
    const e2eS = (performance.now() - t) / 1000;
    const cpu = {
      influxd: cpuOf(influxdPid) - cpu0.influxd,
      broker: cpuOf(mosquittoPid) - cpu0.broker,
      publisher: publisherCpuS,
      collector: cpuOf(collectorPid) - cpu0.collector,
    };
    const cpuS = cpu.collector;
    publisher.kill();
    const stopped = fromCollector<{
      batches: number;
      version: string | undefined;
      threads: { main: number; other: number };
    }>();
    collector.send('stop');
    const { batches, version, threads } = await stopped;
    return {
      published,
      receivedS,
      e2eS,
      cpuS,
      cpu,
      publisherPid,
      collectorPid,
      threads,
      batches,
      version,
    };
  };
  const after = await endToEnd('e2e', false);
  const onReceipt = await endToEnd('e2e_ack_on_receipt', true);
  const floor = await endToEnd('floor', false, true);
  const e2eS = after.e2eS;
  const maxUnacked = MAX_UNACKED ?? collectorConfigSchema.parse({}).acks.maxUnackedMessages;

  console.log(
    `ingest bench: ${fmt(N)} telemetry messages from ${fmt(DEVICES)} devices, ${pointsPerMessage.toFixed(1)} points each`,
  );
  console.log(
    `  influxd ${after.version}, Mosquitto broker (MQTT 5), QoS 1; fresh database per run, each started once influxd was idle (waited: ${settledS.join(', ')})`,
  );
  if (values.profile)
    console.log(
      `  profiled (--profile ${values.profile}): the collector's figures include the CPU profiler's own cost`,
    );
  console.log(
    PINNED
      ? `  pinned (taskset -a): influxd (pid ${influxdPid}) → core 0; mosquitto (pid ${mosquittoPid}), publisher (pid ${after.publisherPid}, then ${onReceipt.publisherPid}), collector (pid ${after.collectorPid}, then ${onReceipt.collectorPid}; receive floor ${floor.collectorPid}, its publisher ${floor.publisherPid}${collectorFlags.length ? `; node ${collectorFlags.join(' ')}` : ''}), bench process = raw writer (pid ${process.pid}) → core 1`
      : '  unpinned: the scheduler places every process',
  );
  console.log(
    `raw line protocol (5,000-line POSTs): ${fmt(N / rawS)} messages/s (${fmt(lines.length / rawS)} points/s; ${fmt(lines.length)} points, ${fmt(presenceLines)} of them presence, as the collector writes them)`,
  );
  console.log(
    `  CPU per 10,000 messages: influxd ${per10k(rawCpu.influxd)}, raw writer ${per10k(rawCpu.writer)}`,
  );
  const cpuLine = (r: typeof after) =>
    `influxd ${per10k(r.cpu.influxd)}, broker ${per10k(r.cpu.broker)}, publisher ${per10k(r.cpu.publisher)}, collector ${per10k(r.cpu.collector)} (its own process: MQTT receive, PUBACKs and writes included; main thread ${per10k(r.threads.main)}, other threads ${per10k(r.threads.other)}; target ≤ 0.30 s)`;
  const line = (r: typeof after) =>
    `${fmt(N / r.e2eS)} messages/s (published in ${(r.published / 1000).toFixed(1)} s, all received by the collector after ${r.receivedS.toFixed(1)} s, queryable after ${r.e2eS.toFixed(1)} s; ${fmt(r.batches)} write requests)`;
  console.log(
    `end to end (MQTT → collector → InfluxDB, until queryable), PUBACK after the write (at most ${fmt(maxUnacked)} unacknowledged): ${line(after)}`,
  );
  console.log(`  CPU per 10,000 messages: ${cpuLine(after)}`);
  console.log(
    `  collector: ${fmt(N / after.receivedS)} messages/s received and handled, ${fmt(N / after.cpuS)} messages per CPU-second; collector CPU ÷ influxd CPU ${(after.cpu.collector / after.cpu.influxd).toFixed(2)}`,
  );
  console.log(
    `  the same with PUBACK on receipt (before #13; loses acknowledged messages on a crash): ${line(onReceipt)}`,
  );
  console.log(`    CPU per 10,000 messages: ${cpuLine(onReceipt)}`);
  console.log(
    `  cost of acknowledging after the write: end-to-end throughput ×${(onReceipt.e2eS / after.e2eS).toFixed(2)} (${fmt(N / onReceipt.e2eS)} → ${fmt(N / after.e2eS)} messages/s), collector CPU ${onReceipt.cpuS.toFixed(1)} s → ${after.cpuS.toFixed(1)} s, write requests ${fmt(onReceipt.batches)} → ${fmt(after.batches)}`,
  );
  console.log(
    `receive floor (the collector's MQTT session, its tap and batched PUBACKs, nothing decoded or written): CPU per 10,000 messages ${per10k(floor.cpu.collector)} (main thread ${per10k(floor.threads.main)}, other threads ${per10k(floor.threads.other)}); broker ${per10k(floor.cpu.broker)}, publisher ${per10k(floor.cpu.publisher)}`,
  );
  console.log(
    `  the collector above the floor (about its own work — decode, validate, attribute, points, writes; the floor acknowledges without waiting for a write, so less than the whole difference is MQTT's): ${per10k(after.cpu.collector - floor.cpu.collector)}; the floor is ${((100 * floor.cpu.collector) / after.cpu.collector).toFixed(0)} % of the collector's CPU and ${((100 * floor.cpu.collector * 10_000) / N / 0.3).toFixed(0)} % of the 0.30 s target`,
  );
  console.log(
    `ratio end-to-end ÷ raw throughput: ${(rawS / e2eS).toFixed(2)} (target ≥ 0.90; ${PINNED ? 'pinned' : 'unpinned'})`,
  );
  console.log(
    `collector alone (decode + validate + serialise, no writes; best of 3 passes): ${fmt(N / aloneS)} messages/s (target ≥ 50,000)`,
  );
} finally {
  await mosquitto.dispose();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
}
