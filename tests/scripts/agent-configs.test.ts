// scripts/agent-configs.ts: one agent.yaml and one broker user per classroom PC, from a CSV.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentConfigSchema } from '../../agents/classroom/agent.js';
import { CredentialStore } from '../../broker/credentials.js';
import { processConfigSchema } from '../../common/cli.js';
import { loadConfig } from '../../common/config.js';
import { AgentConfigsError, agentConfigs } from '../../scripts/agent-configs.js';

const exec = promisify(execFile);
const repo = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;
let credentials: string;
let out: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-agent-configs-'));
  credentials = join(dir, 'credentials.yaml');
  out = join(dir, 'agents');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function csv(text: string): string {
  const file = join(dir, 'pcs.csv');
  writeFileSync(file, text);
  return file;
}

const HEADER = 'computer,school,device,classroom,region,kind,displayHost\n';

describe('agent configurations for a rollout', () => {
  it('writes one file per PC, owner-only, that the agent accepts, with a broker user whose secret it holds', async () => {
    const devices = csv(
      `\uFEFF${HEADER}c0701-ops,3133001234,c0701-ops,c0701,330000/330100/330106,panel,192.168.70.21\nT-PC-2,3133001234,c0702-pc,,,teacher_pc,\n`,
    );
    const r = await agentConfigs({ devices, out, credentials });
    expect(readdirSync(out).sort()).toEqual(['C0701-OPS.yaml', 'T-PC-2.yaml']);
    expect(r.users).toEqual(['dev-3133001234-c0701-ops', 'dev-3133001234-c0702-pc']);
    expect(statSync(out).mode & 0o777).toBe(0o700);

    const store = new CredentialStore(credentials);
    await store.load();
    for (const f of r.files) {
      expect(statSync(f).mode & 0o777).toBe(0o600);
      const config = loadConfig(processConfigSchema({ agent: agentConfigSchema }), { file: f, env: {} });
      const auth = await store.authenticate(config.agent.mqtt.username!, config.agent.mqtt.password!);
      expect(auth?.principal).toMatchObject({
        role: 'device',
        school: '3133001234',
        device: config.agent.device,
      });
    }
    const first = loadConfig(processConfigSchema({ agent: agentConfigSchema }), {
      file: r.files[0]!,
      env: {},
    });
    expect(first.agent).toMatchObject({
      school: '3133001234',
      device: 'c0701-ops',
      classroom: 'c0701',
      region: '330000/330100/330106',
      kind: 'panel',
      display: { source: 'pjlink', host: '192.168.70.21' },
      mqtt: { url: 'mqtts://mqtt.edu.example:8883' }, // the template's
      // The template's too: the service reads the activity from the session helper install.ps1 registers.
      activity: { source: 'windows' },
      windowsHelper: { sessionPipe: '\\\\.\\pipe\\cfm-activity' },
    });
    const second = loadConfig(processConfigSchema({ agent: agentConfigSchema }), {
      file: r.files[1]!,
      env: {},
    });
    expect(second.agent.display).toEqual({ source: 'none' });
    expect(second.agent.classroom).toBeUndefined();
  });

  // After a first good row (row 2), which must not be written either.
  const refused: [string, string, string, RegExp][] = [
    [
      'a PC name that is a path',
      HEADER,
      '../x,3133001234,d1,,,,\n',
      /row 3: computer: must be a computer name/,
    ],
    [
      'a PC name too long for Windows',
      HEADER,
      'ABCDEFGHIJKLMNOP,3133001234,d1,,,,\n',
      /row 3: computer: must be/,
    ],
    [
      'a school id the topics cannot carry',
      HEADER,
      'PC1,33/01,d1,,,,\n',
      /row 3: agent\.school: must be 1-64 of/,
    ],
    ['a kind the agent does not know', HEADER, 'PC1,3133001234,d1,,,fridge,\n', /row 3: agent\.kind: /],
    [
      'the same PC twice',
      HEADER,
      'PC1,3133001234,d1,,,,\npc1,3133001234,d2,,,,\n',
      /row 4: computer PC1 twice/,
    ],
    [
      'the same device twice',
      HEADER,
      'PC1,3133001234,d1,,,,\nPC2,3133001234,d1,,,,\n',
      /row 4: device 3133001234\/d1 twice/,
    ],
    [
      'a column it does not know',
      `${HEADER.trim()},password\n`,
      'PC1,3133001234,d1,,,,,x\n',
      /pcs\.csv: column "password" is not one of computer, school, device, /,
    ],
  ];
  for (const [what, header, rows, error] of refused) {
    it(`refuses ${what}, naming it, and changes nothing`, async () => {
      const extra = header === HEADER ? '' : ',';
      const devices = csv(`${header}PC0,3133001234,d0,,,,${extra}\n${rows}`);
      await expect(agentConfigs({ devices, out, credentials })).rejects.toThrow(error);
      await expect(agentConfigs({ devices, out, credentials })).rejects.toBeInstanceOf(AgentConfigsError);
      expect(existsSync(out)).toBe(false);
      expect(existsSync(credentials)).toBe(false);
    });
  }

  it('refuses a device whose broker user exists, or a file it would overwrite', async () => {
    const store = new CredentialStore(credentials);
    await store.add({ username: 'dev-3133001234-d1', role: 'device', school: '3133001234', device: 'd1' });
    const devices = csv(`${HEADER}PC1,3133001234,d1,,,,\n`);
    await expect(agentConfigs({ devices, out, credentials })).rejects.toThrow(
      /row 2: broker user dev-3133001234-d1 exists \(a PC being replaced: npm run broker -- users rotate/,
    );
    const again = csv(`${HEADER}PC2,3133001234,d2,,,,\n`);
    await agentConfigs({ devices: again, out, credentials });
    const other = csv(`${HEADER}pc2,3133001234,d3,,,,\n`);
    await expect(agentConfigs({ devices: other, out, credentials })).rejects.toThrow(
      /PC2\.yaml exists: not overwritten/,
    );
    await store.load();
    expect(store.list().map((u) => u.username)).toEqual(['dev-3133001234-d1', 'dev-3133001234-d2']);
  });

  it('takes the CSV of the Windows guide as it is written there', async () => {
    const guide = readFileSync(join(repo, 'docs/deploy-windows-agent.md'), 'utf8');
    const r = await agentConfigs({
      devices: csv(/```csv\n([\s\S]*?)```/.exec(guide)![1]!),
      out,
      credentials,
    });
    expect(r.files.map((f) => basename(f))).toEqual(['C0701-OPS.yaml', 'C0702-OPS.yaml', 'T-OFFICE-3.yaml']);
    expect(guide).toContain('npm run agent:configs -- --devices pcs.csv --out rollout/');
  });

  it('as a command: exit code 2 and one line for a bad file, the count on success', async () => {
    const bad = csv('not,a\n"broken\n');
    const e = await exec(process.execPath, [
      '--import',
      'tsx',
      'scripts/agent-configs.ts',
      '--devices',
      bad,
      '--out',
      out,
      '--credentials',
      credentials,
    ]).catch((err: { code: number; stderr: string }) => err);
    expect(e).toMatchObject({ code: 2 });
    expect((e as { stderr: string }).stderr).toMatch(/^agent-configs: .*pcs\.csv: not a CSV/);
    const good = csv(`${HEADER}PC1,3133001234,d1,,,,\n`);
    const { stdout } = await exec(process.execPath, [
      '--import',
      'tsx',
      'scripts/agent-configs.ts',
      '--devices',
      good,
      '--out',
      out,
      '--credentials',
      credentials,
    ]);
    expect(stdout).toMatch(
      /^1 configurations in .*, 1 broker users added to .*credentials\.yaml\. Each file holds/,
    );
  });
});
