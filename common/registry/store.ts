import { rename, rm } from 'node:fs/promises';
import { regionWithin } from '../../contracts/ids.js';
import {
  type Classroom,
  type Device,
  type EntityName,
  type Region,
  type Registry,
  registrySchema,
  type School,
} from '../../contracts/registry.js';
import { FileWatch, readJsonFile } from '../json-file.js';
import { checkFileLimits, ImportError, type ImportFile } from './import.js';
import { type ImportOutcome, ImportRun } from './import-run.js';
import { entityKey } from './key.js';
import { DEFAULT_IMPORT_LIMITS, ImportLimitError, type ImportLimits } from './limits.js';
import { type MergeOptions, mergeRegistry } from './merge.js';

export { entityKey };

/**
 * The registry with its lookups: region paths (the unit of access scope), schools by region, classrooms and
 * devices by school. Immutable: an import builds a new index and swaps it in.
 *
 * Classroom and device ids are unique only within their school (a device reports under
 * `cfm/v1/{school}/{device}`), so their maps are keyed by `entityKey(school, id)`: `wb-a1` of school A and
 * `wb-a1` of school B are two devices, never one.
 */
export class RegistryIndex {
  readonly regions = new Map<string, Region>();
  readonly schools = new Map<string, School>();
  /** By `entityKey(school, id)`: private, so nothing can look a device or classroom up by its id alone. */
  private readonly classrooms = new Map<string, Classroom>();
  private readonly devices = new Map<string, Device>();
  readonly classroomsBySchool = new Map<string, Classroom[]>();
  readonly devicesBySchool = new Map<string, Device[]>();
  /** By `entityKey(school, classroom)`. */
  private readonly devicesByClassroom = new Map<string, Device[]>();
  private readonly paths = new Map<string, string>();

  constructor(readonly data: Registry) {
    for (const r of data.regions) this.regions.set(r.id, r);
    for (const s of data.schools) this.schools.set(s.id, s);
    for (const c of data.classrooms) {
      this.classrooms.set(entityKey(c.school, c.id), c);
      push(this.classroomsBySchool, c.school, c);
    }
    for (const d of data.devices) {
      this.devices.set(entityKey(d.school, d.id), d);
      push(this.devicesBySchool, d.school, d);
      if (d.classroom) push(this.devicesByClassroom, entityKey(d.school, d.classroom), d);
    }
  }

  /** School `school`'s device `id` — what reports under `cfm/v1/{school}/{id}` — or undefined. */
  device(school: string, id: string, key = entityKey(school, id)): Device | undefined {
    return this.devices.get(key);
  }

  /** School `school`'s classroom `id`, or undefined. */
  classroom(school: string, id: string): Classroom | undefined {
    return this.classrooms.get(entityKey(school, id));
  }

  /** The devices registered in a school's classroom. */
  devicesIn(school: string, classroom: string): Device[] {
    return this.devicesByClassroom.get(entityKey(school, classroom)) ?? [];
  }

  /** `330000/330100/330106` for region `330106`: ids from the top down (the merge refused loops). */
  regionPath(id: string): string {
    let p = this.paths.get(id);
    if (p === undefined) {
      const parts: string[] = [];
      for (let r: string | undefined = id; r !== undefined; r = this.regions.get(r)?.parent) parts.unshift(r);
      p = parts.join('/');
      this.paths.set(id, p);
    }
    return p;
  }

  /** The region path of a school; undefined for an unknown school. */
  schoolPath(schoolId: string): string | undefined {
    const s = this.schools.get(schoolId);
    return s ? this.regionPath(s.region) : undefined;
  }

  /** Whether a school lies within a scope (a region path; `undefined` = everything). */
  schoolInScope(schoolId: string, scope: string | undefined): boolean {
    if (scope === undefined) return this.schools.has(schoolId);
    const p = this.schoolPath(schoolId);
    return p !== undefined && regionWithin(p, scope);
  }

  schoolsInScope(scope: string | undefined): School[] {
    return scope === undefined
      ? this.data.schools
      : this.data.schools.filter((s) => this.schoolInScope(s.id, scope));
  }
}

function push<T>(m: Map<string, T[]>, k: string, v: T): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

export class RegistryFileError extends Error {
  override name = 'RegistryFileError';
}

/**
 * The registry on disk (`var/registry.json` by default): loaded at start, replaced atomically by an import
 * (temporary file, fsync, rename), so a crash mid-write leaves the previous registry intact.
 */
export class RegistryStore {
  /** +1 per successful import or load: caches of derived results key on it. */
  version = 0;
  private current: RegistryIndex;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    readonly limits: ImportLimits = DEFAULT_IMPORT_LIMITS,
    /**
     * The pollers' credential names, read by each import, which refuses a device row naming another
     * (`api.credentialNamesFile`, or the names of `api.pollerCredentialsFile`: api/server.ts
     * `credentialNamesReader`). Unreadable: it throws a CredentialsFileError naming the file, and the import
     * is refused.
     */
    readonly credentialNames?: () => readonly string[],
  ) {
    this.current = new RegistryIndex(registrySchema.parse({}));
    this.watch = new FileWatch(path);
  }

  /**
   * The registry now. Another process (`npm run api -- import`) may have replaced the file: it is re-read when
   * its modification time or size changed, checked at most every `checkEveryMs`. A file that became unreadable
   * keeps the last good registry in memory (and `lastError` says why).
   */
  get index(): RegistryIndex {
    // During an import the file is about to be replaced by it: re-reading it here would do the work twice.
    if (!this.running && this.watch.changed()) {
      try {
        this.load();
        this.lastError = undefined;
      } catch (e) {
        this.lastError = e as Error;
      }
    }
    return this.current;
  }

  /** Why the last re-read failed, if it did (shown by the API's /health). */
  lastError: Error | undefined;
  private readonly watch: FileWatch;

  /** How often `index` looks whether another process changed the file. */
  get checkEveryMs(): number {
    return this.watch.checkEveryMs;
  }
  set checkEveryMs(ms: number) {
    this.watch.checkEveryMs = ms;
  }

  /** Reads the file; a missing file is an empty registry, a malformed one a RegistryFileError. */
  load(): this {
    this.watch.mark();
    const data = readRegistryFile(this.path);
    if (data === undefined) return this;
    this.current = new RegistryIndex(data);
    this.version++;
    return this;
  }

  /** Whether an import is running (the API refuses a second one rather than queue it). */
  get busy(): boolean {
    return this.running !== undefined;
  }
  private running: ImportRun | undefined;

  /**
   * Imports files: all of them are parsed and the merged registry checked and written before the registry in
   * memory changes. The work runs in a worker process (`import-worker.ts`) bounded by `limits` in size, rows,
   * cells, time and heap, so the event loop keeps serving while a city's workbook is read, and a hostile file
   * costs a worker, never the process. Imports run one at a time. Returns how many rows of each entity the
   * files held; throws ImportError (the file's problems), ImportLimitError (a limit exceeded) or
   * RegistryFileError (the registry file on disk cannot be read).
   */
  import(files: readonly ImportFile[], opts: MergeOptions = {}): Promise<Record<EntityName, number>> {
    const run = this.queue.then(async () => {
      checkFileLimits(files, this.limits); // cheap; refuses a zip bomb without starting a worker
      const credentialRefs = this.credentialNames?.();
      const r = new ImportRun(
        this.path,
        files,
        credentialRefs ? { ...opts, credentialRefs } : opts,
        this.limits,
      );
      this.running = r;
      try {
        return await this.finish(await r.done);
      } finally {
        this.running = undefined;
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async finish(o: ImportOutcome): Promise<Record<EntityName, number>> {
    switch (o.type) {
      case 'done':
        // Checked and written by the worker: the registry it sends back needs no second validation, and its
        // file replaces the registry atomically — a stopped or timed-out worker never touched it.
        try {
          await rename(o.file, this.path);
        } catch (e) {
          await rm(o.file, { force: true });
          throw e;
        }
        this.watch.mark();
        this.current = new RegistryIndex(o.registry);
        this.version++;
        return o.rows;
      case 'rejected':
        throw new ImportError(o.issues);
      case 'limit':
        throw new ImportLimitError(o.limit, o.value, o.what);
      case 'registry-file':
        throw new RegistryFileError(o.message);
      case 'failed':
        throw new Error(o.message);
    }
  }

  /** Stops a running import (kills its worker; the registry file is left as it was) and waits for the end. */
  async stop(): Promise<void> {
    const r = this.running;
    await r?.stop();
    await this.queue;
  }
}

/**
 * The registry file as written by an import, or undefined when there is none. Its references are checked again
 * (merging into an empty registry), so a hand-edited file cannot break a scope check.
 */
export function readRegistryFile(path: string): Registry | undefined {
  let json: unknown;
  try {
    json = readJsonFile(path, 'registry');
  } catch (e) {
    throw new RegistryFileError((e as Error).message);
  }
  if (json === undefined) return undefined;
  const parsed = registrySchema.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new RegistryFileError(`registry ${path}: ${i.path.join('.')}: ${i.message}`);
  }
  return mergeRegistry(registrySchema.parse({}), toRows(parsed.data));
}

/** A stored registry as parsed rows (for the load-time check). */
function toRows(r: Registry) {
  const src = (entity: EntityName, i: number) => ({ file: 'registry', entity, row: i + 1, columns: {} });
  return {
    regions: r.regions.map((value, i) => ({ value, source: src('regions', i) })),
    schools: r.schools.map((value, i) => ({ value, source: src('schools', i) })),
    classrooms: r.classrooms.map((value, i) => ({ value, source: src('classrooms', i) })),
    devices: r.devices.map((value, i) => ({ value, source: src('devices', i) })),
  };
}

/**
 * Whether `device` carries school `school`'s uplink: the school's registered `uplinkDevice`; for a school that
 * registers none, any registered router or switch of that school. An unregistered device, or another school's
 * device of the same id, never does — its readings must not make a school look down, busy or inhibited.
 */
export function carriesUplink(reg: RegistryIndex, school: string, device: string): boolean {
  const s = reg.schools.get(school);
  if (!s) return false;
  if (s.uplinkDevice !== undefined) return s.uplinkDevice === device;
  const d = reg.device(school, device);
  return d !== undefined && (d.kind === 'router' || d.kind === 'switch');
}
