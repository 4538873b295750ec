import { describe, expect, it } from 'vitest';
import { type Alert, AlertEngine, idOf, type Notification, type Signal } from '../../alerting/engine.js';
import { DEFAULT_RULES } from '../../alerting/rules.js';
import { Calendar } from '../../common/calendar.js';
import { CITY_CALENDAR } from '../helpers/city.js';

/**
 * The engine with an exact clock: the calendar of the fixture city (class periods 08:00-08:40 and 08:50-09:30
 * CST on school days; 国庆 1-7 October; make-up Saturday 10 October).
 */
const cal = new Calendar(CITY_CALENDAR);
const at = (local: string) => Date.parse(`${local}+08:00`);

function harness(opts: { silenced?: (a: Alert, now: number) => boolean; rules?: typeof DEFAULT_RULES } = {}) {
  const engine = new AlertEngine({
    rules: opts.rules ?? DEFAULT_RULES,
    groupWaitS: 30,
    flap: { changes: 6, windowS: 600 },
    teaching: (_school, ms) => cal.isTeachingTime(ms),
    teachingDeadline: (_school, from, classMs) => cal.teachingDeadline(from, classMs),
    silenced: opts.silenced ?? (() => false),
    historyMax: 1_000,
  });
  const sent: Notification[] = [];
  let now = 0;
  const run = (untilMs: number, events: [number, Signal][] = []) => {
    const queue = [...events].sort((a, b) => a[0] - b[0]);
    // As the service runs it: a tick at each signal, at each deadline the engine names, and at least every second.
    while (now <= untilMs) {
      while (queue.length > 0 && queue[0]![0] <= now) engine.observe(queue.shift()![1]);
      sent.push(...engine.tick(now));
      now = Math.max(
        now + 1,
        Math.min(now + 1_000, engine.nextWakeMs, queue[0]?.[0] ?? Number.POSITIVE_INFINITY),
      );
    }
  };
  const start = (ms: number) => {
    now = ms;
  };
  return { engine, sent, run, start };
}

const DEVICES = Array.from({ length: 60 }, (_, i) => `pn-${String(i + 1).padStart(2, '0')}`);
const offline = (device: string, ms: number, active = true): [number, Signal] => [
  ms,
  { kind: 'condition', rule: 'device_offline', school: 'S', device, active, atMs: ms },
];
const uplinkDown = (ms: number, active = true): [number, Signal] => [
  ms,
  { kind: 'condition', rule: 'uplink_down', school: 'S', device: 'gw', active, atMs: ms },
];
const kinds = (sent: Notification[]) => sent.flatMap((n) => n.items.map((i) => `${i.kind}:${i.alert.rule}`));

/** A 60-classroom school loses its uplink at `t0` and gets it back at `t1` (wills after 45 s, poller after 64 s). */
function outage(t0: number, t1: number): [number, Signal][] {
  return [
    ...DEVICES.map((d) => offline(d, t0 + 45_000)),
    uplinkDown(t0 + 64_000),
    uplinkDown(t1 + 30_000, false),
    ...DEVICES.map((d, i) => offline(d, t1 + 2_000 + i * 100, false)),
  ];
}

describe('alert engine', () => {
  it('an uplink outage at a 60-classroom school during class: one notification naming 60 devices, one resolve', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:05:00');
    h.start(t0);
    h.run(at('2026-10-08T08:39:00'), outage(t0, at('2026-10-08T08:20:00')));
    expect(kinds(h.sent)).toEqual(['firing:uplink_down', 'resolved:uplink_down']);
    const firing = h.sent[0]!;
    expect(firing.items[0]!.alert.affected).toEqual(DEVICES);
    // Sent when its 60 s grace ends, to the millisecond: the grace already covers the 30 s group wait.
    expect(firing.atMs - (t0 + 64_000)).toBe(60_000);
    expect(h.engine.active.size).toBe(0);
  });

  it('alert ids are URL-safe, one per alert; keys stay rule|school|device|subject', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:05:00');
    h.start(t0);
    h.run(at('2026-10-08T08:10:00'), outage(t0, at('2026-10-08T09:20:00')));
    const alerts = [...h.engine.active.values()];
    const uplink = h.engine.active.get('uplink_down|S|gw|')!;
    expect(uplink.id).toMatch(/^uplink_down-[0-9a-f]{20}$/);
    expect(h.sent[0]!.items[0]!.alert.id).toBe(uplink.id);
    for (const a of alerts) expect(encodeURIComponent(a.id)).toBe(a.id);
    expect(new Set(alerts.map((a) => a.id)).size).toBe(alerts.length);
    // The devices' alerts name the uplink's as what inhibits them.
    expect(h.engine.active.get('device_offline|S|pn-01|')).toMatchObject({ inhibitedBy: uplink.id });
    // A later alert of the same key is another alert: another id.
    expect(idOf(`uplink_down|S|gw||${t0 + 1}`)).not.toBe(uplink.id);
  });

  it.each([
    ['a Sunday', '2026-10-11'],
    ['a public holiday (国庆)', '2026-10-05'],
    ['the summer vacation', '2026-08-03'],
  ])('the same outage on %s produces nothing', (_name, date) => {
    const h = harness();
    const t0 = at(`${date}T08:05:00`);
    h.start(t0);
    h.run(at(`${date}T08:39:00`), outage(t0, at(`${date}T08:20:00`)));
    expect(h.sent).toEqual([]);
  });

  it('names its next deadline, so the service wakes when a grace, a group window or a hysteresis ends', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:05:00.250');
    h.engine.observe(offline('pn-01', t0)[1]);
    expect(h.engine.nextWakeMs).toBe(t0 + 120_000); // the grace
    expect(h.engine.tick(t0 + 119_999)).toEqual([]);
    expect(h.engine.nextWakeMs).toBe(t0 + 120_000);
    const sent = h.engine.tick(t0 + 120_000);
    expect(sent.map((n) => n.atMs)).toEqual([t0 + 120_000]);
    expect(h.engine.nextWakeMs).toBe(t0 + 120_000 + 4 * 3_600_000); // the reminder
    h.engine.observe(offline('pn-01', t0 + 130_000, false)[1]);
    expect(h.engine.nextWakeMs).toBe(t0 + 130_000 + 300_000); // the hysteresis
    h.engine.tick(t0 + 430_000);
    // The resolve waits out the group window (30 s): a school's resolves go together too.
    expect(h.engine.nextWakeMs).toBe(t0 + 460_000);
    expect(kinds(h.engine.tick(t0 + 460_000))).toEqual(['resolved:device_offline']);
    expect(h.engine.nextWakeMs).toBe(Number.POSITIVE_INFINITY);
  });

  it('a message takes along only alerts of its own rules that would fire in class', () => {
    const h = harness();
    h.start(at('2026-10-08T09:15:00'));
    const cond = (rule: Signal['rule'], device: string, ms: number): [number, Signal] => [
      ms,
      { kind: 'condition', rule, school: 'S', device, active: true, atMs: ms },
    ];
    h.run(at('2026-10-08T09:40:00'), [
      // A display fault fires at 09:28:00; the uplink, saturated since 09:18:30, reaches its 10 minutes only at
      // 09:28:30: another rule, so not pulled forward by the fault's message.
      cond('uplink_saturated', 'gw', at('2026-10-08T09:18:30')),
      cond('display_fault', 'pn-09', at('2026-10-08T09:27:00')),
      // pn-01's grace ends at 09:29:45, in class; pn-02's would end at 09:30:10, after the bell: not taken along,
      // and never notified (a teacher switching off just before the bell).
      offline('pn-01', at('2026-10-08T09:27:45')),
      offline('pn-02', at('2026-10-08T09:28:10')),
    ]);
    expect(
      h.sent.map((n) => [
        new Date(n.atMs).toISOString(),
        n.items.map((i) => `${i.alert.rule}:${i.alert.device}`),
      ]),
    ).toEqual([
      ['2026-10-08T01:28:00.000Z', ['display_fault:pn-09']],
      ['2026-10-08T01:28:30.000Z', ['uplink_saturated:gw']],
      ['2026-10-08T01:29:45.000Z', ['device_offline:pn-01']],
    ]);
  });

  describe('a saturated uplink counts its 10 minutes in class time: a break pauses the grace, not resets it', () => {
    const saturated = (local: string, active = true): [number, Signal] => [
      at(local),
      { kind: 'condition', rule: 'uplink_saturated', school: 'S', device: 'gw', active, atMs: at(local) },
    ];
    const fired = (events: [number, Signal][], until = '2026-10-08T09:40:00') => {
      const h = harness();
      h.start(at('2026-10-08T08:30:00'));
      h.run(at(until), events);
      return h.sent.map((n) => [new Date(n.atMs + 8 * 3_600_000).toISOString().slice(11, 19), ...kinds([n])]);
    };

    it('saturated from 08:35: 5 minutes before the 08:40 bell and 5 after 08:50 — paged at 08:55:00, once', () => {
      expect(fired([saturated('2026-10-08T08:35:00')])).toEqual([['08:55:00', 'firing:uplink_saturated']]);
    });

    it('from 08:45, in the break: the count begins with class and pages at 09:00', () => {
      expect(fired([saturated('2026-10-08T08:45:00')])).toEqual([['09:00:00', 'firing:uplink_saturated']]);
    });

    it('clear for a moment in the break: the count starts again', () => {
      expect(
        fired([
          saturated('2026-10-08T08:35:00'),
          saturated('2026-10-08T08:44:00', false),
          saturated('2026-10-08T08:46:00'),
        ]),
      ).toEqual([['09:00:00', 'firing:uplink_saturated']]);
    });

    it('7 minutes at the end of the last period are not paged in the evening, but 3 minutes into the next class', () => {
      expect(fired([saturated('2026-10-08T09:23:00')], '2026-10-09T08:10:00')).toEqual([
        ['08:03:00', 'firing:uplink_saturated'],
      ]);
    });

    it("a device's offline grace still resets at each break: it must stay off 2 minutes within one period", () => {
      expect(fired([offline('pn-01', at('2026-10-08T08:39:00'))])).toEqual([
        ['08:52:00', 'firing:device_offline'],
      ]);
    });
  });

  it('counts the make-up Saturday (调休) as a school day', () => {
    const h = harness();
    const t0 = at('2026-10-10T08:05:00');
    h.start(t0);
    h.run(at('2026-10-10T08:39:00'), outage(t0, at('2026-10-10T08:20:00')));
    expect(kinds(h.sent)).toEqual(['firing:uplink_down', 'resolved:uplink_down']);
  });

  it('a flapping device produces one alert, not dozens, and resolves once it is quiet', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:00:00');
    h.start(t0);
    // Off 150 s, on 20 s, 12 times over: 34 minutes of flapping through the first period and the break.
    const events: [number, Signal][] = [];
    for (let k = 0; k < 12; k++) {
      events.push(offline('pn-01', t0 + k * 170_000));
      events.push(offline('pn-01', t0 + k * 170_000 + 150_000, false));
    }
    h.run(at('2026-10-08T09:29:00'), events);
    expect(kinds(h.sent)).toEqual(['firing:device_offline', 'resolved:device_offline']);
    expect(h.sent[1]!.items[0]!.alert.flapping).toBe(true);
  });

  it('devices of one school that die together are one message, even when their wills arrive over seconds', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:05:00');
    h.start(t0);
    h.run(
      at('2026-10-08T08:10:00'),
      ['pn-01', 'pn-02', 'pn-03', 'pn-04', 'pn-05'].map((d, i) => offline(d, t0 + i * 600)),
    );
    expect(h.sent).toHaveLength(1);
    expect(h.sent[0]!.items.map((i) => i.alert.device)).toEqual([
      'pn-01',
      'pn-02',
      'pn-03',
      'pn-04',
      'pn-05',
    ]);
    // Sent when the first one's grace ends (08:05 + 120 s), taking along the others, whose graces end within the
    // 30 s group wait: none waits longer than its grace.
    expect(h.sent[0]!.atMs).toBe(at('2026-10-08T08:07:00'));
  });

  it('a device switched off after class, or not yet on, never pages; one that drops during class does', () => {
    const h = harness();
    h.start(at('2026-10-07T16:50:00'));
    h.run(at('2026-10-08T08:10:00'), [
      offline('pn-07', at('2026-10-07T17:00:00')), // the evening before (a holiday, too)
      offline('pn-08', at('2026-10-08T07:40:00')), // before the first period
      offline('pn-09', at('2026-10-08T08:03:00')), // during class
    ]);
    expect(h.sent.map((n) => n.items.map((i) => i.alert.device))).toEqual([['pn-09']]);
    expect(h.sent[0]!.atMs).toBe(at('2026-10-08T08:05:00')); // 08:03 + 120 s grace
  });

  it('reminders wait for class: none at night, at weekends or in the vacation', () => {
    const h = harness();
    h.start(at('2026-10-08T08:05:00'));
    // Still down at the end of Thursday's class; the next class is Friday 08:00 (reminder interval 1 h).
    h.run(at('2026-10-09T08:05:00'), [uplinkDown(at('2026-10-08T08:05:00'))]);
    const times = h.sent.map((n) => new Date(n.atMs + 8 * 3_600_000).toISOString().slice(5, 16));
    // Fired 08:06; an hour later (09:06) is still class; the next one waits for Friday's first period.
    expect(kinds(h.sent)).toEqual(['firing:uplink_down', 'reminder:uplink_down', 'reminder:uplink_down']);
    expect(times).toEqual(['10-08T08:06', '10-08T09:06', '10-09T08:00']);
  });

  it('after the uplink recovers, a device still offline gets its own grace and then pages on its own', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:05:00');
    h.start(t0);
    const events = outage(t0, at('2026-10-08T08:15:00')).filter(
      (e) => !(e[1].kind === 'condition' && e[1].device === 'pn-13' && !e[1].active),
    );
    h.run(at('2026-10-08T08:39:00'), events);
    expect(kinds(h.sent)).toEqual(['firing:uplink_down', 'resolved:uplink_down', 'firing:device_offline']);
    const own = h.sent[2]!;
    expect(own.items[0]!.alert.device).toBe('pn-13');
    // The uplink resolved at 08:15:30 + 180 s; the device then had 120 s.
    expect(own.atMs).toBe(at('2026-10-08T08:18:30') + 120_000);
  });

  it('reminds while firing, stops once acknowledged, and always sends the resolve', () => {
    const h = harness({
      rules: {
        ...DEFAULT_RULES,
        uplink_saturated: { ...DEFAULT_RULES.uplink_saturated, forS: 60, renotifyS: 300 },
      },
    });
    const t0 = at('2026-10-08T08:00:00');
    h.start(t0);
    h.engine.observe({ kind: 'condition', rule: 'uplink_saturated', school: 'S', active: true, atMs: t0 });
    h.run(at('2026-10-08T08:12:00'));
    expect(kinds(h.sent)).toEqual([
      'firing:uplink_saturated',
      'reminder:uplink_saturated',
      'reminder:uplink_saturated',
    ]);
    const id = [...h.engine.active.values()][0]!.id;
    expect(h.engine.ack(id, '值班员', at('2026-10-08T08:12:00'))).toBeDefined();
    // Cleared at 08:25; resolved after its 600 s hysteresis; sent after the group wait.
    h.run(at('2026-10-08T08:39:00'), [
      [
        at('2026-10-08T08:25:00'),
        {
          kind: 'condition',
          rule: 'uplink_saturated',
          school: 'S',
          active: false,
          atMs: at('2026-10-08T08:25:00'),
        },
      ],
    ]);
    expect(kinds(h.sent).slice(3)).toEqual(['resolved:uplink_saturated']);
  });

  it('a silence holds notifications; a still-firing alert is notified when it ends', () => {
    const until = at('2026-10-08T08:20:00');
    const h = harness({ silenced: (_a, now) => now < until });
    const t0 = at('2026-10-08T08:00:00');
    h.start(t0);
    h.run(at('2026-10-08T08:30:00'), [
      offline('pn-01', t0),
      offline('pn-02', t0),
      offline('pn-02', at('2026-10-08T08:10:00'), false),
    ]);
    // pn-02 fired and resolved inside the silence: never notified. pn-01 is owed, and notified when it ends.
    expect(kinds(h.sent)).toEqual(['firing:device_offline']);
    expect(h.sent[0]!.items[0]!.alert.device).toBe('pn-01');
    expect(h.sent[0]!.atMs).toBe(until); // the first tick once it has ended (ticks fall on whole seconds here)
  });

  it('restored after a restart mid-incident, it does not notify again, and resolves once', () => {
    const h = harness();
    const t0 = at('2026-10-08T08:05:00');
    h.start(t0);
    const events = outage(t0, at('2026-10-08T08:20:00'));
    h.run(
      at('2026-10-08T08:10:00'),
      events.filter((e) => e[0] <= at('2026-10-08T08:10:00')),
    );
    expect(kinds(h.sent)).toEqual(['firing:uplink_down']);
    // The process stops; its state file holds this JSON; a new process restores it.
    const saved = JSON.parse(
      JSON.stringify({ active: [...h.engine.active.values()], history: h.engine.history }),
    );
    const h2 = harness();
    h2.engine.restore(saved.active, saved.history);
    h2.start(at('2026-10-08T08:10:01'));
    h2.run(
      at('2026-10-08T08:39:00'),
      events.filter((e) => e[0] > at('2026-10-08T08:10:00')),
    );
    expect(kinds(h2.sent)).toEqual(['resolved:uplink_down']);
  });

  it('a resolve reaches those who heard of the alert, even inside a silence; a reboot in a maintenance window is quiet', () => {
    const from = at('2026-10-08T08:10:00');
    const h = harness({ silenced: (_a, now) => now >= from && now < from + 600_000 });
    const t0 = at('2026-10-08T08:00:00');
    h.start(t0);
    h.run(at('2026-10-08T08:30:00'), [
      offline('pn-01', t0),
      offline('pn-01', at('2026-10-08T08:11:00'), false),
      [
        from + 60_000,
        {
          kind: 'instant',
          rule: 'device_rebooted',
          school: 'S',
          device: 'gw',
          atMs: from + 60_000,
          message: 'planned',
        },
      ],
    ]);
    expect(kinds(h.sent)).toEqual(['firing:device_offline', 'resolved:device_offline']);
    expect(h.engine.history.map((a) => a.rule)).toEqual(['device_rebooted', 'device_offline']);
  });

  it('a reboot is one notification, at any hour', () => {
    const h = harness();
    const t = at('2026-10-11T03:00:00'); // a Sunday night
    h.start(t);
    h.run(t + 60_000, [
      [
        t,
        {
          kind: 'instant',
          rule: 'device_rebooted',
          school: 'S',
          device: 'gw',
          atMs: t,
          message: 'sysUpTime went back',
        },
      ],
    ]);
    expect(kinds(h.sent)).toEqual(['firing:device_rebooted']);
    expect(h.engine.active.size).toBe(0);
    expect(h.engine.history).toHaveLength(1);
  });
});
