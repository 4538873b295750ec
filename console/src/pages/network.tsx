import { useEffect, useMemo, useState } from 'preact/hooks';
import { allSchools, events, get, type SchoolItem, type Uplink } from '../api.js';
import { ago, cst, mbps, pct } from '../format.js';
import { label } from '../labels.js';
import { Export, Loading, Named, Problem, Section, Sparkline, useLoad, usePaintedMark } from '../ui.js';

type History = {
  fromMs: number;
  bucketS: number;
  items: { school: string; util: (number | null)[] }[];
};

export type LinkState = 'down' | 'stale' | 'congested' | 'up' | 'none';

/**
 * What an operator must see first: down, then stale, then by utilisation of the capacity. Down and stale are
 * the server's `state` (a reading older than its `api.live.staleAfterS`, or a poller's `unreachable`), as sent
 * in `/v1/schools` and with every change on the live stream: the page does not judge a reading's age itself.
 */
export function linkState(u: Uplink | null): { state: LinkState; util: number | null } {
  if (!u) return { state: 'none', util: null };
  if (u.state === 'down' || u.state === 'stale') return { state: u.state, util: null };
  const util = u.utilisationPct;
  return { state: util !== null && util >= 80 ? 'congested' : 'up', util };
}
const RANK: Record<LinkState, number> = { down: 0, stale: 1, congested: 2, up: 3, none: 4 };
const STATE_TEXT: Record<LinkState, string> = {
  down: label('uplinkState', 'down'),
  stale: label('uplinkState', 'stale'),
  congested: '拥塞',
  up: label('uplinkState', 'up'),
  none: '未监测',
};

const FLUSH_MS = 300;
/** How often the page loads the schools again for their last probe cycles (a cycle is stale after minutes). */
const LINK_REFRESH_MS = 30_000;
const byName = new Intl.Collator('zh').compare;

/** 网络: every uplink, down and stale first, then by utilisation of its capacity; live. */
export function Network() {
  // A reload every LINK_REFRESH_MS takes the session's copy only if it is younger than half that: a copy made
  // just after the interval started (the first load's effect can run after it) is never taken for fresh.
  const schools = useLoad(() => allSchools(LINK_REFRESH_MS / 2), []);
  // The uplinks come live; the probe cycles (`link`) with the schools, loaded again for them.
  const reloadSchools = schools.reload;
  useEffect(() => {
    const t = setInterval(reloadSchools, LINK_REFRESH_MS);
    return () => clearInterval(t);
  }, []);
  const history = useLoad(() => get<History>('/v1/bandwidth/history?hours=6'), []);
  const [live, setLive] = useState(new Map<string, Uplink>());
  const [streamError, setStreamError] = useState<string>();
  useEffect(() => {
    const s = events(
      '/v1/bandwidth/live',
      (event, data) => {
        if (event !== 'uplink') return;
        const u = data as Uplink;
        // The stream opens with every school's reading: applied in batches, one render per FLUSH_MS, not one
        // render (and sort of the whole city) per event.
        pending.set(u.school, u);
        if (flush === undefined)
          flush = setTimeout(() => {
            flush = undefined;
            const batch = new Map(pending);
            pending.clear();
            setLive((m) => {
              const next = new Map(m);
              for (const [k, v] of batch) next.set(k, v);
              return next;
            });
          }, FLUSH_MS);
        setStreamError(undefined);
      },
      (e) => setStreamError(`实时数据：${e.message}`),
    );
    const pending = new Map<string, Uplink>();
    let flush: ReturnType<typeof setTimeout> | undefined;
    return () => {
      s.stop();
      clearTimeout(flush);
    };
  }, []);
  const spark = useMemo(() => {
    const m = new Map<string, (number | null)[]>();
    for (const i of history.data?.items ?? []) m.set(i.school, i.util);
    return m;
  }, [history.data]);
  usePaintedMark('network', schools.data !== undefined && history.data !== undefined);
  const rows = (schools.data?.items ?? [])
    .map((s) => {
      const u = live.get(s.id) ?? s.uplink;
      return { s, u, ...linkState(u) };
    })
    .sort(
      (a, b) =>
        RANK[a.state] - RANK[b.state] || (b.util ?? -1) - (a.util ?? -1) || byName(a.s.name, b.s.name),
    );
  return (
    <Section title="学校出口（按利用率排序，中断与无数据在前）" actions={<Export path="/v1/schools" />}>
      <Problem text={schools.error ?? streamError} />
      {!schools.data && !schools.error && <Loading what="学校出口" />}
      {schools.data && (
        <table class="grid" id="uplinks">
          <thead>
            <tr>
              <th>学校</th>
              <th>状态</th>
              <th>利用率</th>
              <th>下行 / 上行</th>
              <th>容量</th>
              <th>近 6 小时</th>
              <th title="出口设备最近一轮探测：丢包率、平均往返时延、抖动">丢包 · 时延 · 抖动</th>
              <th>在线设备</th>
              <th>读数时间</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(({ s, u, state, util }) => (
              <tr key={s.id} class={`link-${state}`} data-school={s.id}>
                <td>
                  <Named name={s.name} id={s.id} />
                </td>
                <td class="state">{STATE_TEXT[state]}</td>
                <td>{pct(util, 0)}</td>
                {state === 'down' || state === 'stale' ? (
                  // Not a rate now: the last reading's, on hover only.
                  <td title={`最后读数 ${mbps(u?.inBps)} / ${mbps(u?.outBps)}`}>—</td>
                ) : (
                  <td>
                    {mbps(u?.inBps)} / {mbps(u?.outBps)}
                  </td>
                )}
                <td>{s.contractedMbps ?? u?.speedMbps ?? '—'} Mbit/s</td>
                <td>
                  <Sparkline values={spark.get(s.id) ?? []} />
                </td>
                <LinkQuality link={s.link} />
                <td>
                  {s.devices.online} / {s.devices.total}
                </td>
                <td>{cst(u?.tsMs ?? null, false)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

/**
 * The last probe cycle: loss · RTT · jitter. One the server calls stale (the poller, or this school's probes,
 * stopped) is greyed and says how long ago it ran: its figures are not now.
 */
function LinkQuality({ link }: { link: SchoolItem['link'] }) {
  if (!link)
    return (
      <td class="link-quality" title="未探测">
        —
      </td>
    );
  const figures = `${link.lossPct.toFixed(1)} % · ${link.rttMs === null ? '—' : `${link.rttMs.toFixed(0)} ms`} · ${link.jitterMs === null ? '—' : `${link.jitterMs.toFixed(0)} ms`}`;
  const when = `探测时间 ${cst(link.tsMs)}（${ago(link.ageS)}）`;
  return link.stale ? (
    <td class="link-quality stale" title={`${when}：已无新的探测结果，不是当前值`}>
      {figures}（{ago(link.ageS)}）
    </td>
  ) : (
    <td class="link-quality" title={when}>
      {figures}
    </td>
  );
}
