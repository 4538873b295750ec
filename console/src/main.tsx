import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { setToken, token } from './api.js';
import { Alerts } from './pages/alerts.js';
import { Devices } from './pages/devices.js';
import { Idle } from './pages/idle.js';
import { Network } from './pages/network.js';
import { Overview } from './pages/overview.js';
import './style.css';

const PAGES = [
  ['overview', '总览', Overview],
  ['network', '网络', Network],
  ['alerts', '告警', Alerts],
  ['devices', '设备', Devices],
  ['idle', '闲置设备', Idle],
] as const;
type Page = (typeof PAGES)[number][0];

/** The page named by the address's hash (#/network); a `#token=…` link logs in and leaves the address bar. */
function route(): Page {
  const h = location.hash.replace(/^#\/?/, '');
  const m = /(?:^|&)token=([^&]+)/.exec(h);
  if (m) {
    try {
      setToken(decodeURIComponent(m[1]!));
    } catch {
      // A mangled link (`%E0`): no token; the login form asks for one.
    }
    history.replaceState(null, '', `${location.pathname}#/overview`);
    return 'overview';
  }
  return (PAGES.find(([id]) => h.startsWith(id))?.[0] ?? 'overview') as Page;
}

function Login({ onDone }: { onDone: () => void }) {
  const [value, setValue] = useState('');
  return (
    <form
      class="login"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        onDone();
      }}
    >
      <h1>校园网络与班级设备监测</h1>
      <label>
        访问令牌
        <input
          type="password"
          autocomplete="off"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
      </label>
      <button type="submit">登录</button>
      <p class="hint">令牌由管理员用 npm run api -- tokens add 签发；只保存在本标签页。</p>
    </form>
  );
}

function App() {
  const [page, setPage] = useState<Page>(route());
  const [hasToken, setHasToken] = useState(token() !== null);
  useEffect(() => {
    const on = () => setPage(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  if (!hasToken) return <Login onDone={() => setHasToken(true)} />;
  const Current = PAGES.find(([id]) => id === page)![2];
  return (
    <div>
      <header class="top">
        <h1>校园网络与班级设备监测</h1>
        <nav>
          {PAGES.map(([id, name]) => (
            <a key={id} href={`#/${id}`} class={id === page ? 'on' : ''}>
              {name}
            </a>
          ))}
        </nav>
        <button
          type="button"
          class="logout"
          onClick={() => {
            setToken(null);
            setHasToken(false);
          }}
        >
          退出
        </button>
      </header>
      <main id={`page-${page}`}>
        <Current />
      </main>
      <footer>时间均为北京时间；鼠标停在名称上可见标识码。</footer>
    </div>
  );
}

// The page's own "loading" line goes: Preact renders into the container, it does not replace it.
const root = document.getElementById('app')!;
root.textContent = '';
render(<App />, root);
