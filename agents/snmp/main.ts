// The SNMP poller: npm run poller -- --config poller.yaml   (section `poller:`; targets carry secrets)
// and its tool: npm run poller -- credential-names   (the names-only copy of the credentials file, for the API)
import {
  type CliCommand,
  fail as failWith,
  parseCli,
  processConfigSchema,
  runMain,
  serviceOptions,
} from '../../common/cli.js';
import { ConfigError, loadConfig } from '../../common/config.js';
import { CredentialsFileError, credentialNamesText } from '../../common/credentials-file.js';
import { readCredentialsFile } from './credentials.js';
import { Poller, pollerConfigSchema } from './poller.js';

const CREDENTIAL_NAMES = {
  name: 'poller credential-names',
  command: 'npm run poller -- credential-names',
  synopsis: ['[--credentials-file FILE | --config FILE] > names.yaml'],
  about:
    "Prints the names-only copy of the pollers' credentials file (poller.credentialsFile of --config, or --credentials-file) on stdout, for the API's api.credentialNamesFile: the names of its credentials and no community, user or key. The file is validated as the poller validates it first (an error names the file and the key, never a value), so the API never accepts a name the poller would refuse.",
  options: {
    'credentials-file': {
      type: 'string',
      value: 'FILE',
      help: 'the credentials file itself, instead of poller.credentialsFile of --config',
    },
    config: serviceOptions(['poller']).config,
  },
} satisfies CliCommand;

const fail: (message: string) => never = (message) => failWith('poller', message);

function credentialNames(args: string[]): void {
  const { values } = parseCli(CREDENTIAL_NAMES, args);
  let file = values['credentials-file'];
  try {
    file ??= loadConfig(processConfigSchema({ poller: pollerConfigSchema }), { file: values.config }).poller
      .credentialsFile;
  } catch (e) {
    if (e instanceof ConfigError) fail(`configuration error: ${e.message}`);
    throw e;
  }
  if (file === undefined)
    fail('no credentials file: give --credentials-file, or --config with poller.credentialsFile');
  let names: string[];
  try {
    names = [...readCredentialsFile(file).keys()];
  } catch (e) {
    if (e instanceof CredentialsFileError) fail(e.message);
    throw e;
  }
  // A reader gone before the end (`| head`, a full disk) left a partial copy: a failure like any other, one
  // line and exit 2, not a stack trace after a success. Success is announced once the whole text is written.
  const unwritten = (e: NodeJS.ErrnoException): never =>
    fail(`the names were not all written to stdout (${e.code ?? e.message}): its copy is incomplete`);
  process.stdout.on('error', unwritten);
  process.stdout.write(credentialNamesText(names, file), (e) => {
    if (e) unwritten(e);
    process.stderr.write(`${names.length} credential name(s) of ${file}, without their secrets\n`);
  });
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'credential-names') credentialNames(rest);
else
  await runMain(
    {
      name: 'poller',
      command: 'npm run poller --',
      about:
        "The SNMP poller: polls each target router's uplink (IF-MIB counters, sysUpTime) on its interval and publishes rates and status over MQTT (agents/snmp/README.md). `npm run poller -- credential-names --help`: the names-only copy of its credentials file, for the API.",
    },
    { poller: pollerConfigSchema },
    (config, log) => [new Poller(config.poller, { log })],
  );
