// Child process of bench/ingest.ts: publishes the benchmark's messages at full speed, QoS 1, over several
// connections. Protocol over IPC: parent sends the job, child answers 'ready'; parent sends 'go', child
// answers {publishedMs, cpuS} when every PUBACK is in (cpuS: this process's CPU-seconds since 'go').
import mqtt, { type MqttClient } from 'mqtt';
import { makeTelemetry, topicFor } from './fixtures.js';

const CONNECTIONS = 8;
const WINDOW = 500; // outstanding QoS 1 publishes per connection

type Job = { url: string; messages: number; devices: number; t0: number };
let clients: MqttClient[] = [];
let payloads: string[] = [];
let job: Job;

process.on('message', async (m: Job | 'go') => {
  if (m !== 'go') {
    job = m;
    clients = await Promise.all(
      Array.from({ length: CONNECTIONS }, (_, k) =>
        mqtt.connectAsync(m.url, { clientId: `bench-pub-${k}`, protocolVersion: 5 }),
      ),
    );
    payloads = Array.from({ length: m.messages }, (_, i) =>
      JSON.stringify(makeTelemetry(i, m.devices, m.t0)),
    );
    process.send!('ready');
    return;
  }
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    clients.map(async (c, k) => {
      let inflight: Promise<unknown>[] = [];
      for (let i = k; i < job.messages; i += CONNECTIONS) {
        inflight.push(c.publishAsync(topicFor(i, job.devices), payloads[i]!, { qos: 1 }));
        if (inflight.length >= WINDOW) {
          await Promise.all(inflight);
          inflight = [];
        }
      }
      await Promise.all(inflight);
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  process.send!({ publishedMs: performance.now() - started, cpuS: (cpu.user + cpu.system) / 1e6 });
  await Promise.all(clients.map((c) => c.endAsync()));
  process.exit(0);
});
