// The whole stack on one machine, for a first look and for development: npm run stack
// Today it starts a local InfluxDB (data under var/influxdb) and the storage layer against it, and reports
// their state; the broker, collector, pollers, API and the simulated city join it as their issues land.
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { describeConfig, loadConfig } from '../common/config.js';
import { Influxd } from '../common/dev/influxd.js';
import { createLogger, logConfigSchema } from '../common/log.js';
import { influxConfigSchema, Storage } from '../common/storage/storage.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    'print-config': { type: 'boolean', default: false },
    'influx-port': { type: 'string', default: '18086' },
  },
});

const schema = z.strictObject({ influx: influxConfigSchema, log: logConfigSchema });
const config = loadConfig(schema, { file: values.config });
if (values['print-config']) {
  console.log(describeConfig(config));
  process.exit(0);
}
const log = createLogger('stack', config.log);

const dataDir = fileURLToPath(new URL('../var/influxdb', import.meta.url));
mkdirSync(dataDir, { recursive: true });
const influxd = new Influxd({ dataDir, port: Number(values['influx-port']) });
log.info({ dataDir }, 'starting local InfluxDB');
await influxd.start();
const storage = new Storage({ ...config.influx, url: influxd.url }, { log });

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await storage.stop();
  await influxd.stop();
  log.info('stopped');
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const info = await storage.start();
console.log(
  `\nInfluxDB ${info.version} on ${influxd.url} (database "${config.influx.database}", data in ${dataDir})`,
);
console.log('Press Ctrl-C to stop.');
