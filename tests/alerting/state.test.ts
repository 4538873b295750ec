import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idOf } from '../../alerting/engine.js';
import { AlertService, alertsConfigSchema } from '../../alerting/service.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import { alertOf } from '../helpers/alerts.js';
import { captureLogger } from '../helpers/influx.js';

/**
 * The alert state file on disk: validated when read, the previous file kept as `.bak` on every write, a
 * malformed file replaced by that last good copy with an error in the log, and start-up refused when neither
 * can be used. Real files in a temporary folder; the service as the API process runs it (start, stop).
 */
let dir: string;
let registry: RegistryStore;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-alert-state-'));
  registry = new RegistryStore(join(dir, 'registry.json')).load();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function service(stateFile: string, log = silentLogger()) {
  return new AlertService(alertsConfigSchema.parse({ stateFile, tickMs: 10_000 }), {
    log,
    registry,
    calendars: () => new Calendars([]),
    live: new LiveState(undefined, silentLogger(), true),
  });
}

const SILENCE = {
  createdBy: 'ops',
  comment: '机房搬迁',
  school: '3301060001',
  startsAtMs: Date.now(),
  endsAtMs: Date.now() + 3_600_000,
};

/** A state file written by a real service: one silence per comment given, one write each. */
async function written(stateFile: string, ...comments: string[]): Promise<void> {
  const s = service(stateFile);
  s.start();
  for (const comment of comments) {
    s.addSilence({ ...SILENCE, comment });
    s.save(true);
  }
  await s.stop();
}
const comments = (file: string) =>
  (JSON.parse(readFileSync(file, 'utf8')) as { silences: { comment: string }[] }).silences.map(
    (x) => x.comment,
  );

describe('the alert state file', () => {
  it('keeps the file it replaces as <stateFile>.bak', async () => {
    const file = join(dir, 'keep.json');
    await written(file, 'first', 'second');
    expect(comments(file)).toEqual(['first', 'second']);
    // stop() wrote once more (the same state): the backup is the write before it.
    expect(comments(`${file}.bak`)).toEqual(['first', 'second']);
    const s = service(file);
    s.start();
    s.addSilence({ ...SILENCE, comment: 'third' });
    s.save(true);
    expect(comments(`${file}.bak`)).toEqual(['first', 'second']);
    expect(comments(file)).toEqual(['first', 'second', 'third']);
    await s.stop();
  });

  it('a field of the wrong type and no last good copy: start-up is refused naming the file and the field', () => {
    const file = join(dir, 'wrong-type.json');
    // What once failed as "history.slice is not a function".
    writeFileSync(file, JSON.stringify({ version: 1, active: [], history: 'none' }));
    expect(() => service(file).start()).toThrow(
      `alerts state ${file} is malformed (history: Invalid input: expected array, received string) and there is no last good copy ${file}.bak`,
    );
  });

  it('a malformed file is replaced by the last good copy, loudly; the copy survives the next write', async () => {
    const file = join(dir, 'recover.json');
    await written(file, 'kept');
    expect(comments(`${file}.bak`)).toEqual(['kept']); // the last good copy
    // A hand edit gone wrong: an alert whose start is a date string.
    const bad = JSON.parse(readFileSync(file, 'utf8'));
    bad.active = [{ id: 'x', startedAtMs: '2026-10-08' }];
    writeFileSync(file, JSON.stringify(bad));
    const { log, lines } = captureLogger('api');
    const s = service(file, log);
    s.start();
    try {
      expect(s.silences.map((x) => x.comment)).toEqual(['kept']);
      expect(s.recoveredFrom).toBe(`${file}.bak`);
      const line = lines.find((l) => l.level === 50);
      expect(line).toMatchObject({ file, loaded: `${file}.bak`, kept: `${file}.malformed` });
      expect(String(line?.msg)).toContain(`alerts state ${file} is malformed (active.0.key: `);
      expect(String(line?.msg)).toContain(`loaded the last good copy ${file}.bak instead`);
      // The malformed file is kept for inspection, and its replacement does not become the "last good copy".
      expect(JSON.parse(readFileSync(`${file}.malformed`, 'utf8')).active[0].id).toBe('x');
      s.addSilence({ ...SILENCE, comment: 'after' });
      s.save(true);
      expect(comments(`${file}.bak`)).toEqual(['kept']);
      expect(comments(file)).toEqual(['kept', 'after']);
    } finally {
      await s.stop();
    }
    // From now on the file is good again, and each write keeps the one before.
    expect(comments(`${file}.bak`)).toEqual(['kept', 'after']);
  });

  it('both malformed: start-up is refused naming both files and the first bad field of each', () => {
    const file = join(dir, 'both.json');
    writeFileSync(file, '{"version": 1, "active": [');
    writeFileSync(`${file}.bak`, JSON.stringify({ version: 1, active: [], silences: [{ id: 's1' }] }));
    expect(() => service(file).start()).toThrow(
      new RegExp(
        `^alerts state ${file} is malformed \\(not JSON: .+\\) and its last good copy is malformed too \\(alerts state ${file}\\.bak: silences\\.0\\.createdBy: Invalid input: expected string, received undefined\\): refusing to start`,
      ),
    );
  });

  it('a state file with the ids before #15 (key|start) loads with URL-safe ids, the same a fresh start gives', async () => {
    const file = join(dir, 'old-ids.json');
    const started = Date.parse('2026-10-08T08:06:04+08:00');
    const uplinkOld = `uplink_down|A|gw||${started}`;
    const uplink = alertOf({ id: uplinkOld, key: 'uplink_down|A|gw|', startedAtMs: started });
    const room = alertOf({
      id: `device_offline|A|pn-01||${started + 1_000}`,
      key: 'device_offline|A|pn-01|',
      rule: 'device_offline',
      severity: 'warning',
      device: 'pn-01',
      state: 'pending',
      startedAtMs: started + 1_000,
      inhibitedBy: uplinkOld,
      affected: [],
    });
    const past = alertOf({ id: `uplink_down|A|gw||${started - 86_400_000}`, state: 'resolved' });
    writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        active: [uplink, room],
        history: [past],
        queue: [['A', { firstMs: started, items: [{ kind: 'firing', alert: uplink }] }]],
        silences: [],
      }),
    );
    const s = service(file);
    s.start();
    try {
      const ids = [...s.engine.active.values()].map((a) => a.id);
      expect(ids).toEqual([idOf(uplinkOld), idOf(room.id)]);
      for (const id of ids) expect(id).toMatch(/^(uplink_down|device_offline)-[0-9a-f]{20}$/);
      // What the engine gives that alert when it starts now: the key and the start, as before.
      expect(idOf(uplinkOld)).toBe(idOf(`${uplink.key}|${uplink.startedAtMs}`));
      expect(s.engine.active.get(room.key)).toMatchObject({ key: room.key, inhibitedBy: idOf(uplinkOld) });
      expect(s.engine.history.map((a) => a.id)).toEqual([idOf(past.id)]);
      expect(s.engine.pendingQueue()[0]![1].items[0]!.alert.id).toBe(idOf(uplinkOld));
      // The new id is the one that acknowledges it.
      expect(s.engine.ack(idOf(uplinkOld), 'ops', Date.now())).toMatchObject({ key: uplink.key });
      s.save(true);
    } finally {
      await s.stop();
    }
    // Written back with the new ids; loading them again changes nothing.
    const saved = JSON.parse(readFileSync(file, 'utf8')) as {
      active: { id: string; inhibitedBy: string | null }[];
    };
    expect(saved.active.map((a) => [a.id, a.inhibitedBy])).toEqual([
      [idOf(uplinkOld), null],
      [idOf(room.id), idOf(uplinkOld)],
    ]);
    const again = service(file);
    again.start();
    expect([...again.engine.active.values()].map((a) => a.id)).toEqual([idOf(uplinkOld), idOf(room.id)]);
    await again.stop();
  });

  it('no state file: an empty start, even with a last good copy beside it (the file was removed to reset)', async () => {
    const file = join(dir, 'fresh.json');
    await written(file, 'old');
    rmSync(file);
    const { log, lines } = captureLogger('api');
    const s = service(file, log);
    s.start();
    expect(s.silences).toEqual([]);
    expect(s.recoveredFrom).toBeUndefined();
    expect(lines.find((l) => l.level === 40)).toMatchObject({ file, unused: `${file}.bak` });
    await s.stop();
    expect(comments(file)).toEqual([]);
  });
});
