// The classroom agent: npm run agent -- --config agent.yaml
import { runMain } from '../../common/cli.js';
import { agentConfigSchema, ClassroomAgent } from './agent.js';

// Not a top-level await: the single executable (scripts/build-agent-sea.ts) runs this as CommonJS. A rejection
// ends the process as an unhandled one (exit code 1), as it would have with the await.
void runMain(
  {
    name: 'agent',
    command: 'npm run agent --',
    about:
      'The classroom agent: reads the teacher PC, the display (PJLink, a command or simulated) and the activity at the computer (Windows helper, X11, a command or simulated) and publishes status and telemetry v2 over MQTT, spooling to disk while the broker is unreachable (agents/README.md). Bundled: `node cfm-agent.mjs` takes the same options.',
  },
  { agent: agentConfigSchema },
  (config, log) => [new ClassroomAgent(config.agent, { log })],
);
