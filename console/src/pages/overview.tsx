import { useState } from 'preact/hooks';
import { get } from '../api.js';
import { lastDays, pct } from '../format.js';
import { label } from '../labels.js';
import { Export, Loading, Named, Problem, Reasons, Section, useLoad, usePaintedMark } from '../ui.js';

type Reason = { code: string; message: string };
type Coverage = { rolledDays: number; teachingDates: number };
type Rollup = {
  region: string;
  regionName: string;
  regionLevel: string;
  split: string;
  group: string;
  schools: number;
  schoolsNotApplicable: number;
  schoolsAttained: number;
  xxtPct: number | null;
  classes: number;
  classesAttained: number;
  bbtPct: number | null;
};
type School = {
  id: string;
  name: string;
  area: string;
  level: string;
  teachingDays: number;
  uplink: {
    availabilityPct: number | null;
    capacityMbps: number | null;
    perClassMbps: number | null;
    congested: boolean;
  };
  xxt: { attained: boolean | null; reasons: Reason[] };
  bbt: { classes: number; attained: number; unmonitored: number };
};
type Classroom = {
  id: string;
  name: string;
  attained: boolean | null;
  reasons: Reason[];
  onlineDays: number;
  teachingDays: number;
  periodsUsedPerWeek: number;
};
type Head = { period: { from: string; to: string }; profile: string; coverage: Coverage };

const PERIODS: [string, number][] = [
  ['近 7 天', 7],
  ['近 30 天', 30],
  ['近 90 天', 90],
];

const verdict = (v: boolean | null) =>
  v === null ? (
    <span class="na">不评估</span>
  ) : v ? (
    <span class="ok">达标</span>
  ) : (
    <span class="bad">未达标</span>
  );

function CoverageNote({ c }: { c: Coverage }) {
  const partial = c.rolledDays < c.teachingDates;
  return (
    <p class={partial ? 'coverage partial' : 'coverage'}>
      依据 {c.teachingDates} 个教学日中的 {c.rolledDays} 个评估
      {partial ? '（尚未全部汇总，结果可能变化）' : ''}
    </p>
  );
}

/** 总览: attainment by region, drill-down county → school → classroom, reasons in Chinese. */
export function Overview() {
  const last = (d: number) => {
    const { from, to } = lastDays(d);
    return `${from}..${to}`;
  };
  const [period, setPeriod] = useState(last(30));
  const [typed, setTyped] = useState(period);
  const [path, setPath] = useState<{ region?: string; regionName?: string; school?: School }[]>([{}]);
  const here = path[path.length - 1]!;
  const regionArg = here.region ? `&region=${encodeURIComponent(here.region)}` : '';
  const rollups = useLoad(
    () => get<Head & { rollups: Rollup[] }>(`/v1/attainment?period=${period}${regionArg}`),
    [period, here.region],
  );
  usePaintedMark('overview', rollups.data !== undefined);
  const rows = rollups.data?.rollups.filter((r) => r.split === 'all') ?? [];
  const depth = here.region
    ? here.region.split('/').length
    : Math.min(...rows.map((r) => r.region.split('/').length));
  const children = rows.filter((r) => r.region.split('/').length === depth + (here.region ? 1 : 0));
  const own = rows.find((r) => r.region === here.region);
  const leaf =
    rollups.data !== undefined && here.region !== undefined && children.length === 0 && !here.school;
  return (
    <div>
      <nav class="crumbs">
        {path.map((p, i) => (
          <button
            type="button"
            key={String(i)}
            disabled={i === path.length - 1}
            onClick={() => setPath(path.slice(0, i + 1))}
          >
            {i === 0 ? '全部辖区' : (p.school?.name ?? p.regionName)}
          </button>
        ))}
        <span class="periods">
          {PERIODS.map(([name, d]) => (
            <button
              type="button"
              key={name}
              class={last(d) === period ? 'on' : ''}
              onClick={() => {
                setPeriod(last(d));
                setTyped(last(d));
              }}
            >
              {name}
            </button>
          ))}
          <form
            onSubmit={(e) => {
              e.preventDefault();
              setPeriod(typed.trim());
            }}
          >
            <input
              id="period"
              title="统计期：2026-10-05..2026-10-11、2026-W41、2026-10 或 term:学期名"
              value={typed}
              onInput={(e) => setTyped((e.target as HTMLInputElement).value)}
            />
          </form>
        </span>
      </nav>
      <Problem text={rollups.error} />
      {rollups.data && <CoverageNote c={rollups.data.coverage} />}
      {!here.school && (
        <Section
          title="校校通 · 班班通 达标情况"
          actions={<Export path={`/v1/attainment?period=${period}${regionArg}`} />}
        >
          {!rollups.data && !rollups.error ? (
            <Loading what="达标情况" />
          ) : (
            <table class="grid" id="attainment">
              <thead>
                <tr>
                  <th>区域</th>
                  <th>学校</th>
                  <th>校校通达标</th>
                  <th>校校通</th>
                  <th>班级</th>
                  <th>班班通达标</th>
                  <th>班班通</th>
                </tr>
              </thead>
              <tbody>
                {[...(own ? [own] : []), ...children].map((r) => (
                  <tr key={r.region} class={r === own ? 'total' : ''}>
                    <td>
                      {r === own ? (
                        <Named name={`${r.regionName}（合计）`} id={r.region} />
                      ) : (
                        <button
                          type="button"
                          class="link"
                          title={r.region}
                          onClick={() => setPath([...path, { region: r.region, regionName: r.regionName }])}
                        >
                          {r.regionName}
                        </button>
                      )}
                    </td>
                    <td>{r.schools}</td>
                    <td>{r.schoolsAttained}</td>
                    <td>{pct(r.xxtPct)}</td>
                    <td>{r.classes}</td>
                    <td>{r.classesAttained}</td>
                    <td>{pct(r.bbtPct)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Section>
      )}
      {leaf && (
        <Schools period={period} region={here.region!} onOpen={(s) => setPath([...path, { school: s }])} />
      )}
      {here.school && <Classrooms period={period} school={here.school} />}
    </div>
  );
}

function Schools({
  period,
  region,
  onOpen,
}: {
  period: string;
  region: string;
  onOpen: (s: School) => void;
}) {
  const path = `/v1/attainment/schools?period=${period}&region=${encodeURIComponent(region)}`;
  const { data, error } = useLoad(() => get<Head & { items: School[] }>(path), [path]);
  return (
    <Section title="学校" actions={<Export path={path} />}>
      <Problem text={error} />
      {!data && !error && <Loading what="学校" />}
      {data && (
        <table class="grid" id="schools">
          <thead>
            <tr>
              <th>学校</th>
              <th>城乡</th>
              <th>学段</th>
              <th>校校通</th>
              <th>出口可用率</th>
              <th>生均/班均带宽</th>
              <th>班班通达标班级</th>
              <th>原因</th>
            </tr>
          </thead>
          <tbody>
            {data.items.map((s) => (
              <tr key={s.id}>
                <td>
                  <button type="button" class="link" title={s.id} onClick={() => onOpen(s)}>
                    {s.name}
                  </button>
                </td>
                <td>{label('area', s.area)}</td>
                <td>{label('schoolLevel', s.level)}</td>
                <td>{verdict(s.xxt.attained)}</td>
                <td>{pct(s.uplink.availabilityPct)}</td>
                <td>{s.uplink.perClassMbps === null ? '—' : `${s.uplink.perClassMbps.toFixed(1)} Mbit/s`}</td>
                <td>
                  {s.bbt.attained} / {s.bbt.classes}
                </td>
                <td>
                  <Reasons reasons={s.xxt.reasons} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function Classrooms({ period, school }: { period: string; school: School }) {
  const path = `/v1/attainment/classrooms?period=${period}&school=${encodeURIComponent(school.id)}`;
  const { data, error } = useLoad(() => get<Head & { items: Classroom[] }>(path), [path]);
  return (
    <Section title={`${school.name} · 班班通`} actions={<Export path={path} />}>
      <p>
        校校通：{verdict(school.xxt.attained)} <Reasons reasons={school.xxt.reasons} />
      </p>
      <Problem text={error} />
      {!data && !error && <Loading what="教室" />}
      {data && (
        <table class="grid" id="classrooms">
          <thead>
            <tr>
              <th>教室</th>
              <th>班班通</th>
              <th>在线天数</th>
              <th>每周使用节次</th>
              <th>原因</th>
            </tr>
          </thead>
          <tbody>
            {data.items.map((c) => (
              <tr key={c.id}>
                <td>
                  <Named name={c.name} id={c.id} />
                </td>
                <td>{verdict(c.attained)}</td>
                <td>
                  {c.onlineDays} / {c.teachingDays}
                </td>
                <td>{c.periodsUsedPerWeek.toFixed(1)}</td>
                <td>
                  <Reasons reasons={c.reasons} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}
