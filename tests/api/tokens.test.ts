import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import { influxConfigSchema } from '../../common/storage/config.js';
import { Storage } from '../../common/storage/storage.js';
import { testApp } from '../helpers/api.js';
import { captureLogger, waitFor } from '../helpers/influx.js';

/**
 * API tokens as an operator manages them: the real `npm run api -- tokens …` command (tsx, a config file) and a
 * real API on loopback that reads the same file, at its shipped re-read interval. The routes used here never
 * reach InfluxDB, so the storage is configured but not started.
 */
const exec = promisify(execFile);
let dir: string;
let file: string;
let app: Awaited<ReturnType<typeof testApp>>;
let url: string;
let tokens: TokenStore;
let logLines: Record<string, unknown>[];

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(
      'node',
      ['--import', 'tsx', 'api/main.ts', ...args, '--config', join(dir, 'api.yaml')],
      {
        cwd: new URL('../..', import.meta.url).pathname,
      },
    );
    return { code: 0, ...r };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}
const status = async (token: string) =>
  (await fetch(`${url}/v1/profiles`, { headers: { authorization: `Bearer ${token}` } })).status;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-api-tokens-'));
  file = join(dir, 'tokens.json');
  writeFileSync(
    join(dir, 'api.yaml'),
    stringify({ influx: { url: 'http://127.0.0.1:8086', database: 'cfm' }, api: { tokensFile: file } }),
  );
  const captured = captureLogger('api');
  logLines = captured.lines;
  tokens = new TokenStore(file, { log: captured.log }).load();
  app = await testApp({
    registry: new RegistryStore(join(dir, 'registry.json')).load(),
    calendars: new Calendars([]),
    tokens,
    storage: new Storage(influxConfigSchema.parse({ database: 'cfm' }), { log: silentLogger() }),
    live: new LiveState(undefined, silentLogger()),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tokens add / revoke against a running API', () => {
  it('revoke says truthfully when the running API stops accepting the token, and it does, without a restart', async () => {
    const ops = await cli('tokens', 'add', '城域网运维', '--role', 'ops');
    const tmp = await cli('tokens', 'add', '临时', '--role', 'auditor');
    expect(ops.code, ops.stderr).toBe(0);
    expect(tmp.stderr).toMatch(/an API reading this file accepts it within 2 s/);
    const [opsToken, tmpToken] = [ops.stdout.trim(), tmp.stdout.trim()];
    const id = /added token (t[0-9a-f]+)/.exec(tmp.stderr)![1]!;
    await waitFor(async () => (await status(tmpToken)) === 200, { timeoutMs: 5_000 });

    const revoke = await cli('tokens', 'revoke', id);
    const revokedAtMs = Date.now();
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stderr).toBe(
      `revoked ${id} in ${file}; an API reading this file refuses it within 2 s, no restart needed\n`,
    );
    await waitFor(async () => (await status(tmpToken)) === 401, { timeoutMs: 5_000, intervalMs: 50 });
    expect(Date.now() - revokedAtMs).toBeLessThan(2_500);
    expect(await status(opsToken)).toBe(200);
    // The write kept the file as it was before: both tokens.
    expect(JSON.parse(readFileSync(`${file}.bak`, 'utf8')).tokens).toHaveLength(2);
  });

  it('a damaged file: the command prints one line naming the file and the field and exits 2; the API keeps its tokens and says why', async () => {
    const opsToken = (await cli('tokens', 'add', '运维二', '--role', 'ops')).stdout.trim();
    await waitFor(async () => (await status(opsToken)) === 200, { timeoutMs: 5_000 });
    const good = readFileSync(file, 'utf8');
    const damaged = JSON.parse(good);
    damaged.tokens[0].role = 'root';
    writeFileSync(file, JSON.stringify(damaged));

    for (const args of [['list'], ['revoke', 'tx'], ['add', 'x', '--role', 'ops']]) {
      const r = await cli('tokens', ...args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        new RegExp(
          `^api: tokens ${file}: tokens\\.0\\.role: Invalid option: expected one of "admin"\\|"ops"\\|"auditor" \\(the file before the last change is ${file}\\.bak; restoring it would also undo that change\\)\\n$`,
        ),
      );
    }
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(damaged); // nothing written

    // The API goes on with the tokens it had, and says so on /health and in the log (once).
    await waitFor(
      async () =>
        ((await (await fetch(`${url}/health`)).json()) as { tokens: { error: string | null } }).tokens
          .error !== null,
      { timeoutMs: 5_000, intervalMs: 100 },
    );
    const health = (await (await fetch(`${url}/health`)).json()) as { tokens: { error: string } };
    expect(health.tokens.error).toContain(`tokens ${file}: tokens.0.role`);
    expect(await status(opsToken)).toBe(200);
    expect(
      logLines.filter((l) => l.msg === 'tokens file unusable: keeping the tokens read before; fix the file'),
    ).toHaveLength(1);

    writeFileSync(file, good);
    await waitFor(
      async () =>
        ((await (await fetch(`${url}/health`)).json()) as { tokens: { error: null } }).tokens.error === null,
      { timeoutMs: 5_000, intervalMs: 100 },
    );
  }, 120_000); // four commands, each a Node process: slow to start on a loaded machine

  it('a bad config: one line, exit 2, no stack trace', async () => {
    writeFileSync(join(dir, 'api.yaml'), stringify({ api: { tokensFile: 42 } }));
    try {
      const r = await cli('tokens', 'list');
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^api: configuration error: .*api\.tokensFile.*\n$/);
    } finally {
      writeFileSync(
        join(dir, 'api.yaml'),
        stringify({ influx: { url: 'http://127.0.0.1:8086', database: 'cfm' }, api: { tokensFile: file } }),
      );
    }
  });
});
