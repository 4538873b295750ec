import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { UPLINK_REGIONS, uplinkSchool } from '../helpers/uplinks.js';

/**
 * `npm run api -- import` with `api.pollerCredentialsFile` or `api.credentialNamesFile` (#17), and `npm run poller
 * -- credential-names`, which writes the latter: the commands an operator runs, as processes. An unknown
 * credential name is refused by row and column; the credentials' secrets are never printed.
 */
const dir = mkdtempSync(join(tmpdir(), 'cfm-import-creds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const COMMUNITY = 'cli-community-0b7e';
const credentialsFile = join(dir, 'poller-credentials.yaml');
writeFileSync(credentialsFile, stringify({ snmp: { 'xihu-v2': { version: '2c', community: COMMUNITY } } }), {
  mode: 0o600,
});
writeFileSync(
  join(dir, 'api.yaml'),
  stringify({ api: { registryFile: join(dir, 'registry.json'), pollerCredentialsFile: credentialsFile } }),
);
writeFileSync(
  join(dir, 'fleet.yaml'),
  stringify({ regions: UPLINK_REGIONS, schools: [uplinkSchool('3301060001', { uplinkDevice: undefined })] }),
);

/** A real command line: exit status, stdout and stderr. */
function run(args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}
const importFiles = (...files: string[]) =>
  run(['api/main.ts', 'import', ...files, '--config', join(dir, 'api.yaml')]);
const devices = (ref: string) => {
  const f = join(dir, 'devices.csv');
  writeFileSync(f, `设备编号,学校标识码,设备类型,管理地址,凭据名称\ngw,3301060001,路由器,10.1.0.1,${ref}\n`);
  return f;
};

/** An import naming an unknown credential is refused by row and column; one naming `known` is written. */
function checksNames(importWith: typeof importFiles, known: string, registryFile: string) {
  const bad = importWith(join(dir, 'fleet.yaml'), devices('nobody'));
  expect(bad.status).toBe(2);
  expect(bad.stderr).toContain(
    "devices.csv, row 2, column E (凭据名称): credential nobody is not in the pollers' credentials file",
  );
  const ok = importWith(join(dir, 'fleet.yaml'), devices(known));
  expect(ok.status, ok.stderr).toBe(0);
  expect(JSON.parse(readFileSync(registryFile, 'utf8')).devices).toEqual([
    expect.objectContaining({ id: 'gw', credentialRef: known, mgmtAddress: '10.1.0.1' }),
  ]);
  return { bad, ok };
}

describe('npm run api -- import with api.pollerCredentialsFile', () => {
  it('refuses an unknown credential by row and column, imports a known one, and refuses all when the file is gone', () => {
    const { bad, ok } = checksNames(importFiles, 'xihu-v2', join(dir, 'registry.json'));
    rmSync(credentialsFile);
    const gone = importFiles(devices('xihu-v2'));
    expect(gone.status).toBe(2);
    expect(gone.stderr).toContain(
      `import refused, nothing changed: credentials file ${credentialsFile}: cannot be read (ENOENT)`,
    );
    for (const r of [bad, ok, gone]) expect(r.stderr + r.stdout).not.toContain(COMMUNITY);
  });

  it.each([
    [
      'the names-only copy',
      'credentialNames: [xihu-v2]\n',
      "holds `credentialNames:`, the names-only copy of the pollers' credentials file: set api.credentialNamesFile to it, not api.pollerCredentialsFile",
    ],
    [
      'a typo beside snmp',
      `snmp: {}\nsnpm:\n  xihu-v2: { version: '2c', community: ${COMMUNITY} }\n`,
      'unknown key "snpm" (the only key is snmp:)',
    ],
    ['a list', '- xihu-v2\n', 'must be a mapping with the key snmp:'],
  ])(
    'refuses a credentials file that is %s: every import, naming the file, quoting no secret',
    (_what, text, says) => {
      const file = join(dir, 'wrong-credentials.yaml');
      writeFileSync(file, text, { mode: 0o600 });
      const config = join(dir, 'api-wrong.yaml');
      writeFileSync(
        config,
        stringify({ api: { registryFile: join(dir, 'registry-wrong.json'), pollerCredentialsFile: file } }),
      );
      const r = run([
        'api/main.ts',
        'import',
        join(dir, 'fleet.yaml'),
        devices('xihu-v2'),
        '--config',
        config,
      ]);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`import refused, nothing changed: credentials file ${file}: ${says}`);
      expect(r.stderr).not.toContain('is not in the pollers');
      expect(r.stderr + r.stdout).not.toContain(COMMUNITY);
    },
  );
});

describe('npm run poller -- credential-names, and api.credentialNamesFile', () => {
  const V3 = { user: 'cfm-poller-77', authKey: 'auth-key-5e1c9a', privKey: 'priv-key-a04f3d' };
  const full = join(dir, 'full-credentials.yaml');
  const names = join(dir, 'credential-names.yaml');
  const secrets = [COMMUNITY, V3.user, V3.authKey, V3.privKey];
  writeFileSync(
    full,
    stringify({
      snmp: {
        'xihu-v2': { version: '2c', community: COMMUNITY },
        'xihu-v3': { version: '3', level: 'authPriv', authProtocol: 'sha256', privProtocol: 'aes', ...V3 },
      },
    }),
    { mode: 0o600 },
  );
  const namesConfig = join(dir, 'api-names.yaml');
  writeFileSync(
    namesConfig,
    stringify({ api: { registryFile: join(dir, 'registry-names.json'), credentialNamesFile: names } }),
  );
  const importWithNames = (...files: string[]) =>
    run(['api/main.ts', 'import', ...files, '--config', namesConfig]);

  it('writes the names and no secret; an import checked against that copy refuses an unknown name and takes a known one', () => {
    const made = run(['agents/snmp/main.ts', 'credential-names', '--credentials-file', full]);
    expect(made.status, made.stderr).toBe(0);
    expect(made.stdout).toContain('credentialNames:');
    for (const s of secrets) expect(made.stdout + made.stderr).not.toContain(s);
    writeFileSync(names, made.stdout);
    expect(parse(made.stdout)).toEqual({ credentialNames: ['xihu-v2', 'xihu-v3'] });

    checksNames(importWithNames, 'xihu-v3', join(dir, 'registry-names.json'));
  });

  it('stdout closed before the names are written (`| head -c 0`, a failed ssh): one line on stderr and exit 2, no success announced', async () => {
    const many = join(dir, 'many-credentials.yaml');
    const snmp = Object.fromEntries(
      Array.from({ length: 50 }, (_, i) => [`campus-${i}`, { version: '2c', community: COMMUNITY }]),
    );
    writeFileSync(many, stringify({ snmp }), { mode: 0o600 });
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'agents/snmp/main.ts', 'credential-names', '--credentials-file', many],
      { cwd: new URL('../..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    // The reader gone before the first byte: every write the command makes meets a closed pipe (whatever the
    // size, so the outcome does not depend on how fast either side runs).
    child.stdout.destroy();
    const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    expect(status, stderr).toBe(2);
    expect(stderr).toBe('poller: the names were not all written to stdout (EPIPE): its copy is incomplete\n');
  });

  it('a credentials file the poller would refuse gives no names: the error names the file and key, not the value', () => {
    const broken = join(dir, 'broken-credentials.yaml');
    writeFileSync(
      broken,
      stringify({ snmp: { 'xihu-v2': { version: '2c', community: COMMUNITY, port: 1 } } }),
    );
    const r = run(['agents/snmp/main.ts', 'credential-names', '--credentials-file', broken]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`poller: credentials file ${broken}: snmp.xihu-v2`);
    expect(r.stderr).not.toContain(COMMUNITY);
  });

  it.each([
    ['not YAML', 'credentialNames: [a\n  b: {', 'not valid YAML or JSON (line'],
    [
      'the full credentials file',
      'FULL',
      "holds `snmp:`, the pollers' full credentials file with its secrets",
    ],
    [
      'a secret beside the names',
      `credentialNames: [xihu-v2]\ncommunity: ${COMMUNITY}\n`,
      'Unrecognized key',
    ],
    ['a name that is no name', 'credentialNames: ["two words"]\n', 'credentialNames.0'],
    ['no names', 'names: [xihu-v2]\n', 'credentialNames: Invalid input: expected array'],
  ])(
    'refuses a names file that is %s: every import, naming the file, quoting no secret',
    (_what, text, says) => {
      writeFileSync(names, text === 'FULL' ? readFileSync(full) : text);
      const r = importWithNames(devices('xihu-v2'));
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`import refused, nothing changed: credential names file ${names}: `);
      expect(r.stderr).toContain(says);
      for (const s of secrets) expect(r.stderr + r.stdout).not.toContain(s);
    },
  );

  it('refuses a config that sets both files', () => {
    const both = join(dir, 'api-both.yaml');
    writeFileSync(
      both,
      stringify({
        api: { registryFile: join(dir, 'r.json'), credentialNamesFile: names, pollerCredentialsFile: full },
      }),
    );
    // Refused by the config's schema, naming the file: by an import, by --print-config, by the service.
    for (const [name, args] of [
      ['api', ['import', devices('xihu-v2')]],
      ['api', ['run', '--print-config']],
      ['api-api', ['run', '--role', 'api', '--print-config']],
    ] as const) {
      const r = run(['api/main.ts', ...args, '--config', both]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(
        `${name}: configuration error: ${both}: api.credentialNamesFile: set this or api.pollerCredentialsFile, not both\n`,
      );
      expect(r.stdout).toBe('');
    }
  });
});
