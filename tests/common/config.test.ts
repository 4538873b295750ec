import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { shownConfig } from '../../common/cli.js';
import { ConfigError, loadConfig } from '../../common/config.js';
import { logConfigSchema } from '../../common/log.js';
import { REDACTED } from '../../common/redact.js';
import { influxConfigSchema } from '../../common/storage/config.js';
import { rollupConfigSchema } from '../../rollup/config.js';

const schema = z.strictObject({ influx: influxConfigSchema, log: logConfigSchema });
const dir = mkdtempSync(join(tmpdir(), 'cfm-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function loadError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('fills defaults from an empty file and from no file', () => {
    const a = loadConfig(schema, { file: file('empty.yaml', ''), env: {} });
    const b = loadConfig(schema, { env: {} });
    expect(a).toEqual(b);
    expect(a.influx.batchSize).toBe(5_000);
    expect(a.influx.url).toBe('http://127.0.0.1:8086');
    expect(a.log.level).toBe('info');
  });

  it('reads YAML and lets the environment override it, with types kept', () => {
    const f = file(
      'ok.yaml',
      'influx:\n  url: http://db.example:8086\n  batchSize: 100\n  database: 城域网\n',
    );
    const c = loadConfig(schema, {
      file: f,
      env: {
        CFM_INFLUX__BATCH_SIZE: '2500',
        CFM_INFLUX__CREATE_DATABASE: 'false',
        CFM_LOG__LEVEL: 'debug',
        OTHER: 'x',
      },
    });
    expect(c.influx.url).toBe('http://db.example:8086');
    expect(c.influx.batchSize).toBe(2500);
    expect(c.influx.createDatabase).toBe(false);
    expect(c.influx.database).toBe('城域网');
    expect(c.log.level).toBe('debug');
  });

  it('names the file, key and reason for a bad value', () => {
    const f = file('bad.yaml', 'influx:\n  batchSize: lots\n');
    const e = loadError(() => loadConfig(schema, { file: f, env: {} }));
    expect(e.code).toBe('CFM_CONFIG_INVALID');
    expect(e.source).toBe(f);
    expect(e.key).toBe('influx.batchSize');
    expect(e.message).toContain(f);
    expect(e.message).toMatch(/influx\.batchSize: .*number/i);
  });

  it('refuses a rollup.readsInFlight that is not a whole number from 1 to 8, naming it; 2 by default', () => {
    const rollup = z.strictObject({ rollup: rollupConfigSchema });
    expect(loadConfig(rollup, { env: {} }).rollup.readsInFlight).toBe(2);
    for (const bad of ['0', '9', '1.5', 'lots', '-1'])
      expect(
        loadError(() =>
          loadConfig(rollup, { file: file('rollup.yaml', `rollup:\n  readsInFlight: ${bad}\n`), env: {} }),
        ).key,
      ).toBe('rollup.readsInFlight');
    const e = loadError(() => loadConfig(rollup, { env: { CFM_ROLLUP__READS_IN_FLIGHT: '100' } }));
    expect(e.source).toBe('environment CFM_ROLLUP__READS_IN_FLIGHT');
    expect(e.message).toMatch(/rollup\.readsInFlight/);
    expect(loadConfig(rollup, { env: { CFM_ROLLUP__READS_IN_FLIGHT: '4' } }).rollup.readsInFlight).toBe(4);
  });

  it('names the environment variable when the bad value came from there', () => {
    const e = loadError(() => loadConfig(schema, { env: { CFM_INFLUX__URL: 'not a url' } }));
    expect(e.source).toBe('environment CFM_INFLUX__URL');
    expect(e.key).toBe('influx.url');
  });

  it('rejects unknown keys (typos) and names them', () => {
    const e = loadError(() =>
      loadConfig(schema, { file: file('typo.yaml', 'influx:\n  batchsize: 10\n'), env: {} }),
    );
    expect(e.key).toBe('influx');
    expect(e.reason).toContain('batchsize');
  });

  it('rejects garbage files with a clear error', () => {
    expect(loadError(() => loadConfig(schema, { file: join(dir, 'missing.yaml'), env: {} })).message).toMatch(
      /missing\.yaml: cannot read: ENOENT/,
    );
    const e = loadError(() =>
      loadConfig(schema, { file: file('broken.yaml', 'influx: [unclosed\n'), env: {} }),
    );
    expect(e.code).toBe('CFM_CONFIG_UNREADABLE');
    expect(e.message).toMatch(/not valid YAML/);
    expect(
      loadError(() => loadConfig(schema, { file: file('list.yaml', '- a\n- b\n'), env: {} })).reason,
    ).toMatch(/mapping/);
    expect(
      loadError(() => loadConfig(schema, { file: file('dup.yaml', 'log: {}\nlog: {}\n'), env: {} })).code,
    ).toBe('CFM_CONFIG_UNREADABLE');
    const up = loadError(() =>
      loadConfig(schema, { file: file('up.yaml', 'influx:\n  username: admin\n'), env: {} }),
    );
    expect(up.key).toBe('influx.password');
  });

  it('redacts secrets whenever config is printed, and shows only the sections a process reads', () => {
    const c = loadConfig(schema, {
      env: {
        CFM_INFLUX__URL: 'http://cfm:hunter3@db.example:8086',
        CFM_INFLUX__TOKEN: 's3cr3t-token',
        CFM_INFLUX__USERNAME: 'u',
        CFM_INFLUX__PASSWORD: 'hunter2',
      },
    });
    const text = JSON.stringify(
      shownConfig({ influx: influxConfigSchema }, { ...c, alerts: { password: 'neighbour' } }),
      null,
      2,
    );
    expect(text).not.toContain('s3cr3t-token');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('hunter3');
    expect(text).not.toContain('neighbour');
    expect(text).toContain(`"url": "http://${REDACTED}@db.example:8086/"`);
    expect(text).toContain(`"token": "${REDACTED}"`);
    expect(text).toContain('"username": "u"');
    expect(Object.keys(JSON.parse(text))).toEqual(['log', 'influx']);
  });
});
