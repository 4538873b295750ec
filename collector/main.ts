// The collector process: npm run collector -- --config config.yaml
import { runMain } from '../common/cli.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import { Collector, collectorConfigSchema, FATAL_STORAGE_EXIT_CODE } from './collector.js';

await runMain(
  {
    name: 'collector',
    command: 'npm run collector --',
    about:
      'The collector: subscribes to the readings on the MQTT broker, validates each message, attributes it by the registry and writes it to InfluxDB (collector/README.md).',
  },
  { influx: influxConfigSchema, collector: collectorConfigSchema },
  (config, log) => {
    const storage = new Storage(config.influx, {
      log,
      // Credentials refused or database gone: stop, so the broker keeps the messages for a healthy collector,
      // and exit with FATAL_STORAGE_EXIT_CODE, so systemd records a failure (and restarts, as after any).
      onFatal: () => {
        process.exitCode = FATAL_STORAGE_EXIT_CODE;
        process.kill(process.pid, 'SIGTERM');
      },
    });
    return [
      { name: 'storage', start: async () => void (await storage.start()), stop: () => storage.stop() },
      new Collector(config.collector, { log, storage }),
    ];
  },
);
