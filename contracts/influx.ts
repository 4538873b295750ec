/**
 * InfluxDB schema: measurement, tag and field names, defined once. The collector writes these; the API,
 * dashboards and alerting read them.
 *
 * Tags are indexed and make series, so every tag here has bounded cardinality: the region path, school,
 * classroom, device and device kind (tens of thousands per city), plus a few small enumerations. Unbounded
 * values (messages, serial numbers, readings) are fields, never tags.
 */

export type FieldType = 'float' | 'int' | 'string' | 'bool';

export interface MeasurementDef {
  readonly tags: readonly string[];
  readonly fields: Readonly<Record<string, FieldType>>;
  readonly doc: string;
}

/**
 * Tags every device measurement carries. The collector takes `region` (a path of region ids, e.g.
 * `330000/330100/330106`), `classroom` and `kind` of a registered (school, device) from the fleet registry, never
 * from the device's payload; see UNASSIGNED_REGION for devices the registry does not know.
 */
export const STANDARD_TAGS = ['region', 'school', 'classroom', 'device', 'kind'] as const;
export type StandardTag = (typeof STANDARD_TAGS)[number];

export { UNASSIGNED_REGION } from './ids.js';

/**
 * Event types the collector itself writes (the `type` tag of `event` points), beside those devices publish
 * (contracts/messages.ts EVENT_TYPES). A device cannot publish `registry_mismatch`: it is not in its schema.
 */
export const COLLECTOR_EVENT_TYPES = {
  /** A presence transition (subject `presence`). */
  statusChange: 'status_change',
  /**
   * A registered device announced a region, classroom or kind other than the registry's (subject: the field;
   * message and details: announced and registered values). Written once per device and distinct announced value.
   */
  registryMismatch: 'registry_mismatch',
} as const;

/** `display.use_basis`: what a reading's use was judged by (docs/usage.md, "The rule"). */
export const USE_BASES = ['activity', 'power'] as const;
/**
 * What a device's or classroom's use over a period rests on (the audit's `useBasis`): every online teaching
 * bucket with activity evidence, none (power alone), or some (`mixed`).
 */
export const PERIOD_USE_BASES = [...USE_BASES, 'mixed'] as const;

export const MEASUREMENTS = {
  presence: {
    doc: 'Device presence transitions (online/offline) as decided by the collector.',
    tags: [...STANDARD_TAGS],
    fields: { online: 'int', reason: 'string' },
  },
  host: {
    doc: 'Classroom PC / OPS host health from the agent; `spool_dropped`: messages the agent could not keep for delivery (its full spool dropped them, or its spool failed), cumulative per agent run, written only once there are any.',
    tags: [...STANDARD_TAGS],
    fields: {
      uptime_s: 'int',
      cpu_pct: 'float',
      mem_used_pct: 'float',
      mem_total_bytes: 'int',
      spool_dropped: 'int',
    },
  },
  nic: {
    doc: 'Classroom host NIC byte counters and rates.',
    tags: [...STANDARD_TAGS, 'nic'],
    fields: { rx_bytes: 'int', tx_bytes: 'int', rx_bps: 'float', tx_bps: 'float' },
  },
  display: {
    doc: "Teaching display (whiteboard, panel, projector) health, and classroom use as the collector judged it per reading (docs/usage.md, `collector.usage`): `on` the display's power (on or warming up) or, without a display, the computer's screen; `in_use` on and (input within `usage.activeWithinS`, or a teaching application or site in the foreground with input within `usage.teachingIdleWithinS`); its parts `active`, `teaching_app` (0/1), `idle_s`, `screen_on` (0/1) and `foreground` (the executable's name: a field, never a tag) from the reading's `activity`; `use_basis` `activity` when it had activity evidence, `power` when use rests on the display's power alone (a v1 agent's `inUse`, or v2 without `activity`). Also written for a v2 teacher PC without a display source (no `source` tag).",
    tags: [...STANDARD_TAGS, 'source'],
    fields: {
      power: 'string',
      on: 'int',
      in_use: 'int',
      active: 'int',
      teaching_app: 'int',
      idle_s: 'int',
      screen_on: 'int',
      foreground: 'string',
      use_basis: 'string',
      input: 'string',
      touch_ok: 'int',
      temperature_c: 'float',
      lamp_hours: 'int',
      err_fan: 'string',
      err_lamp: 'string',
      err_temperature: 'string',
      err_cover: 'string',
      err_filter: 'string',
      err_other: 'string',
      error_count: 'int',
      error_codes: 'string',
    },
  },
  iface: {
    doc: "Router/switch interface counters, rates and status from SNMP (IF-MIB). util_*_pct: of the interface speed; on a school's uplink interface, of the school's capacity — its contracted Mbps, else the speed (common/figures/capacity.ts).",
    tags: [...STANDARD_TAGS, 'ifname', 'uplink'],
    fields: {
      in_octets: 'int',
      out_octets: 'int',
      in_bps: 'float',
      out_bps: 'float',
      util_in_pct: 'float',
      util_out_pct: 'float',
      speed_mbps: 'float',
      oper_up: 'int',
      oper_status: 'string',
      in_errors: 'int',
      out_errors: 'int',
      in_discards: 'int',
      alias: 'string',
    },
  },
  probe: {
    doc: "One probe cycle of a device's probe address by the poller (agents/snmp/probe.ts): ICMP echoes (fping) or TCP connects sent and answered, loss_pct = 100 × (sent − received) / sent, RTT min/avg/max over the answers (absent when none), jitter = mean |ΔRTT| of consecutive answers (RFC 3550 §6.4.1 without its smoothing; absent with fewer than two).",
    tags: [...STANDARD_TAGS, 'method'],
    fields: {
      sent: 'int',
      received: 'int',
      loss_pct: 'float',
      rtt_min_ms: 'float',
      rtt_avg_ms: 'float',
      rtt_max_ms: 'float',
      jitter_ms: 'float',
    },
  },
  snmp: {
    doc: 'One SNMP poll of a device: its uptime and how long the poll took.',
    tags: [...STANDARD_TAGS],
    fields: { sys_uptime_s: 'float', poll_ms: 'float', iface_count: 'int' },
  },
  event: {
    doc: 'Events: reboots, faults, presence changes, reachability, registry mismatches. `subject` is a tag, so two events of one reading (a fan and a lamp fault) are two points, not one overwriting the other.',
    tags: [...STANDARD_TAGS, 'type', 'severity', 'subject'],
    fields: { message: 'string', details: 'string' },
  },
  usage_day: {
    doc: 'Rollup (rollup/rollup.ts): one point per registered classroom device per day, at local midnight, for each school with a calendar. Counts of rollup buckets (bucket_s) in teaching time (class periods): teaching, online, on, in use (`display.in_use`), on but unused (`unused_b`), faulty, with activity evidence (`activity_b`); class periods and those used (in use for at least half of the period). Outside teaching time — before the first period, after the last, and all day on a day without school (`teaching_day` 0; the teaching figures are absent, so `count(used_day)` counts teaching days) — buckets left on (`left_on_b`).',
    tags: [...STANDARD_TAGS],
    fields: {
      bucket_s: 'int',
      teaching_b: 'int',
      online_b: 'int',
      on_b: 'int',
      use_b: 'int',
      faulty_b: 'int',
      periods: 'int',
      periods_used: 'int',
      online_day: 'int',
      used_day: 'int',
      unused_b: 'int',
      left_on_b: 'int',
      activity_b: 'int',
      teaching_day: 'int',
    },
  },
  usage_packed_day: {
    doc: 'Rollup (rollup/rollup.ts): usage_day of one school packed into a string (`device:online,on,use,faulty,periods_used,unused,left_on,activity|…`, ≤ 400 devices per part) for the API, which reads a whole city day as one row per school. A reader takes each item by its number of counters: 8 (this format; a later one only appends), or 5 (rolled up before #16: no left-on or activity counters, on-but-unused = on − use).',
    tags: ['region', 'school', 'part'],
    fields: { devices: 'string', n: 'int', parts: 'int', bucket_s: 'int' },
  },
  uplink_day: {
    doc: "Rollup (rollup/rollup.ts): one point per school per teaching day from its uplink interface: buckets in teaching time, with data, up, and above 50…90 % utilisation (either direction); the day's 95th percentile; from its probes (docs/links.md): buckets probed, buckets with an answer, `avail_b` the buckets up by either measure (interface up or a probe answered), `probe_sent`/`probe_lost` the probes of the answered buckets (the pooled loss), and `quality` (answered buckets only), the buckets per loss/RTT/jitter class (`l.r.j:n|…`, common/figures/quality.ts).",
    tags: ['region', 'school'],
    fields: {
      bucket_s: 'int',
      teaching_b: 'int',
      data_b: 'int',
      up_b: 'int',
      over50_b: 'int',
      over60_b: 'int',
      over70_b: 'int',
      over80_b: 'int',
      over90_b: 'int',
      p95_util_pct: 'float',
      speed_mbps: 'float',
      probe_b: 'int',
      reach_b: 'int',
      avail_b: 'int',
      probe_sent: 'int',
      probe_lost: 'int',
      quality: 'string',
    },
  },
  alert: {
    doc: 'Alert notifications (alerting/): one point each time an alert is notified — fired, reminded or resolved — for dashboards. `firing` is 1 for fired and reminded, 0 for resolved; `affected` counts the devices an uplink outage names.',
    tags: ['region', 'school', 'device', 'rule', 'severity', 'subject'],
    fields: {
      kind: 'string',
      firing: 'int',
      alert_id: 'string',
      message: 'string',
      affected: 'int',
      duration_s: 'float',
    },
  },
  attainment_day: {
    doc: 'Rollup (rollup/service.ts after each rollup run): per school, standard profile and rolled-up day, the attainment of the window of `window_days` days ending that day, as /v1/attainment computes it — for dashboards. `judged` is 1 when the window had teaching time (the school counts in every ratio), else 0 and `xxt` (校校通, 1/0) is absent. Names are tags so dashboards can show them.',
    tags: ['region', 'region_name', 'school', 'school_name', 'area', 'level', 'profile'],
    fields: {
      window_days: 'int',
      teaching_days: 'int',
      judged: 'int',
      xxt: 'int',
      availability_pct: 'float',
      per_class_mbps: 'float',
      busy_pct: 'float',
      classes: 'int',
      classes_attained: 'int',
      classes_unmonitored: 'int',
      students: 'int',
      teachers: 'int',
      student_computers: 'int',
      teacher_computers: 'int',
    },
  },
  rollup_day: {
    doc: 'Rollup (rollup/rollup.ts): one point per rolled-up day: what it covered and when it ran.',
    tags: [],
    fields: { devices: 'int', schools: 'int', duration_ms: 'float', bucket_s: 'int' },
  },
  late_data: {
    doc: "Collector: readings of local date `date` were stored late (dated more than `collector.lateAfterS` before they arrived: a spool replay), at about this point's time (rounded up to 10 s; at most one point per date and 10 s, whichever collector writes it). The scheduled rollup reads the day's raw points again when it sees one (docs/scale.md).",
    tags: ['date'],
    fields: { n: 'int' },
  },
} as const satisfies Record<string, MeasurementDef>;

export type MeasurementName = keyof typeof MEASUREMENTS;

/** Integers also accept a decimal string (a validated counter from a payload), written without conversion. */
type FieldValue<T> = T extends 'int'
  ? number | bigint | string
  : T extends 'float'
    ? number | bigint
    : T extends 'string'
      ? string
      : boolean;

/** A point of measurement M, typed by its definition: unknown tags or fields do not compile. */
export interface PointOf<M extends MeasurementName> {
  measurement: M;
  tags: Partial<Record<(typeof MEASUREMENTS)[M]['tags'][number], string>>;
  fields: {
    [F in keyof (typeof MEASUREMENTS)[M]['fields']]?: FieldValue<(typeof MEASUREMENTS)[M]['fields'][F]>;
  };
  /** Unix epoch milliseconds. */
  ts: number;
}

export type AnyPoint = { [M in MeasurementName]: PointOf<M> }[MeasurementName];
