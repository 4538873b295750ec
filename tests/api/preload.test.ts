import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ApiServer, apiConfigSchema } from '../../api/server.js';
import type { Storage } from '../../common/storage/storage.js';
import { CITY, CITY_CALENDAR } from '../helpers/city.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';

/**
 * `api.preloadDays` reads the recent days after the server listens, without holding it up: a database that
 * stalls every query (a real influxd behind a proxy that answers /query with headers and then nothing) leaves
 * the preload hanging, and /health still answers at once.
 */
const influxd = new Influxd();
let proxy: FaultProxy;
let storage: Storage;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-preload-'));
  await influxd.start();
  proxy = await new FaultProxy(influxd.url).start();
  storage = testStorage(proxy.url, { database: 'city', timeoutMs: 60_000 }).storage;
  await storage.start();
  writeFileSync(join(dir, 'calendar.yaml'), stringify({ calendars: [CITY_CALENDAR] }));
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('preloading rollups', () => {
  it('does not hold up the server: /health answers while every preload query is stalled', async () => {
    const { log, lines } = captureLogger('api');
    proxy.stallNext(1_000, { path: /^\/query/ });
    const api = new ApiServer(
      apiConfigSchema.parse({
        port: 0,
        registryFile: join(dir, 'registry.json'),
        tokensFile: join(dir, 'tokens.json'),
        calendarFile: join(dir, 'calendar.yaml'),
        preloadDays: 45,
      }),
      { log, storage },
    );
    try {
      await api.registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
      await api.start();
      // The preload has started reading days, and is stuck on the stalled database.
      await waitFor(() => api.days.reads > 0);
      const t = performance.now();
      const res = await fetch(`${api.url}/health`);
      const body = (await res.json()) as { status: string; registry: { schools: number } };
      expect(res.status).toBe(200);
      expect(body.status).toBe('ok');
      expect(body.registry.schools).toBe(CITY.schools.length);
      // Well within the stalled query's 60 s timeout: nothing waited for the preload.
      expect(performance.now() - t).toBeLessThan(10_000);
      expect(lines.some((l) => l.msg === 'rollups preloaded')).toBe(false);
    } finally {
      proxy.clear();
      await api.stop();
    }
  }, 60_000);
});
