import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { download } from './api.js';
import { label } from './labels.js';

/** A value loaded from the API, with its error in Chinese; `reload` asks again. */
export function useLoad<T>(
  load: () => Promise<T>,
  deps: unknown[],
): {
  data: T | undefined;
  error: string | undefined;
  reload: () => void;
} {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setError(undefined);
    load().then(
      (d) => live && setData(d),
      (e: Error) => live && setError(e.message),
    );
    return () => {
      live = false;
    };
    // The caller names what the load depends on.
  }, [...deps, n]);
  return { data, error, reload: () => setN((x) => x + 1) };
}

/**
 * Marks (performance.mark) when a page's main table has been painted with data: after the commit, the next
 * frame and its task, so the mark follows the paint. The first-paint benchmark (bench/console.ts) reads it.
 */
export function usePaintedMark(name: string, ready: boolean): void {
  useEffect(() => {
    if (!ready) return;
    requestAnimationFrame(() => setTimeout(() => performance.mark(`cfm:${name}`), 0));
  }, [ready, name]);
}

export function Problem({ text }: { text: string | undefined }) {
  return text ? (
    <p class="problem" role="alert">
      {text}
    </p>
  ) : null;
}

export function Loading({ what }: { what: string }) {
  return <p class="loading">正在读取{what}…</p>;
}

/** An export button pair for a table whose route also answers `format=csv|xlsx`. */
export function Export({ path }: { path: string }) {
  const [error, setError] = useState<string>();
  const go = (f: 'csv' | 'xlsx') => download(path, f).catch((e: Error) => setError(e.message));
  return (
    <span class="export">
      <button type="button" onClick={() => go('xlsx')}>
        导出 Excel
      </button>
      <button type="button" onClick={() => go('csv')}>
        导出 CSV
      </button>
      <Problem text={error} />
    </span>
  );
}

export function Section({
  title,
  actions,
  children,
}: {
  title: string;
  actions?: ComponentChildren;
  children: ComponentChildren;
}) {
  return (
    <section>
      <header class="section-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

/** A name, with the stable id on hover. */
export function Named({ name, id }: { name: string | null | undefined; id: string }) {
  return <span title={id}>{name ?? id}</span>;
}

/** Why a school or classroom does not attain: each reason's Chinese label, its code and figures on hover. */
export function Reasons({ reasons }: { reasons: readonly { code: string; message: string }[] }) {
  return (
    <span class="reasons">
      {reasons.map((r) => (
        <span key={r.code} title={`${r.code}：${r.message}`}>
          {label('reason', r.code)}
        </span>
      ))}
    </span>
  );
}

/** A sparkline of values 0…100 (null: no reading), as inline SVG: no chart instance per row. */
export function Sparkline({
  values,
  width = 120,
  height = 24,
}: {
  values: (number | null)[];
  width?: number;
  height?: number;
}) {
  const n = values.length;
  if (n === 0) return <svg class="spark" width={width} height={height} aria-hidden="true" />;
  const x = (i: number) => (n === 1 ? width : (i / (n - 1)) * width);
  const y = (v: number) => height - (Math.min(100, Math.max(0, v)) / 100) * (height - 2) - 1;
  const parts: string[] = [];
  let pen = false;
  values.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    parts.push(`${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    pen = true;
  });
  return (
    <svg class="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} aria-hidden="true">
      <line x1="0" x2={width} y1={y(80)} y2={y(80)} class="spark-limit" />
      <path d={parts.join(' ')} />
    </svg>
  );
}
