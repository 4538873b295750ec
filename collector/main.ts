// The collector process: npm run collector -- --config config.yaml
import { runMain } from '../common/cli.js';
import { influxConfigSchema, Storage } from '../common/storage/storage.js';
import { Collector, collectorConfigSchema } from './collector.js';

await runMain(
  'collector',
  { influx: influxConfigSchema, collector: collectorConfigSchema },
  (config, log) => {
    const storage = new Storage(config.influx, {
      log,
      // Credentials refused or database gone: stop, so the broker keeps the messages for a healthy collector.
      onFatal: () => process.kill(process.pid, 'SIGTERM'),
    });
    return [
      { name: 'storage', start: async () => void (await storage.start()), stop: () => storage.stop() },
      new Collector(config.collector, { log, storage }),
    ];
  },
);
