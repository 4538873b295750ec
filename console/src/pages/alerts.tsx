import { useEffect, useState } from 'preact/hooks';
import { allSchools, get, send } from '../api.js';
import { cst } from '../format.js';
import { label } from '../labels.js';
import { Loading, Problem, Section, useLoad } from '../ui.js';

type Alert = {
  id: string;
  rule: string;
  severity: string;
  state: string;
  school: string;
  device: string | null;
  subject: string | null;
  message: string;
  startedAtMs: number;
  firingAtMs: number | null;
  resolvedAtMs: number | null;
  ackedAtMs: number | null;
  ackedBy: string | null;
  affected: string[];
};
type Silence = {
  id: string;
  school?: string;
  device?: string;
  rule?: string;
  region?: string;
  comment: string;
  endsAtMs: number;
  createdBy: string;
};

function AlertTable({
  items,
  names,
  onAck,
}: {
  items: Alert[];
  names: Map<string, string>;
  onAck?: (a: Alert) => void;
}) {
  return (
    <table class="grid alerts">
      <thead>
        <tr>
          <th>级别</th>
          <th>告警</th>
          <th>学校</th>
          <th>设备</th>
          <th>内容</th>
          <th>开始</th>
          <th>{onAck ? '状态' : '恢复'}</th>
          {onAck && <th />}
        </tr>
      </thead>
      <tbody>
        {items.map((a) => (
          <tr key={a.id} class={`sev-${a.severity}`} data-alert={a.id}>
            <td>{label('severity', a.severity)}</td>
            <td title={a.rule}>{label('alertRule', a.rule)}</td>
            <td title={a.school}>{names.get(a.school) ?? a.school}</td>
            <td>{a.device ?? '—'}</td>
            <td class="message">
              {a.message}
              {a.affected.length > 0 && (
                <div class="affected">
                  受影响设备 {a.affected.length} 台：{a.affected.join('、')}
                </div>
              )}
            </td>
            <td>{cst(a.startedAtMs)}</td>
            <td>
              {onAck
                ? `${label('alertState', a.state)}${a.ackedBy ? `（${a.ackedBy} 已确认）` : ''}`
                : cst(a.resolvedAtMs)}
            </td>
            {onAck && (
              <td>
                {a.ackedAtMs === null && a.state === 'firing' && (
                  <button type="button" onClick={() => onAck(a)}>
                    确认
                  </button>
                )}
              </td>
            )}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const REFRESH_MS = 15_000;

/** 告警: what is firing (acknowledge), silences, and the history; refreshed every 15 s. */
export function Alerts() {
  const active = useLoad(() => get<{ items: Alert[] }>('/v1/alerts'), []);
  const history = useLoad(() => get<{ items: Alert[] }>('/v1/alerts/history?limit=200'), []);
  const silences = useLoad(() => get<{ items: Silence[] }>('/v1/silences'), []);
  const schools = useLoad(allSchools, []);
  const names = new Map((schools.data?.items ?? []).map((s) => [s.id, s.name]));
  const [error, setError] = useState<string>();
  // On call, the page is left open: what fires, resolves or is acknowledged elsewhere shows within REFRESH_MS.
  useEffect(() => {
    const t = setInterval(() => {
      active.reload();
      history.reload();
    }, REFRESH_MS);
    return () => clearInterval(t);
  }, []);
  const [form, setForm] = useState({ school: '', device: '', minutes: '60', comment: '' });
  const ack = (a: Alert) =>
    send('POST', `/v1/alerts/${encodeURIComponent(a.id)}/ack`, {}).then(active.reload, (e: Error) =>
      setError(e.message),
    );
  const silence = (e: Event) => {
    e.preventDefault();
    send('POST', '/v1/silences', {
      ...(form.school ? { school: form.school } : {}),
      ...(form.device ? { device: form.device } : {}),
      minutes: Number(form.minutes),
      comment: form.comment,
    }).then(silences.reload, (x: Error) => setError(x.message));
  };
  const unsilence = (id: string) =>
    send('DELETE', `/v1/silences/${encodeURIComponent(id)}`).then(silences.reload, (x: Error) =>
      setError(x.message),
    );
  const field = (k: keyof typeof form) => (e: Event) =>
    setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  return (
    <div>
      <Problem text={error} />
      <Section
        title="当前告警"
        actions={
          <button type="button" onClick={active.reload}>
            刷新
          </button>
        }
      >
        <Problem text={active.error} />
        {!active.data && !active.error && <Loading what="告警" />}
        {active.data &&
          (active.data.items.length === 0 ? (
            <p>没有告警。</p>
          ) : (
            <AlertTable items={active.data.items} names={names} onAck={ack} />
          ))}
      </Section>
      <Section title="静默">
        <form class="silence" onSubmit={silence}>
          <label>
            学校标识码 <input value={form.school} onInput={field('school')} placeholder="如 3301060001" />
          </label>
          <label>
            设备 <input value={form.device} onInput={field('device')} placeholder="可空：整校" />
          </label>
          <label>
            分钟 <input type="number" min="1" value={form.minutes} onInput={field('minutes')} />
          </label>
          <label>
            说明 <input value={form.comment} onInput={field('comment')} placeholder="如 更换屏幕" />
          </label>
          <button type="submit">静默</button>
        </form>
        <Problem text={silences.error} />
        {silences.data && silences.data.items.length > 0 && (
          <table class="grid">
            <thead>
              <tr>
                <th>范围</th>
                <th>说明</th>
                <th>到期</th>
                <th>设置人</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {silences.data.items.map((s) => (
                <tr key={s.id}>
                  <td>
                    {[
                      s.region,
                      s.school && (names.get(s.school) ?? s.school),
                      s.device,
                      s.rule && label('alertRule', s.rule),
                    ]
                      .filter(Boolean)
                      .join(' · ') || '全部'}
                  </td>
                  <td>{s.comment}</td>
                  <td>{cst(s.endsAtMs)}</td>
                  <td>{s.createdBy}</td>
                  <td>
                    <button type="button" onClick={() => unsilence(s.id)}>
                      取消
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title="历史（最近 200 条）">
        <Problem text={history.error} />
        {history.data && <AlertTable items={history.data.items} names={names} />}
      </Section>
    </div>
  );
}
