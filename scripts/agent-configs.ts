// npm run agent:configs -- --devices pcs.csv --out DIR [--template FILE] [--credentials FILE]
//
// One agent.yaml per classroom PC for a rollout (docs/deploy-windows-agent.md, "Installing"), each with its own
// broker user: from a CSV with one row per PC —
//
//   computer,school,device,classroom,region,kind,displayHost
//   C0701-OPS,3133001234,c0701-ops,c0701,330000/330100/330106,panel,192.168.70.21
//
// (`computer` is the PC's name, %COMPUTERNAME%; the last four columns may be empty: no display host means no
// display source) — it writes DIR/<COMPUTER>.yaml from the template (default deploy/examples/agent-windows.yaml) with
// school, device, classroom, region, kind, display and the MQTT user `dev-<school>-<device>` and its generated
// secret, and adds that user (role device, bound to the school and device) to the broker's credentials file.
//
// Every row is checked before anything is written — the PC name (a NetBIOS name, so it is a safe file name),
// the ids, each file as the agent's own schema reads it, no PC, device, file or broker user twice — so a bad
// row changes nothing. The files hold the passwords: they are written readable by their owner only.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { agentConfigSchema } from '../agents/classroom/agent.js';
import { CredentialStore } from '../broker/credentials.js';
import { processConfigSchema } from '../common/cli.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** A NetBIOS computer name (what %COMPUTERNAME% holds): 1–15 letters, digits and hyphens. */
const COMPUTER = /^[A-Za-z0-9][A-Za-z0-9-]{0,14}$/;

const rowSchema = z.strictObject({
  computer: z.string().regex(COMPUTER, { message: 'must be a computer name: 1-15 of A-Z a-z 0-9 -' }),
  school: z.string(),
  device: z.string(),
  classroom: z.string().optional(),
  region: z.string().optional(),
  kind: z.string().optional(),
  displayHost: z.string().optional(),
});

export interface AgentConfigsResult {
  files: string[];
  users: string[];
}

export class AgentConfigsError extends Error {}

export async function agentConfigs(opts: {
  devices: string;
  out: string;
  credentials: string;
  template?: string;
}): Promise<AgentConfigsResult> {
  const template = parseYaml(
    readFileSync(opts.template ?? join(root, 'deploy/examples/agent-windows.yaml'), 'utf8'),
  ) as Record<string, unknown> & { agent: Record<string, unknown> };
  let rows: Record<string, string>[];
  try {
    rows = parseCsv(readFileSync(opts.devices), {
      columns: true,
      bom: true,
      trim: true,
      skip_empty_lines: true,
    }) as Record<string, string>[];
  } catch (err) {
    throw new AgentConfigsError(`${opts.devices}: not a CSV with a header row: ${(err as Error).message}`);
  }
  if (rows.length === 0) throw new AgentConfigsError(`${opts.devices}: no rows`);
  const known = Object.keys(rowSchema.shape);
  const unknown = Object.keys(rows[0]!).filter((c) => !known.includes(c));
  if (unknown.length > 0)
    throw new AgentConfigsError(
      `${opts.devices}: column ${unknown.map((c) => JSON.stringify(c)).join(', ')} is not one of ${known.join(', ')}`,
    );

  const store = new CredentialStore(opts.credentials);
  await store.load();
  const existing = new Set(store.list().map((u) => u.username));
  const seen = new Set<string>();
  const plans = rows.map((raw, i) => {
    const where = `${opts.devices}: row ${i + 2}`; // the header is row 1
    const cleaned = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== ''));
    const r = rowSchema.safeParse(cleaned);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new AgentConfigsError(`${where}: ${issue.path.join('.') || 'columns'}: ${issue.message}`);
    }
    const row = r.data;
    const computer = row.computer.toUpperCase();
    const username = `dev-${row.school}-${row.device}`;
    const file = join(opts.out, `${computer}.yaml`);
    for (const [what, key] of [
      ['computer', `pc:${computer}`],
      ['device', `device:${row.school}/${row.device}`],
    ] as const) {
      if (seen.has(key)) throw new AgentConfigsError(`${where}: ${what} ${key.split(':')[1]} twice`);
      seen.add(key);
    }
    if (existing.has(username))
      throw new AgentConfigsError(
        `${where}: broker user ${username} exists (a PC being replaced: npm run broker -- users rotate ${username})`,
      );
    if (existsSync(file)) throw new AgentConfigsError(`${where}: ${file} exists: not overwritten`);
    const agent: Record<string, unknown> = {
      ...template.agent,
      school: row.school,
      device: row.device,
      display: row.displayHost ? { source: 'pjlink', host: row.displayHost } : { source: 'none' },
      mqtt: { ...(template.agent.mqtt as object), username, password: 'to-be-generated' },
    };
    for (const k of ['classroom', 'region', 'kind'] as const) {
      if (row[k] !== undefined) agent[k] = row[k];
      else delete agent[k];
    }
    // As the agent will read it (its own strict schema), with a stand-in for the secret made below.
    const checked = processConfigSchema({ agent: agentConfigSchema }).safeParse({ ...template, agent });
    if (!checked.success) {
      const issue = checked.error.issues[0]!;
      throw new AgentConfigsError(`${where}: ${issue.path.join('.')}: ${issue.message}`);
    }
    return { file, username, row, config: { ...template, agent } };
  });

  mkdirSync(opts.out, { recursive: true, mode: 0o700 });
  const result: AgentConfigsResult = { files: [], users: [] };
  for (const p of plans) {
    const secret = await store.add({
      username: p.username,
      role: 'device',
      school: p.row.school,
      device: p.row.device,
    });
    result.users.push(p.username);
    (p.config.agent.mqtt as { password: string }).password = secret;
    writeFileSync(p.file, stringifyYaml(p.config), { mode: 0o600, flag: 'wx' });
    result.files.push(p.file);
  }
  return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string' },
      out: { type: 'string' },
      template: { type: 'string' },
      credentials: { type: 'string', default: 'var/broker-credentials.yaml' },
    },
  });
  try {
    if (!values.devices || !values.out)
      throw new AgentConfigsError('--devices FILE and --out DIR are needed');
    const r = await agentConfigs({
      devices: values.devices,
      out: values.out,
      credentials: values.credentials,
      template: values.template,
    });
    process.stdout.write(
      `${r.files.length} configurations in ${values.out}, ${r.users.length} broker users added to ${values.credentials}. Each file holds its PC's MQTT password: push it to that PC only (docs/deploy-windows-agent.md), then delete it.\n`,
    );
  } catch (err) {
    process.stderr.write(`agent-configs: ${(err as Error).message}\n`);
    process.exit(err instanceof AgentConfigsError ? 2 : 1);
  }
}
