import { useEffect, useState } from 'preact/hooks';
import { allSchools, get } from '../api.js';
import { cst } from '../format.js';
import { label } from '../labels.js';
import { Loading, Named, Problem, Section, useLoad } from '../ui.js';

type School = { id: string; name: string };
type Device = {
  id: string;
  school: string;
  classroom: string | null;
  kind: string;
  batch: string | null;
  state: string;
  sinceMs: number | null;
};
type Week = {
  school: string;
  device: string;
  schoolName: string;
  classroomName: string | null;
  kind: string;
  bucketS: number;
  lampHours: number | null;
  buckets: [number, number, number, number, number][];
};

type Room = {
  id: string;
  name: string;
  school: string;
  schoolName: string;
  devices: { id: string; kind: string }[];
};
/** What a device's week needs: which device of which school. */
type DeviceRef = { school: string; id: string };

/** Waits until typing pauses before asking the API. */
function useSettled(value: string, ms = 250): string {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return settled;
}

const ROOMS_SHOWN = 50;

/**
 * 设备: find a school or a classroom by name (schools from the list the console holds; classrooms asked of the
 * API, `/v1/classrooms?q=`), a school's devices with live state, and a device's week. Choosing a classroom opens
 * its school's devices and the week of its teaching display (the API lists it first).
 */
export function Devices() {
  const schools = useLoad(allSchools, []);
  const [q, setQ] = useState('');
  const term = useSettled(q.trim());
  const rooms = useLoad(
    () =>
      term
        ? get<{ total: number; items: Room[] }>(
            `/v1/classrooms?q=${encodeURIComponent(term)}&pageSize=${ROOMS_SHOWN}`,
          )
        : Promise.resolve(undefined),
    [term],
  );
  const [school, setSchool] = useState<School>();
  const [room, setRoom] = useState<string>();
  const [device, setDevice] = useState<DeviceRef>();
  const matches = q.trim()
    ? (schools.data?.items ?? []).filter((s) => s.name.includes(q.trim()) || s.id === q.trim()).slice(0, 50)
    : [];
  const roomMatches = term && q.trim() ? (rooms.data?.items ?? []) : [];
  return (
    <div>
      <Section title="查找学校或教室">
        <input
          class="search"
          maxLength={64}
          value={q}
          onInput={(e) => setQ((e.target as HTMLInputElement).value)}
          placeholder="学校或教室名称，如 一(2)班；加上学校名称可缩小范围"
        />
        <Problem text={schools.error ?? rooms.error} />
        {matches.length > 0 && <h3>学校</h3>}
        <ul class="matches">
          {matches.map((s) => (
            <li key={s.id}>
              <button
                type="button"
                class="link"
                title={s.id}
                onClick={() => {
                  setSchool(s);
                  setRoom(undefined);
                  setDevice(undefined);
                }}
              >
                {s.name}
              </button>
            </li>
          ))}
        </ul>
        {roomMatches.length > 0 && <h3>教室</h3>}
        <ul class="matches rooms">
          {roomMatches.map((c) => (
            <li key={`${c.school}/${c.id}`}>
              <button
                type="button"
                class="link"
                title={`${c.school} / ${c.id}`}
                onClick={() => {
                  setSchool({ id: c.school, name: c.schoolName });
                  setRoom(c.id);
                  const d = c.devices[0];
                  setDevice(d ? { school: c.school, id: d.id } : undefined);
                }}
              >
                {c.schoolName} · {c.name}
                {c.devices.length === 0 && '（未登记设备）'}
              </button>
            </li>
          ))}
        </ul>
        {rooms.data && roomMatches.length > 0 && rooms.data.total > roomMatches.length && (
          <p class="hint">
            共 {rooms.data.total} 个教室，只列出前 {roomMatches.length} 个；加上学校名称可缩小范围。
          </p>
        )}
      </Section>
      {school && (
        <SchoolDevices key={school.id} school={school} room={room} device={device} onOpen={setDevice} />
      )}
      {device && <DeviceWeek key={`${device.school}/${device.id}`} device={device} />}
    </div>
  );
}

function SchoolDevices({
  school,
  room,
  device,
  onOpen,
}: {
  school: School;
  room: string | undefined;
  device: DeviceRef | undefined;
  onOpen: (d: DeviceRef) => void;
}) {
  const { data, error } = useLoad(
    () =>
      Promise.all([
        get<{ items: Device[] }>(`/v1/devices?school=${encodeURIComponent(school.id)}&pageSize=5000`),
        get<{ items: { id: string; name: string }[] }>(
          `/v1/classrooms?school=${encodeURIComponent(school.id)}&pageSize=5000`,
        ),
      ]),
    [school.id],
  );
  const rooms = new Map((data?.[1].items ?? []).map((c) => [c.id, c.name]));
  return (
    <Section title={`${school.name} · 设备`}>
      <Problem text={error} />
      {!data && !error && <Loading what="设备" />}
      {data && (
        <table class="grid" id="devices">
          <thead>
            <tr>
              <th>教室</th>
              <th>设备</th>
              <th>类型</th>
              <th>状态</th>
              <th>自</th>
              <th>批次</th>
            </tr>
          </thead>
          <tbody>
            {data[0].items.map((d) => (
              <tr
                key={d.id}
                class={[
                  room !== undefined && d.classroom === room ? 'chosen-room' : '',
                  device?.id === d.id ? 'chosen' : '',
                ]
                  .filter(Boolean)
                  .join(' ')}
              >
                <td>{d.classroom ? <Named name={rooms.get(d.classroom)} id={d.classroom} /> : '—'}</td>
                <td>
                  <button type="button" class="link" onClick={() => onOpen({ school: d.school, id: d.id })}>
                    {d.id}
                  </button>
                </td>
                <td>{label('deviceKind', d.kind)}</td>
                <td class={`state-${d.state}`}>{label('liveState', d.state)}</td>
                <td>{cst(d.sinceMs)}</td>
                <td>{d.batch ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

const ROWS: [string, number][] = [
  ['上报', 1],
  ['开机', 2],
  ['使用', 3],
  ['故障', 4],
];

function DeviceWeek({ device }: { device: DeviceRef }) {
  const path = `/v1/devices/${encodeURIComponent(device.school)}/${encodeURIComponent(device.id)}/week`;
  const { data, error } = useLoad(() => get<Week>(path), [path]);
  const end = Date.now();
  const start = end - 7 * 86_400_000;
  const W = 840;
  const x = (t: number) => ((t - start) / (end - start)) * W;
  return (
    <Section title={`${device.id} · 近 7 天`}>
      <Problem text={error} />
      {!data && !error && <Loading what="近 7 天记录" />}
      {data && (
        <div>
          <p>
            {data.schoolName} {data.classroomName ?? ''} · {label('deviceKind', data.kind)}
            {data.lampHours !== null && ` · 灯泡累计 ${data.lampHours} 小时`}
          </p>
          <svg
            class="week"
            viewBox={`0 0 ${W + 50} ${ROWS.length * 22 + 20}`}
            role="img"
            aria-label="近 7 天时间线"
          >
            {ROWS.map(([name, col], r) => (
              <g key={name} transform={`translate(50 ${r * 22})`}>
                <text x="-6" y="14" text-anchor="end">
                  {name}
                </text>
                <rect x="0" y="2" width={W} height="16" class="lane" />
                {data.buckets
                  .filter((b) => b[col] === 1)
                  .map((b) => (
                    <rect
                      key={b[0]}
                      x={x(b[0])}
                      y="2"
                      width={Math.max(1, (data.bucketS * 1000 * W) / (end - start))}
                      height="16"
                      class={`on-${col}`}
                    />
                  ))}
              </g>
            ))}
            {Array.from({ length: 8 }, (_, i) => start + i * 86_400_000).map((t) => (
              <text key={t} x={50 + x(t)} y={ROWS.length * 22 + 14} class="axis" text-anchor="middle">
                {cst(t).slice(5, 10)}
              </text>
            ))}
          </svg>
        </div>
      )}
    </Section>
  );
}
