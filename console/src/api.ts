/** The console's only way to the API: the bearer token, errors in Chinese, downloads that keep the token. */
const KEY = 'cfm-token';

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}
export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
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
          let i = buf.indexOf('\n\n');
          while (i >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) on(event, JSON.parse(data));
            i = buf.indexOf('\n\n');
          }
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
