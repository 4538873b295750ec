// The SNMP poller: npm run poller -- --config poller.yaml   (section `poller:`; targets carry secrets)
import { runMain } from '../../common/cli.js';
import { Poller, pollerConfigSchema } from './poller.js';

await runMain(
  {
    name: 'poller',
    command: 'npm run poller --',
    about:
      "The SNMP poller: polls each target router's uplink (IF-MIB counters, sysUpTime) on its interval and publishes rates and status over MQTT (agents/snmp/README.md).",
  },
  { poller: pollerConfigSchema },
  (config, log) => [new Poller(config.poller, { log })],
);
