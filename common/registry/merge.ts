import {
  ENTITIES,
  type EntityName,
  NETWORK_KINDS,
  probeSettingsProblem,
  type Registry,
} from '../../contracts/registry.js';
import {
  boundIssues,
  ImportError,
  type ImportIssue,
  type ParsedRows,
  type ReadResult,
  type RowSource,
} from './import.js';
import { entityKey, rowKey } from './key.js';

/**
 * Applies parsed rows to the current registry: rows upsert by id (or replace whole lists), then the result is
 * checked as a whole — duplicate ids, references between entities, the region hierarchy. Any problem throws an
 * ImportError and the caller keeps the registry it had: an import is all-or-nothing.
 */
export interface MergeOptions {
  /** Entity lists the import replaces instead of updating (a list absent from the import is kept). */
  replace?: readonly EntityName[];
  /**
   * The credential names of the pollers' credentials file (`api.pollerCredentialsFile`): a device row of this
   * import whose `credentialRef` is not one of them is refused, by row and column. Absent: not checked.
   */
  credentialRefs?: readonly string[];
}

/** A `rowKey` key for people: `wb-a1 of school 3301080001`. */
function named(key: string): string {
  const i = key.indexOf('/');
  return i < 0 ? key : `${key.slice(i + 1)} of school ${key.slice(0, i)}`;
}

function describe(e: EntityName, x: { id: string; school?: string }): string {
  return (e === 'classrooms' || e === 'devices') && x.school !== undefined
    ? `${x.id} of school ${x.school}`
    : x.id;
}

/**
 * The files' rows merged into `current`, with every problem of the import in one answer: the cell errors the
 * files had and the reference errors of the rows that parsed, bounded per file (`boundIssues`). A reference to a
 * row refused for its own cells is not an error of its own: that row's error is the one to fix.
 */
export function mergeRead(current: Registry, read: ReadResult, opts: MergeOptions = {}): Registry {
  let merged: Registry | undefined;
  let issues = read.issues;
  try {
    merged = mergeRegistry(current, read.rows, opts, read.refused);
  } catch (e) {
    if (!(e instanceof ImportError)) throw e;
    issues = [...issues, ...e.issues];
  }
  if (issues.length > 0 || !merged) throw new ImportError(boundIssues(issues, read.files));
  return merged;
}

/**
 * `refused`: `${entity}:${key}` of rows the import refused for their cells (`${entity}:*`: a list it could not
 * read); a reference to one is not reported as "not in the registry" — it is there, with an error of its own.
 */
export function mergeRegistry(
  current: Registry,
  rows: ParsedRows,
  opts: MergeOptions = {},
  refused: ReadonlySet<string> = new Set(),
): Registry {
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
      for (const x of current[e]) map.set(rowKey(e, x), x);
    const seen = new Map<string, RowSource>();
    for (const { value, source } of rows[e]) {
      const key = rowKey(e, value);
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
        const row = { ...old, ...given } as Record<string, unknown>;
        // A device switched to icmp by a row that gives no port drops its old TCP port: an empty cell keeps a
        // stored value, so there would be no other way back from tcp but replacing the whole list.
        if (e === 'devices' && given.probeMethod === 'icmp' && given.probePort === undefined)
          delete row.probePort;
        map.set(key, row as { id: string });
      } else map.set(key, value);
    }
    next[e] = map;
  }
  /**
   * Whether `entity` `key` exists for a reference: in the merged registry, or refused for its own cells (or in
   * a list the import could not read).
   */
  const present = (entity: EntityName, key: string) =>
    next[entity].has(key) || refused.has(`${entity}:${key}`) || refused.has(`${entity}:*`);
  const merged: Registry = {
    regions: [...next.regions.values()] as Registry['regions'],
    schools: [...next.schools.values()] as Registry['schools'],
    classrooms: [...next.classrooms.values()] as Registry['classrooms'],
    devices: [...next.devices.values()] as Registry['devices'],
  };

  /** An issue about `entity` `id` (a key from `rowKey`)'s field `key`: at its import row, or as an existing entry. */
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
    if (r.parent !== undefined && !present('regions', r.parent))
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
    if (!present('regions', s.region))
      problem('schools', s.id, 'region', `region ${s.region} is not in the registry`);
  }
  for (const c of merged.classrooms) {
    if (!present('schools', c.school))
      problem('classrooms', entityKey(c.school, c.id), 'school', `school ${c.school} is not in the registry`);
  }
  const devices = next.devices as Map<string, Registry['devices'][number]>;
  for (const d of merged.devices) {
    const key = entityKey(d.school, d.id);
    if (!present('schools', d.school))
      problem('devices', key, 'school', `school ${d.school} is not in the registry`);
    // A device's classroom is one of its own school's: classroom ids, like device ids, are unique per school.
    if (d.classroom !== undefined && !present('classrooms', entityKey(d.school, d.classroom)))
      problem('devices', key, 'classroom', `classroom ${d.classroom} is not in school ${d.school}`);
    const probe = probeSettingsProblem(d);
    if (probe) problem('devices', key, ...probe);
  }
  if (opts.credentialRefs) {
    const known = new Set(opts.credentialRefs);
    for (const d of merged.devices) {
      const key = entityKey(d.school, d.id);
      // Only this import's rows: a credential removed from the file later must not block unrelated imports.
      if (d.credentialRef === undefined || known.has(d.credentialRef) || !sources.has(`devices:${key}`))
        continue;
      problem(
        'devices',
        key,
        'credentialRef',
        `credential ${d.credentialRef} is not in the pollers' credentials file`,
      );
    }
  }
  for (const s of merged.schools) {
    if (s.uplinkDevice === undefined) continue;
    const d = devices.get(entityKey(s.id, s.uplinkDevice));
    if (!d && present('devices', entityKey(s.id, s.uplinkDevice))) continue; // refused for its own cells
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
