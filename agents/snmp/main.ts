// The SNMP poller: npm run poller -- --config poller.yaml   (section `poller:`; targets carry secrets)
import { runMain } from '../../common/cli.js';
import { Poller, pollerConfigSchema } from './poller.js';

await runMain('poller', { poller: pollerConfigSchema }, (config, log) => [
  new Poller(config.poller, { log }),
]);
