import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { carriesUplink, entityKey, type RegistryIndex, RegistryStore } from '../common/registry/store.js';
import { UNASSIGNED_REGION } from '../contracts/influx.js';
import type { DeviceKind } from '../contracts/messages.js';
import type { Device } from '../contracts/registry.js';
import type { LimitsConfig } from './limits.js';
import type { DeviceInfo } from './points.js';

/**
 * Where a reading belongs, decided by the registry, not by the device.
 *
 * A message under `cfm/v1/{school}/{device}/…` is attributed to that school's device (the broker's ACL ties the
 * topic to the credential). If the registry knows the (school, device), the points' region path, classroom and
 * kind are the registry's, and whatever the payload announces is only compared with them: a disagreement is
 * reported once per device and distinct value (a `registry_mismatch` event) and counted per message. If it does
 * not, the points are stored under the region `unassigned` (UNASSIGNED_REGION) with no classroom, so no
 * county's dashboard and no rollup sees them — a bounded number per school, so invented ids cannot grow memory
 * and series without end.
 *
 * The registry is the file an import writes (`collector.registryFile`); RegistryStore re-reads it when it
 * changed, looking at most every `checkEveryMs`, so an import takes effect within about a second.
 */

/** What a message announces about its device; an absent field claims nothing. */
export interface Announced {
  kind: DeviceKind;
  classroom?: string | undefined;
  region?: string | undefined;
}

export type MismatchField = 'region' | 'classroom' | 'kind';

export interface Mismatch {
  field: MismatchField;
  announced: string;
  /** Undefined: the registry has no value (a device in no classroom). */
  registered: string | undefined;
}

export type UnassignedCause = 'unknown_school' | 'unknown_device';

export type Attribution =
  | { ok: true; registered: true; info: DeviceInfo; mismatches: readonly Mismatch[] }
  | { ok: true; registered: false; info: DeviceInfo; cause: UnassignedCause; firstSeen: boolean }
  | { ok: false; reason: 'unassigned_limit'; scope: 'school' | 'total'; firstHit: boolean };

export interface RegistryHealth {
  file: string;
  /** The file does not exist: every device is unassigned. */
  missing: boolean;
  /** Why the last re-read failed; the last good registry is in use meanwhile. */
  error: string | null;
  devices: number;
  version: number;
}

/** How often, at most, a full set of unassigned places is searched for idle or registered devices. */
const PRUNE_EVERY_MS = 60_000;

/** Distinct (field, announced, registered) mismatches reported per device; further ones are only counted. */
const MAX_MISMATCH_REPORTS_PER_DEVICE = 16;

export class Attributor {
  readonly store: RegistryStore;
  /** Unregistered devices tracked, by school: when each last sent an accepted message. */
  private readonly unassigned = new Map<string, Map<string, number>>();
  private unassignedTotal = 0;
  private readonly limitLogged = new Set<string>();
  private readonly reported = new Map<string, Set<string>>();
  private loggedError: string | undefined;
  private loggedVersion = 0;
  /** The registry version the unassigned places were last pruned against, and when. */
  private prunedVersion = -1;
  private prunedAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    file: string,
    checkEveryMs: number,
    private readonly limits: LimitsConfig,
    private readonly log: Logger,
    /** Called for an unregistered device whose place was taken back because it was idle. */
    private readonly forget: (school: string, device: string) => void = () => {},
  ) {
    this.store = new RegistryStore(file);
    this.store.checkEveryMs = checkEveryMs;
  }

  /**
   * Reads the registry at start. A missing file is an empty registry (warned: every device is unassigned until
   * an import writes it); an unreadable or malformed one stops start-up, naming the file and the reason.
   */
  load(): void {
    const file = this.store.path;
    this.store.load();
    this.loggedVersion = this.store.version;
    if (!existsSync(file)) {
      this.log.warn(
        { registryFile: file },
        'no registry file: every device is stored as unassigned until an import writes it',
      );
    } else {
      this.log.info({ registryFile: file, devices: this.store.index.data.devices.length }, 'registry loaded');
    }
  }

  /** The registry now (re-read if an import replaced it); a failed re-read is logged once, not per message. */
  index(): RegistryIndex {
    const store = this.store;
    const idx = store.index;
    const err = store.lastError?.message;
    if (err !== this.loggedError) {
      if (err)
        this.log.error(
          { registryFile: store.path, err },
          'registry could not be re-read: keeping the last good one',
        );
      this.loggedError = err;
    }
    if (store.version !== this.loggedVersion) {
      this.loggedVersion = store.version;
      this.log.info(
        { registryFile: store.path, devices: idx.data.devices.length, version: store.version },
        'registry re-read',
      );
    }
    return idx;
  }

  health(): RegistryHealth {
    const idx = this.index();
    return {
      file: this.store.path,
      missing: !existsSync(this.store.path),
      error: this.store.lastError?.message ?? null,
      devices: idx.data.devices.length,
      version: this.store.version,
    };
  }

  /** The tags of a (school, device) now, without announcements: for presence timeouts. */
  tags(school: string, device: string, kind: DeviceKind): DeviceInfo {
    const idx = this.index();
    const d = idx.device(school, device);
    const path = idx.schoolPath(school);
    return d && path !== undefined ? this.infoOf(idx, school, d, path) : { kind, region: UNASSIGNED_REGION };
  }

  /**
   * A registered device's tags, made once per device and registry version (a school's contract and which device
   * carries its uplink are lookups of their own): every message of the device shares them, read-only.
   */
  private infoOf(idx: RegistryIndex, school: string, d: Device, path: string): DeviceInfo {
    if (this.infoIndex !== idx) {
      this.infoIndex = idx;
      this.infos = new WeakMap();
    }
    let info = this.infos.get(d);
    if (!info) {
      info = Object.freeze(registeredInfo(idx, school, d, path));
      this.infos.set(d, info);
    }
    return info;
  }
  private infoIndex: RegistryIndex | undefined;
  private infos = new WeakMap<Device, DeviceInfo>();

  /**
   * Attributes one message of a (school, device) that announces `a`, received at `nowMs`. `key`:
   * entityKey(school, device), when the caller has it (a parsed topic's).
   */
  attribute(
    school: string,
    device: string,
    a: Announced,
    nowMs: number,
    key = entityKey(school, device),
  ): Attribution {
    const idx = this.index();
    const d = idx.device(school, device, key);
    const path = idx.schoolPath(school);
    if (d && path !== undefined) {
      if (this.unassigned.get(school)?.delete(device)) this.unassignedTotal--;
      // The common case, no disagreement: one shared empty list, no array per message.
      let mismatches = NO_MISMATCHES;
      const regionDiffers = a.region !== undefined && a.region !== path;
      const classroomDiffers = a.classroom !== undefined && a.classroom !== d.classroom;
      if (regionDiffers || classroomDiffers || a.kind !== d.kind) {
        const found: Mismatch[] = [];
        if (regionDiffers) found.push({ field: 'region', announced: a.region!, registered: path });
        if (classroomDiffers)
          found.push({ field: 'classroom', announced: a.classroom!, registered: d.classroom });
        if (a.kind !== d.kind) found.push({ field: 'kind', announced: a.kind, registered: d.kind });
        mismatches = found;
      }
      return { ok: true, registered: true, info: this.infoOf(idx, school, d, path), mismatches };
    }
    const cause: UnassignedCause = path === undefined ? 'unknown_school' : 'unknown_device';
    let places = this.unassigned.get(school);
    const known = places?.has(device) ?? false;
    if (!known) {
      const full = () =>
        (this.unassigned.get(school)?.size ?? 0) >= this.limits.maxUnassignedPerSchool
          ? 'school'
          : this.unassignedTotal >= this.limits.maxUnassignedDevices
            ? 'total'
            : undefined;
      // Full: take back the places of devices registered since they were counted, and of devices silent for
      // `unassignedIdleS` — looked for when the registry changed, else at most once a minute, not on every
      // message of a refused device.
      if (
        full() &&
        (this.prunedVersion !== this.store.version || nowMs - this.prunedAtMs >= PRUNE_EVERY_MS)
      ) {
        this.prunedVersion = this.store.version;
        this.prunedAtMs = nowMs;
        this.prune(idx, nowMs);
      }
      const scope = full();
      if (scope)
        return {
          ok: false,
          reason: 'unassigned_limit',
          scope,
          firstHit: this.firstHit(scope === 'school' ? school : ''),
        };
      places = this.unassigned.get(school);
      if (!places) {
        places = new Map();
        this.unassigned.set(school, places);
      }
      this.unassignedTotal++;
    }
    places!.set(device, nowMs);
    return {
      ok: true,
      registered: false,
      info: { kind: a.kind, region: UNASSIGNED_REGION },
      cause,
      firstSeen: !known,
    };
  }

  /** Unregistered devices tracked now, by school. */
  unassignedCounts(): Map<string, number> {
    return new Map([...this.unassigned].map(([s, places]) => [s, places.size]));
  }

  private firstHit(scope: string): boolean {
    if (this.limitLogged.has(scope)) return false;
    this.limitLogged.add(scope);
    return true;
  }

  private prune(idx: RegistryIndex, nowMs: number): void {
    const idleBeforeMs = nowMs - this.limits.unassignedIdleS * 1000;
    for (const [school, places] of this.unassigned) {
      const registeredSchool = idx.schoolPath(school) !== undefined;
      for (const [device, lastMs] of places) {
        const registered = registeredSchool && idx.device(school, device) !== undefined;
        if (!registered && lastMs >= idleBeforeMs) continue;
        places.delete(device);
        this.unassignedTotal--;
        // A device registered since keeps what the collector remembers of it; an idle one is forgotten.
        if (!registered) this.forget(school, device);
      }
      if (places.size === 0) this.unassigned.delete(school);
    }
  }

  /**
   * Whether this mismatch is new for the device (this announced value against this registered value): report
   * it once, as an event and a log line; at most 16 per device, after which mismatches are only counted.
   */
  firstReport(school: string, device: string, m: Mismatch): boolean {
    const key = entityKey(school, device);
    let seen = this.reported.get(key);
    if (!seen) {
      seen = new Set();
      this.reported.set(key, seen);
    }
    const what = `${m.field}\u0000${m.announced}\u0000${m.registered ?? ''}`;
    if (seen.has(what) || seen.size >= MAX_MISMATCH_REPORTS_PER_DEVICE) return false;
    seen.add(what);
    return true;
  }
}

const NO_MISMATCHES: readonly Mismatch[] = Object.freeze([]);

/** A registered device's tags, and the school's contract on the device that carries its uplink. */
function registeredInfo(idx: RegistryIndex, school: string, d: Device, path: string): DeviceInfo {
  const info: DeviceInfo = { kind: d.kind, classroom: d.classroom, region: path };
  const contract = idx.schools.get(school)?.contractedMbps;
  if (contract !== undefined && carriesUplink(idx, school, d.id)) info.uplinkContractMbps = contract;
  return info;
}
