import type { ReasonCode } from '../../contracts/labels.js';
import type { School } from '../../contracts/registry.js';
import type { Period } from './load.js';
import type { PeriodUseBasis } from './usage.js';

/**
 * What `evaluate` (evaluate.ts) finds: per school (校校通, 班班通 counts, computers), per class room (班班通) and per
 * device (the usage audit), with the reasons of every verdict. The API's responses and files, the regional
 * rollups (regions.ts) and the dashboard points (points.ts) are read from these.
 */

export interface Reason {
  /** Stable code (documented in api/README.md; its Chinese label in contracts/labels.ts). */
  code: ReasonCode;
  message: string;
}

export interface SchoolResult {
  id: string;
  name: string;
  region: string;
  area: School['area'];
  level: School['level'];
  classes: number;
  students: number;
  teachers: number;
  teachingDays: number;
  uplink: {
    /** null: not known — the school has no rolled-up teaching day in the period (not judged, or no calendar). */
    monitored: boolean | null;
    /** null: not measured (no rolled-up teaching day, or no uplink registered); never 0 for "not measured". */
    availabilityPct: number | null;
    capacityMbps: number | null;
    capacitySource: 'contract' | 'polled' | null;
    perClassMbps: number | null;
    /** Share of teaching-time buckets with readings at or above the profile's congestion threshold. */
    busyPct: number | null;
    /** null: no uplink readings to judge it by. */
    congested: boolean | null;
    p95MaxDayPct: number | null;
    /** Share of teaching time probed; of the probed, the share with an answer (null: never probed). */
    probedPct: number | null;
    reachablePct: number | null;
    /** Share of answered teaching time over the profile's RTT or jitter threshold (null: not judged). */
    qualityLowPct: number | null;
    /** Pooled probe loss of the answered teaching time (null: never answered). */
    lossPct: number | null;
    /** null: not judged (the profile sets no thresholds, or the school was never probed). */
    linkQualityLow: boolean | null;
  };
  /** null: no teaching time in the period (vacation), so nothing to judge. */
  xxt: { attained: boolean | null; reasons: Reason[] };
  bbt: {
    /** Classes counted: the larger of the school's class count and its registered class rooms. */
    classes: number;
    attained: number;
    /** Classes without a registered class room (no monitored equipment): not attained. */
    unmonitored: number;
  };
  computers: { teacherWorking: number; studentWorking: number };
}

export interface ClassroomResult {
  id: string;
  school: string;
  name: string;
  attained: boolean | null;
  reasons: Reason[];
  equipped: boolean;
  onlineDays: number;
  teachingDays: number;
  /** null: no teaching week measured (its school is not judged, or has no calendar). */
  periodsUsedPerWeek: number | null;
  faultyPct: number | null;
  /**
   * Use in teaching time, of its best display (most periods used, then most hours used, then on): hours on,
   * in use, on but unused; class periods used; used hours per teaching week; what its use rests on. null:
   * nothing measured (its school is not judged, has no calendar, or the room has no display).
   */
  onHours: number | null;
  inUseHours: number | null;
  onUnusedHours: number | null;
  periodsUsed: number | null;
  usedHoursPerWeek: number | null;
  useBasis: PeriodUseBasis | null;
  /** Hours left on outside teaching time, summed over its displays (each wastes power and lamp life); null as above. */
  leftOnHours: number | null;
}

export interface DeviceAudit {
  id: string;
  school: string;
  classroom: string | null;
  kind: string;
  batch: string | null;
  purchasedOn: string | null;
  /** Hours on in teaching time. */
  poweredOnHours: number;
  /** Hours in use in teaching time (docs/usage.md: on and used, by activity or, for older agents, by power). */
  inUseHours: number;
  /** Hours on in teaching time but not in use. */
  onUnusedHours: number;
  /** Hours on outside teaching time: before the first and after the last period, and on days without school. */
  leftOnHours: number;
  /** Class periods used (in use for at least half of the period). */
  periodsUsed: number;
  /** In-use hours per teaching week of its school; null: no teaching week measured. */
  usedHoursPerWeek: number | null;
  /** What its use figures rest on (`periodUseBasis`, common/figures/usage.ts); null: never online in teaching time. */
  useBasis: PeriodUseBasis | null;
  /** Teaching days in the period with at least one used class period. */
  daysUsed: number;
  teachingDays: number;
  usedDaysPct: number | null;
  /** The last day used from the evaluation's `lookbackFrom` to the period's end; null: none in that window. */
  lastUsed: string | null;
  /** Rolled-up teaching days of its school after `lastUsed` (after `lookbackFrom` when null) to the period's end. */
  idleTeachingDays: number;
  idle: boolean;
}

export interface Coverage {
  /** Teaching dates (of the calendars of the schools counted) in the period so far that are rolled up. */
  rolledDays: number;
  /** Dates in the period so far on which at least one school counted teaches. */
  teachingDates: number;
}

export interface Evaluation {
  period: Period;
  profile: string;
  /** Coverage over every school of the registry; `coverage(ev, reg, scope)` (evaluate.ts) for a scope. */
  coverage: Coverage;
  /** Where "last used" looked back from (api/README.md#definitions). */
  lookbackFrom: string;
  /** The idle threshold applied: the request's, else the profile's (DEFAULT_IDLE_DAYS in the built-ins). */
  idleDays: number;
  schools: SchoolResult[];
  classrooms: ClassroomResult[];
  devices: DeviceAudit[];
  /** Per school, its calendar's id (schools without a calendar are absent). */
  calendarOf: Map<string, string>;
  /** Per calendar id, its teaching dates in the period so far. */
  teachingDatesOf: Map<string, readonly string[]>;
  rolledDates: readonly string[];
}
