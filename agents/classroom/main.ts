// The classroom agent: npm run agent -- --config agent.yaml
import { runMain } from '../../common/cli.js';
import { agentConfigSchema, ClassroomAgent } from './agent.js';

await runMain('agent', { agent: agentConfigSchema }, (config, log) => [
  new ClassroomAgent(config.agent, { log }),
]);
