import { useState } from 'preact/hooks';
import { get } from '../api.js';
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

/** 设备: find a school by name, its devices with live state, and a device's week. */
export function Devices() {
  const schools = useLoad(() => get<{ items: School[] }>('/v1/schools?pageSize=5000'), []);
  const [q, setQ] = useState('');
  const [school, setSchool] = useState<School>();
  const [device, setDevice] = useState<Device>();
  const matches = q.trim()
    ? (schools.data?.items ?? []).filter((s) => s.name.includes(q.trim()) || s.id === q.trim()).slice(0, 50)
    : [];
  return (
    <div>
      <Section title="查找学校">
        <input
          class="search"
          value={q}
          onInput={(e) => setQ((e.target as HTMLInputElement).value)}
          placeholder="学校名称或标识码"
        />
        <Problem text={schools.error} />
        <ul class="matches">
          {matches.map((s) => (
            <li key={s.id}>
              <button
                type="button"
                class="link"
                title={s.id}
                onClick={() => {
                  setSchool(s);
                  setDevice(undefined);
                }}
              >
                {s.name}
              </button>
            </li>
          ))}
        </ul>
      </Section>
      {school && <SchoolDevices school={school} onOpen={setDevice} />}
      {device && <DeviceWeek device={device} />}
    </div>
  );
}

function SchoolDevices({ school, onOpen }: { school: School; onOpen: (d: Device) => void }) {
  const { data, error } = useLoad(
    () =>
      Promise.all([
        get<{ items: Device[] }>(`/v1/devices?school=${encodeURIComponent(school.id)}&pageSize=5000`),
        get<{ items: { id: string; name: string }[] }>(
          `/v1/attainment/classrooms?school=${encodeURIComponent(school.id)}&period=${new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 10)}`,
        ).catch(() => ({ items: [] })),
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
              <tr key={d.id}>
                <td>{d.classroom ? <Named name={rooms.get(d.classroom)} id={d.classroom} /> : '—'}</td>
                <td>
                  <button type="button" class="link" onClick={() => onOpen(d)}>
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

function DeviceWeek({ device }: { device: Device }) {
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
