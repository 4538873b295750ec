/** The console's only way to the API: the bearer token, errors in Chinese, downloads that keep the token. */
const KEY = 'cfm-token';

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}
export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
  memo.clear(); // another token may see other schools
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const STATUS_TEXT: Record<number, string> = {
  401: '令牌无效或已吊销，请重新登录',
  403: '此令牌无权查看这一页（角色或辖区不符）',
  404: '没有这项内容',
  429: '请求过于频繁，请稍后再试',
  503: '数据库或告警服务暂时无响应，请稍后再试',
};

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const t = token();
  const res = await fetch(path, {
    ...init,
    headers: { ...(t ? { authorization: `Bearer ${t}` } : {}), ...(init.headers ?? {}) },
  });
  if (!res.ok) {
    let detail = '';
    try {
      detail = ((await res.json()) as { message?: string }).message ?? '';
    } catch {
      // not JSON
    }
    throw new ApiFailure(
      res.status,
      `${STATUS_TEXT[res.status] ?? `请求失败（HTTP ${res.status}）`}${detail ? `：${detail}` : ''}`,
    );
  }
  return res;
}

export async function get<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

export async function send<T>(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const res = await request(path, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * Answers kept for the session, for lists every page needs and that change slowly (the schools): asked once,
 * then shared by the pages for `ttlMs`, so switching pages does not ask again. Kept per token: a login with
 * another token (setToken) forgets them all, and an answer is never handed to another token. A failed request is
 * not kept.
 */
const memo = new Map<string, { token: string | null; atMs: number; value: Promise<unknown> }>();
export const MEMO_TTL_MS = 60_000;

export function cached<T>(path: string, ttlMs = MEMO_TTL_MS): Promise<T> {
  const t = token();
  const hit = memo.get(path);
  if (hit && hit.token === t && Date.now() - hit.atMs < ttlMs) return hit.value as Promise<T>;
  const value = get<T>(path);
  memo.set(path, { token: t, atMs: Date.now(), value });
  value.catch(() => {
    if (memo.get(path)?.value === value) memo.delete(path);
  });
  return value;
}

/** A school's uplink as the API sends it (`/v1/schools`, and each `uplink` event of the live stream). */
export type Uplink = {
  school: string;
  device: string;
  ifname: string;
  inBps: number | null;
  outBps: number | null;
  speedMbps: number | null;
  operStatus: string;
  tsMs: number;
  /** The server's word on what holds now: `stale` after `api.live.staleAfterS` without a reading. */
  state: 'up' | 'down' | 'stale';
  utilisationPct: number | null;
};
export type SchoolItem = {
  id: string;
  name: string;
  region: string;
  contractedMbps: number | null;
  devices: { total: number; online: number; offline: number; unknown: number };
  uplink: Uplink | null;
  /** The last probe cycle of the school's uplink device (docs/links.md); null when it is not probed. */
  link: {
    lossPct: number;
    rttMs: number | null;
    jitterMs: number | null;
    tsMs: number;
    /** Seconds since the cycle ran, when the API answered. */
    ageS: number;
    /** The server's word: older than 3 of its cycle intervals (at most `api.live.staleAfterS`), so not now. */
    stale: boolean;
  } | null;
};

/**
 * Every school in the token's scope (`/v1/schools`), for the session (`cached`): names for the alert, device and
 * idle pages, and the 网络 table (whose uplinks the live stream then keeps current, and which loads it again
 * every `ttlMs` for its probe cycles).
 */
export const allSchools = (ttlMs?: number) =>
  cached<{ total: number; items: SchoolItem[] }>('/v1/schools?pageSize=5000', ttlMs);

/** Downloads an export (`format=csv|xlsx` of the same route) with the token, as a file. */
export async function download(path: string, format: 'csv' | 'xlsx'): Promise<void> {
  const url = `${path}${path.includes('?') ? '&' : '?'}format=${format}`;
  const res = await request(url);
  const name =
    /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? `export.${format}`;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await res.blob());
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/**
 * Server-sent events with the token (EventSource cannot send a header): the stream read with fetch, each event
 * handed over parsed; reconnects after an error until `stop()`.
 */
export function events(
  path: string,
  on: (event: string, data: unknown) => void,
  onError: (e: Error) => void,
) {
  let stopped = false;
  let ctrl: AbortController | undefined;
  const run = async () => {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const res = await request(path, { signal: ctrl.signal });
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          // One pass over what arrived (the stream opens with a reading per school: thousands of events in a
          // chunk), the rest kept once — not the whole remainder copied after each event.
          let at = 0;
          let i = buf.indexOf('\n\n');
          while (i >= 0) {
            const block = buf.slice(at, i);
            at = i + 2;
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) on(event, JSON.parse(data));
            i = buf.indexOf('\n\n', at);
          }
          buf = buf.slice(at);
        }
      } catch (e) {
        if (stopped) return;
        onError(e as Error);
        if (e instanceof ApiFailure && (e.status === 401 || e.status === 403)) return;
      }
      await new Promise((r) => setTimeout(r, 5_000));
    }
  };
  void run();
  return {
    stop() {
      stopped = true;
      ctrl?.abort();
    },
  };
}
