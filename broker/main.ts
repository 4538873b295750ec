// The embedded broker and its credential tool: `npm run broker -- run|users …`; each command's usage is its
// CliCommand below (`--help`). A generated secret is printed once, on stdout; it is stored only as a scrypt hash.
import { readFileSync } from 'node:fs';
import {
  type CliCommand,
  fail as failWith,
  helpText,
  parseCli,
  processConfigSchema,
  runMain,
  serviceOptions,
  usageError,
  wantsHelp,
} from '../common/cli.js';
import { ConfigError, loadConfig } from '../common/config.js';
import { Broker, brokerConfigSchema } from './broker.js';
import { CredentialStore, CredentialsError } from './credentials.js';

const [command, ...rest] = process.argv.slice(2);

const BROKER: CliCommand = {
  name: 'broker',
  command: 'npm run broker --',
  synopsis: [
    'run [--config FILE] [--print-config]',
    'users add|rotate|revoke|list … [--config FILE | --file FILE]',
  ],
  about:
    'The embedded MQTT broker and its credentials; `npm run broker -- <command> --help` describes each command (broker/README.md).',
  options: {},
};
const RUN = {
  name: 'broker', // also the logger's name
  command: 'npm run broker -- run',
  about:
    'Runs the embedded MQTT broker: deny by default, each client by the username and secret in broker.credentialsFile (re-read when it changes), with per-client topic rights and limits.',
};
const USERS = {
  name: 'broker users',
  command: 'npm run broker -- users',
  synopsis: [
    'add <username> --role device --school S --device D [--password-stdin]',
    'add <username> --role poller --schools S1,S2 [--devices S1/gw-01,S2/gw-01] [--password-stdin]',
    'add <username> --role poller --shard-count N [--shard-index I] [--shard-regions R1,R2] [--password-stdin]',
    'add <username> --role collector|reader [--password-stdin]',
    'rotate <username> [--password-stdin]',
    'revoke <username>',
    'list',
  ],
  about:
    "Manages the broker credentials in broker.credentialsFile (default var/broker-credentials.yaml), which a running broker re-reads when it changes. A collector stores readings; a reader (the API) only subscribes. A generated secret is printed once, on stdout; only its scrypt hash is stored; `rotate` disconnects clients using the old one, `revoke` closes the user's connections.",
  options: {
    role: { type: 'string', value: 'device|poller|collector|reader', help: 'add: what the user may do' },
    school: { type: 'string', value: 'SCHOOL', help: 'add --role device: the school of the device' },
    device: { type: 'string', value: 'DEVICE', help: 'add --role device: the device id' },
    schools: {
      type: 'string',
      value: 'S1,S2',
      help: 'add --role poller: the schools it may publish for (default: those of --devices)',
    },
    devices: {
      type: 'string',
      value: 'S1/D1,S2/D2',
      help: 'add --role poller: bind it to these devices only',
    },
    'shard-count': {
      type: 'string',
      value: 'N',
      help: "add --role poller: assigned a shard instead of a school list — the schools of the registry (broker.registryFile) the poller's shard {index, count, regions} takes, kept current as the registry changes",
    },
    'shard-index': { type: 'string', value: 'I', help: 'add --role poller: the shard index (default 0)' },
    'shard-regions': {
      type: 'string',
      value: 'R1,R2',
      help: 'add --role poller: the shard regions (region paths, e.g. 330000/330100/330106)',
    },
    'password-stdin': {
      type: 'boolean',
      help: 'add, rotate: read a chosen password (at least 12 characters) from stdin instead of generating one',
    },
    config: serviceOptions(['broker']).config,
    file: {
      type: 'string',
      value: 'FILE',
      help: 'the credentials file itself, instead of broker.credentialsFile of --config',
    },
  },
  positionals: true,
} satisfies CliCommand;

const fail: (message: string) => never = (message) => failWith('broker', message);

async function users(args: string[]): Promise<void> {
  const { values, positionals } = parseCli(USERS, args);
  const [action, username] = positionals;
  let file = values.file;
  try {
    file ??= loadConfig(processConfigSchema({ broker: brokerConfigSchema }), { file: values.config }).broker
      .credentialsFile;
  } catch (e) {
    if (e instanceof ConfigError) fail(`configuration error: ${e.message}`);
    throw e;
  }
  const store = new CredentialStore(file);
  const secret = values['password-stdin'] ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : undefined;
  if (secret !== undefined && secret.length < 12) fail('a chosen password must have at least 12 characters');
  try {
    switch (action) {
      case 'add': {
        if (!username) usageError(USERS, 'add needs a username');
        let spec: Parameters<CredentialStore['add']>[0];
        if (values.role === 'device') {
          if (!values.school || !values.device) fail('a device needs --school and --device');
          spec = { username, role: 'device', school: values.school, device: values.device };
        } else if (values.role === 'poller' && values['shard-count'] !== undefined) {
          // Its schools derived by the broker from the registry, as the poller derives its targets (#17).
          if (values.schools || values.devices) fail('a poller has either --shard-* or --schools/--devices');
          const int = (v: string | undefined, name: string) => {
            if (v === undefined || !/^\d{1,6}$/.test(v)) fail(`${name} must be a whole number`);
            return Number(v);
          };
          const regions = values['shard-regions']?.split(',').filter(Boolean);
          spec = {
            username,
            role: 'poller',
            shard: {
              index: int(values['shard-index'] ?? '0', '--shard-index'),
              count: int(values['shard-count'], '--shard-count'),
              ...(regions ? { regions } : {}),
            },
          };
        } else if (values.role === 'poller') {
          const list = (v: string | undefined) => v?.split(',').filter(Boolean);
          const devices = list(values.devices);
          // Without --schools, the schools of the listed devices.
          const schools = list(values.schools) ?? [...new Set(devices?.map((d) => d.split('/')[0]!))];
          if (schools.length === 0) fail('a poller needs --schools S1,S2,… and/or --devices S1/D1,S2/D2,…');
          spec = { username, role: 'poller', schools, ...(devices ? { devices } : {}) };
        } else if (values.role === 'collector' || values.role === 'reader') {
          spec = { username, role: values.role };
        } else fail('--role must be device, poller, collector or reader');
        const s = await store.add(spec, secret);
        if (!secret) process.stdout.write(`${s}\n`);
        process.stderr.write(`added ${username} (${values.role}) to ${file}\n`);
        return;
      }
      case 'rotate': {
        if (!username) usageError(USERS, 'rotate needs a username');
        const s = await store.rotate(username, secret);
        if (!secret) process.stdout.write(`${s}\n`);
        process.stderr.write(
          `rotated ${username}; connected clients using the old secret are disconnected\n`,
        );
        return;
      }
      case 'revoke':
        if (!username) usageError(USERS, 'revoke needs a username');
        await store.revoke(username);
        process.stderr.write(`revoked ${username}; its connections are closed\n`);
        return;
      case 'list':
        await store.load();
        for (const e of store.list()) {
          const scope =
            e.role === 'device'
              ? `${e.school}/${e.device}`
              : e.role === 'poller'
                ? e.shard
                  ? `shard ${e.shard.index}/${e.shard.count}${e.shard.regions ? ` of ${e.shard.regions.join(',')}` : ''}`
                  : (e.devices ?? e.schools ?? []).join(',')
                : '';
          process.stdout.write(`${e.username}\t${e.role}\t${scope}\t${e.rotated ?? e.created}\n`);
        }
        return;
      default:
        usageError(USERS, action ? `unknown action ${action}` : 'add, rotate, revoke or list?');
    }
  } catch (err) {
    if (err instanceof CredentialsError) fail(err.message);
    throw err;
  }
}

if (command === 'users') await users(rest);
else if (command === 'run')
  await runMain(
    RUN,
    { broker: brokerConfigSchema },
    (config, log) => [new Broker(config.broker, { log })],
    rest,
  );
else if (command === undefined) {
  process.stderr.write(helpText(BROKER));
  process.exit(2);
} else if (wantsHelp([command, ...rest])) process.stdout.write(helpText(BROKER));
else usageError(BROKER, `unknown command ${command}`);
