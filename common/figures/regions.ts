import { regionWithin } from '../../contracts/ids.js';
import type { RegistryIndex } from '../registry/store.js';
import type { Evaluation, SchoolResult } from './results.js';
import { DIGITS, rounded, roundHalfAway, share } from './rounding.js';

/**
 * The regional rollups of an evaluation (api/README.md#computations, Rollups): per region, 校校通 and 班班通 rates,
 * 生机比 and 师机比 over the schools judged in the period.
 */

export interface RollupRow {
  region: string;
  regionName: string;
  regionLevel: string;
  /** `all`, or one value of the split: `urban`/`rural`, or a school level. */
  split: 'all' | 'area' | 'level';
  group: string;
  /** Every registered school of the group, judged in the period or not. */
  schools: number;
  /** Schools judged for 校校通 in the period (with teaching time, or failed for want of a calendar). */
  judgedSchools: number;
  /** schools − judgedSchools: no teaching time in the period, or not rolled up yet. */
  schoolsNotApplicable: number;
  schoolsAttained: number;
  /** schoolsAttained ÷ judgedSchools. */
  xxtPct: number | null;
  /** Classes, students, teachers and working computers: of the judged schools only. */
  classes: number;
  classesAttained: number;
  bbtPct: number | null;
  classesUnmonitored: number;
  students: number;
  teachers: number;
  studentComputers: number;
  teacherComputers: number;
  /** 生机比: students ÷ working student computers, both of the judged schools; null without any. */
  studentsPerComputer: number | null;
  /** 师机比: teachers ÷ working teacher computers, both of the judged schools. */
  teachersPerComputer: number | null;
}

/**
 * Rollups per region at or below `scope` (the scope's own region and every region under it), each as a total
 * and split by urban/rural and by school level. Only schools within the scope are counted.
 */
export function rollups(ev: Evaluation, reg: RegistryIndex, scope: string | undefined): RollupRow[] {
  const acc = new Map<string, RollupRow>();
  const add = (path: string, split: RollupRow['split'], group: string, s: SchoolResult) => {
    const key = `${path}|${split}|${group}`;
    let r = acc.get(key);
    if (!r) {
      const id = path.split('/').at(-1)!;
      const region = reg.regions.get(id);
      r = {
        region: path,
        regionName: region?.name ?? id,
        regionLevel: region?.level ?? 'region',
        split,
        group,
        schools: 0,
        judgedSchools: 0,
        schoolsNotApplicable: 0,
        schoolsAttained: 0,
        xxtPct: null,
        classes: 0,
        classesAttained: 0,
        bbtPct: null,
        classesUnmonitored: 0,
        students: 0,
        teachers: 0,
        studentComputers: 0,
        teacherComputers: 0,
        studentsPerComputer: null,
        teachersPerComputer: null,
      };
      acc.set(key, r);
    }
    r.schools++;
    if (s.xxt.attained === null) {
      r.schoolsNotApplicable++;
      return;
    }
    // Every other figure over the same judged schools, so a school without data never skews a ratio.
    r.judgedSchools++;
    if (s.xxt.attained) r.schoolsAttained++;
    r.classes += s.bbt.classes;
    r.classesAttained += s.bbt.attained;
    r.classesUnmonitored += s.bbt.unmonitored;
    r.students += s.students;
    r.teachers += s.teachers;
    r.studentComputers += s.computers.studentWorking;
    r.teacherComputers += s.computers.teacherWorking;
  };
  for (const s of ev.schools) {
    if (scope !== undefined && !regionWithin(s.region, scope)) continue;
    const parts = s.region.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const path = parts.slice(0, i).join('/');
      if (scope !== undefined && !regionWithin(path, scope)) continue; // above the scope: not shown
      add(path, 'all', 'all', s);
      add(path, 'area', s.area, s);
      add(path, 'level', s.level, s);
    }
  }
  const rows = [...acc.values()];
  for (const r of rows) {
    r.xxtPct = rounded(share(r.schoolsAttained, r.judgedSchools), DIGITS.pct);
    r.bbtPct = rounded(share(r.classesAttained, r.classes), DIGITS.pct);
    r.studentsPerComputer =
      r.studentComputers > 0 ? roundHalfAway(r.students / r.studentComputers, DIGITS.ratio) : null;
    r.teachersPerComputer =
      r.teacherComputers > 0 ? roundHalfAway(r.teachers / r.teacherComputers, DIGITS.ratio) : null;
  }
  return rows.sort((a, b) =>
    a.region === b.region ? (a.split + a.group < b.split + b.group ? -1 : 1) : a.region < b.region ? -1 : 1,
  );
}
