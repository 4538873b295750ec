import { ENTITIES, type EntityName, NETWORK_KINDS, type Registry } from '../../contracts/registry.js';
import { ImportError, type ImportIssue, type ParsedRows, type RowSource } from './import.js';
import { entityKey } from './key.js';

/**
 * Applies parsed rows to the current registry: rows upsert by id (or replace whole lists), then the result is
 * checked as a whole — duplicate ids, references between entities, the region hierarchy. Any problem throws an
 * ImportError and the caller keeps the registry it had: an import is all-or-nothing.
 */
export interface MergeOptions {
  /** Entity lists the import replaces instead of updating (a list absent from the import is kept). */
  replace?: readonly EntityName[];
}

/**
 * The identity of a row: regions and schools by id; classrooms and devices by (school, id), because their ids
 * are unique only within a school.
 */
function keyOf(e: EntityName, x: { id: string; school?: string }): string {
  return (e === 'classrooms' || e === 'devices') && x.school !== undefined ? entityKey(x.school, x.id) : x.id;
}

/** A `keyOf` key for people: `wb-a1 of school 3301080001`. */
function named(key: string): string {
  const i = key.indexOf('/');
  return i < 0 ? key : `${key.slice(i + 1)} of school ${key.slice(0, i)}`;
}

function describe(e: EntityName, x: { id: string; school?: string }): string {
  return (e === 'classrooms' || e === 'devices') && x.school !== undefined
    ? `${x.id} of school ${x.school}`
    : x.id;
}

export function mergeRegistry(current: Registry, rows: ParsedRows, opts: MergeOptions = {}): Registry {
  const issues: ImportIssue[] = [];
  const sources = new Map<string, RowSource>(); // `${entity}:${id}` → where the import defined it
  const where = (s: RowSource, key: string): ImportIssue => ({
    file: s.file,
    entity: s.entity,
    row: s.row,
    column: s.columns[key] ?? key,
    message: '',
  });

  const next = {} as Record<EntityName, Map<string, { id: string }>>;
  for (const e of ENTITIES) {
    const map = new Map<string, { id: string }>();
    if (!opts.replace?.includes(e) || rows[e].length === 0)
      for (const x of current[e]) map.set(keyOf(e, x), x);
    const seen = new Map<string, RowSource>();
    for (const { value, source } of rows[e]) {
      const key = keyOf(e, value);
      const first = seen.get(key);
      if (first) {
        issues.push({
          ...where(source, 'id'),
          message: `${describe(e, value)} is also defined in ${first.file} row ${first.row}`,
        });
        continue;
      }
      seen.set(key, source);
      sources.set(`${e}:${key}`, source);
      // Update only the columns the file has: a schools.csv without `contractedMbps` keeps the contracts.
      const old = map.get(key);
      if (old) {
        const given = Object.fromEntries(
          Object.entries(value).filter(
            ([k]) => k === 'id' || k === 'school' || source.columns[k] !== undefined,
          ),
        );
        map.set(key, { ...old, ...given });
      } else map.set(key, value);
    }
    next[e] = map;
  }
  const merged: Registry = {
    regions: [...next.regions.values()] as Registry['regions'],
    schools: [...next.schools.values()] as Registry['schools'],
    classrooms: [...next.classrooms.values()] as Registry['classrooms'],
    devices: [...next.devices.values()] as Registry['devices'],
  };

  /** An issue about `entity` `id` (a key from `keyOf`)'s field `key`: at its import row, or as an existing entry. */
  const problem = (entity: EntityName, id: string, key: string, message: string) => {
    const s = sources.get(`${entity}:${id}`);
    if (s) issues.push({ ...where(s, key), message });
    else
      issues.push({
        file: '(registry)',
        entity,
        column: key,
        message: `existing ${entity.slice(0, -1)} ${named(id)} (not in this import): ${message}`,
      });
  };

  const regions = next.regions as Map<string, Registry['regions'][number]>;
  for (const r of merged.regions) {
    if (r.parent !== undefined && !regions.has(r.parent))
      problem('regions', r.id, 'parent', `parent region ${r.parent} is not in the registry`);
    // Walk up: a cycle would make every scope check loop.
    const seen = new Set([r.id]);
    for (let p = r.parent; p !== undefined; p = regions.get(p)?.parent) {
      if (seen.has(p)) {
        problem('regions', r.id, 'parent', `region hierarchy loops through ${p}`);
        break;
      }
      seen.add(p);
    }
  }
  for (const s of merged.schools) {
    if (!regions.has(s.region))
      problem('schools', s.id, 'region', `region ${s.region} is not in the registry`);
  }
  const schools = next.schools as Map<string, Registry['schools'][number]>;
  const classrooms = next.classrooms as Map<string, Registry['classrooms'][number]>;
  for (const c of merged.classrooms) {
    if (!schools.has(c.school))
      problem('classrooms', entityKey(c.school, c.id), 'school', `school ${c.school} is not in the registry`);
  }
  const devices = next.devices as Map<string, Registry['devices'][number]>;
  for (const d of merged.devices) {
    const key = entityKey(d.school, d.id);
    if (!schools.has(d.school))
      problem('devices', key, 'school', `school ${d.school} is not in the registry`);
    // A device's classroom is one of its own school's: classroom ids, like device ids, are unique per school.
    if (d.classroom !== undefined && !classrooms.has(entityKey(d.school, d.classroom)))
      problem('devices', key, 'classroom', `classroom ${d.classroom} is not in school ${d.school}`);
  }
  for (const s of merged.schools) {
    if (s.uplinkDevice === undefined) continue;
    const d = devices.get(entityKey(s.id, s.uplinkDevice));
    if (!d) problem('schools', s.id, 'uplinkDevice', `device ${s.uplinkDevice} is not in school ${s.id}`);
    else if (!(NETWORK_KINDS as readonly string[]).includes(d.kind))
      problem(
        'schools',
        s.id,
        'uplinkDevice',
        `device ${s.uplinkDevice} is a ${d.kind}, not a router or switch`,
      );
  }
  if (issues.length > 0) throw new ImportError(issues);
  return merged;
}
