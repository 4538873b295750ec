// The embedded broker and its credential tool.
//   npm run broker -- run --config config.yaml
//   npm run broker -- users add <username> --role device --school S --device D [--password-stdin] [--config f]
//   npm run broker -- users add <username> --role poller --schools S1,S2 [--devices S1/gw-01,S2/gw-01]
//   npm run broker -- users add <username> --role collector      (stores readings)
//   npm run broker -- users add <username> --role reader         (subscribes only: the API's live view)
//   npm run broker -- users rotate <username> [--password-stdin]
//   npm run broker -- users revoke <username>
//   npm run broker -- users list
// A generated secret is printed once, on stdout; it is stored only as a scrypt hash.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { processConfigSchema, runMain } from '../common/cli.js';
import { loadConfig } from '../common/config.js';
import { Broker, brokerConfigSchema } from './broker.js';
import { CredentialStore, CredentialsError } from './credentials.js';

const [command, ...rest] = process.argv.slice(2);

function fail(message: string): never {
  process.stderr.write(`broker: ${message}\n`);
  process.exit(2);
}

async function users(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      file: { type: 'string' },
      role: { type: 'string' },
      school: { type: 'string' },
      device: { type: 'string' },
      schools: { type: 'string' },
      devices: { type: 'string' },
      'password-stdin': { type: 'boolean', default: false },
    },
  });
  const [action, username] = positionals;
  const file =
    values.file ??
    loadConfig(processConfigSchema({ broker: brokerConfigSchema }), { file: values.config }).broker
      .credentialsFile;
  const store = new CredentialStore(file);
  const secret = values['password-stdin'] ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : undefined;
  if (secret !== undefined && secret.length < 12) fail('a chosen password must have at least 12 characters');
  try {
    switch (action) {
      case 'add': {
        if (!username) fail('users add <username> --role device|poller|collector|reader');
        let spec: Parameters<CredentialStore['add']>[0];
        if (values.role === 'device') {
          if (!values.school || !values.device) fail('a device needs --school and --device');
          spec = { username, role: 'device', school: values.school, device: values.device };
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
        if (!username) fail('users rotate <username>');
        const s = await store.rotate(username, secret);
        if (!secret) process.stdout.write(`${s}\n`);
        process.stderr.write(
          `rotated ${username}; connected clients using the old secret are disconnected\n`,
        );
        return;
      }
      case 'revoke':
        if (!username) fail('users revoke <username>');
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
                ? (e.devices ?? e.schools).join(',')
                : '';
          process.stdout.write(`${e.username}\t${e.role}\t${scope}\t${e.rotated ?? e.created}\n`);
        }
        return;
      default:
        fail('users add|rotate|revoke|list');
    }
  } catch (err) {
    if (err instanceof CredentialsError) fail(err.message);
    throw err;
  }
}

if (command === 'users') await users(rest);
else if (command === 'run') {
  await runMain(
    'broker',
    { broker: brokerConfigSchema },
    (config, log) => [new Broker(config.broker, { log })],
    rest,
  );
} else fail('usage: broker run [--config f] | broker users add|rotate|revoke|list …');
