import type { PointOf } from '../../contracts/influx.js';
import { dayNumber } from '../calendar.js';
import type { RegistryIndex } from '../registry/store.js';
import type { Evaluation } from './results.js';

/**
 * An evaluation as `attainment_day` points (one per school, at `atMs`), so Grafana can chart and tabulate
 * attainment with plain InfluxQL: the same figures as /v1/attainment for the evaluation's period.
 */
export function attainmentPoints(
  ev: Evaluation,
  reg: RegistryIndex,
  atMs: number,
): PointOf<'attainment_day'>[] {
  const windowDays = dayNumber(ev.period.to) - dayNumber(ev.period.from) + 1;
  return ev.schools.map((s) => {
    const school = reg.schools.get(s.id);
    const region = school ? reg.regions.get(school.region) : undefined;
    const u = s.uplink;
    return {
      measurement: 'attainment_day',
      ts: atMs,
      tags: {
        region: reg.schoolPath(s.id) ?? s.region,
        region_name: region?.name ?? s.region,
        school: s.id,
        school_name: s.name,
        area: s.area,
        level: s.level,
        profile: ev.profile,
      },
      fields: {
        window_days: windowDays,
        teaching_days: s.teachingDays,
        judged: s.xxt.attained === null ? 0 : 1,
        ...(s.xxt.attained === null ? {} : { xxt: s.xxt.attained ? 1 : 0 }),
        ...(u.availabilityPct === null ? {} : { availability_pct: u.availabilityPct }),
        ...(u.perClassMbps === null ? {} : { per_class_mbps: u.perClassMbps }),
        ...(u.busyPct === null ? {} : { busy_pct: u.busyPct }),
        classes: s.bbt.classes,
        classes_attained: s.bbt.attained,
        classes_unmonitored: s.bbt.unmonitored,
        students: s.students,
        teachers: s.teachers,
        student_computers: s.computers.studentWorking,
        teacher_computers: s.computers.teacherWorking,
      },
    };
  });
}
