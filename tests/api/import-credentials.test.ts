import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { UPLINK_REGIONS, uplinkSchool } from '../helpers/uplinks.js';

/**
 * `npm run api -- import` with `api.pollerCredentialsFile` (#17): the command an operator runs, as a process.
 * An unknown credential name is refused by row and column; the credentials' secrets are never printed.
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

/** The real command line: exit status and stderr. */
function importFiles(...files: string[]): { status: number | null; stderr: string; stdout: string } {
  const args = ['--import', 'tsx', 'api/main.ts', 'import', ...files, '--config', join(dir, 'api.yaml')];
  const r = spawnSync(process.execPath, args, {
    cwd: new URL('../..', import.meta.url).pathname,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}
const devices = (ref: string) => {
  const f = join(dir, 'devices.csv');
  writeFileSync(f, `设备编号,学校标识码,设备类型,管理地址,凭据名称\ngw,3301060001,路由器,10.1.0.1,${ref}\n`);
  return f;
};

describe('npm run api -- import with api.pollerCredentialsFile', () => {
  it('refuses an unknown credential by row and column, imports a known one, and refuses all when the file is gone', () => {
    const bad = importFiles(join(dir, 'fleet.yaml'), devices('nobody'));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(
      "devices.csv, row 2, column E (凭据名称): credential nobody is not in the pollers' credentials file",
    );
    const ok = importFiles(join(dir, 'fleet.yaml'), devices('xihu-v2'));
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'registry.json'), 'utf8')).devices).toEqual([
      expect.objectContaining({ id: 'gw', credentialRef: 'xihu-v2', mgmtAddress: '10.1.0.1' }),
    ]);
    rmSync(credentialsFile);
    const gone = importFiles(devices('xihu-v2'));
    expect(gone.status).toBe(2);
    expect(gone.stderr).toContain(
      `import refused, nothing changed: credentials file ${credentialsFile}: cannot be read (ENOENT)`,
    );
    for (const r of [bad, ok, gone]) expect(r.stderr + r.stdout).not.toContain(COMMUNITY);
  });
});
