import { allSchools, get } from '../api.js';
import { lastDays } from '../format.js';
import { label } from '../labels.js';
import { Export, Loading, Named, Problem, Section, useLoad } from '../ui.js';

type Device = {
  id: string;
  school: string;
  classroom: string | null;
  kind: string;
  batch: string | null;
  purchasedOn: string | null;
  lastUsed: string | null;
  idleTeachingDays: number;
  usedDaysPct: number | null;
};

/** 闲置设备: equipment unused for the profile's idle days, with purchase batch. */
export function Idle() {
  const { from, to } = lastDays(90);
  const path = `/v1/audit/idle?period=${from}..${to}&pageSize=5000`;
  const { data, error } = useLoad(
    () =>
      Promise.all([
        get<{ total: number; items: Device[]; coverage: { rolledDays: number; teachingDates: number } }>(
          path,
        ),
        allSchools(),
      ]),
    [path],
  );
  const names = new Map((data?.[1].items ?? []).map((s) => [s.id, s.name]));
  return (
    <Section title={`闲置设备（${from} 至 ${to}）`} actions={<Export path={path} />}>
      <Problem text={error} />
      {!data && !error && <Loading what="闲置设备" />}
      {data && (
        <div>
          <p class="coverage">
            共 {data[0].total} 台；依据 {data[0].coverage.teachingDates} 个教学日中的{' '}
            {data[0].coverage.rolledDays} 个评估
          </p>
          <table class="grid" id="idle">
            <thead>
              <tr>
                <th>学校</th>
                <th>教室</th>
                <th>设备</th>
                <th>类型</th>
                <th>采购批次</th>
                <th>采购日期</th>
                <th>最后使用</th>
                <th>连续未用教学日</th>
              </tr>
            </thead>
            <tbody>
              {data[0].items.map((d) => (
                <tr key={`${d.school}/${d.id}`}>
                  <td>
                    <Named name={names.get(d.school)} id={d.school} />
                  </td>
                  <td>{d.classroom ?? '—'}</td>
                  <td>{d.id}</td>
                  <td>{label('deviceKind', d.kind)}</td>
                  <td>{d.batch ?? '—'}</td>
                  <td>{d.purchasedOn ?? '—'}</td>
                  <td>{d.lastUsed ?? '从未'}</td>
                  <td>{d.idleTeachingDays}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}
