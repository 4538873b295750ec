import {
  closeSync,
  copyFileSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import type { z } from 'zod';

/**
 * The small JSON files the services keep (registry, API tokens, alert state): read with errors that name the
 * file, written atomically, and re-read when another process (a CLI) has replaced them.
 */

/** The parsed file, or undefined when it does not exist; anything else throws `${what} ${path}: …`. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${what} ${path}: cannot be read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${path}: not JSON: ${(e as Error).message}`);
  }
}

/** A file that is there but cannot be used: unreadable, not JSON, or not what its schema says. */
export class JsonFileError extends Error {
  override name = 'JsonFileError';
  constructor(
    readonly path: string,
    /** What is wrong, without the file: `history: Invalid input: expected array, received string`. */
    readonly detail: string,
    what: string,
  ) {
    super(`${what} ${path}: ${detail}`);
  }
}

/** The first problem zod found, as `field.path: message` (`(top level)` for the document itself). */
export function firstIssue(error: z.ZodError): string {
  const i = error.issues[0];
  if (!i) return 'invalid';
  return `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`;
}

/**
 * The file validated by `schema`, or undefined when it does not exist. Anything else — unreadable, not JSON,
 * a field of the wrong type — throws a JsonFileError naming the file and the first bad field.
 */
export function readJsonFileAs<S extends z.ZodType>(
  path: string,
  what: string,
  schema: S,
): z.output<S> | undefined {
  let json: unknown;
  try {
    json = readJsonFile(path, what);
  } catch (e) {
    const prefix = `${what} ${path}: `;
    const m = (e as Error).message;
    throw new JsonFileError(path, m.startsWith(prefix) ? m.slice(prefix.length) : m, what);
  }
  if (json === undefined) return undefined;
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new JsonFileError(path, firstIssue(parsed.error), what);
  return parsed.data;
}

/**
 * Temporary file, fsync, rename: a crash mid-write leaves the previous version intact, and a reader never sees
 * half a file. With `backup`, the file being replaced is kept under that name first (a hard link, or a copy
 * where the file system has none), so the previous version survives a later corruption of the new one.
 */
export function writeFileAtomic(
  path: string,
  text: string,
  mode = 0o644,
  opts: { backup?: string } = {},
): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (opts.backup !== undefined) keepCopy(path, opts.backup);
  renameSync(tmp, path);
}

/** `path` as it is now, kept as `backup` (replaced atomically); nothing when `path` does not exist. */
function keepCopy(path: string, backup: string): void {
  const tmp = `${backup}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  try {
    linkSync(path, tmp);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    copyFileSync(path, tmp); // no hard links here (FAT, some network file systems)
  }
  renameSync(tmp, backup);
}

/**
 * Notices that a file was replaced since it was last read or written here (by inode, modification time and
 * size), looking at most every `checkEveryMs`: cheap enough for a per-request path, or on a timer (`poll`).
 * It reads no content, so it serves any format (the broker's credentials file is YAML).
 */
export class FileWatch {
  private stamp = '';
  private checkedAtMs = 0;

  constructor(
    readonly path: string,
    public checkEveryMs = 2_000,
  ) {}

  /** Remember the file as it is now (call after reading or writing it). */
  mark(): void {
    this.stamp = this.current();
  }

  /** True when it is time to look and the file is not as last marked. */
  changed(now = Date.now()): boolean {
    if (now - this.checkedAtMs < this.checkEveryMs) return false;
    this.checkedAtMs = now;
    return this.current() !== this.stamp;
  }

  /**
   * Looks every `checkEveryMs` on a timer and, when the file is not as last marked, marks it and calls
   * `onChange`: for a service that must act on a change with no request to notice it (the broker closes
   * clients whose credentials were revoked). The next look waits for `onChange` to settle, and a change made
   * while it ran is seen by that look. `onChange` handles its own errors. The timer does not keep the process
   * alive. Returns what stops it.
   */
  poll(onChange: () => Promise<void>): () => void {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const look = () => {
      if (!this.differs()) return Promise.resolve();
      this.mark();
      return onChange();
    };
    const next = () => {
      if (!stopped) timer = setTimeout(() => void look().finally(next), this.checkEveryMs).unref();
    };
    next();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** Unthrottled: whether the file differs from the mark right now. */
  differs(): boolean {
    return this.current() !== this.stamp;
  }

  private current(): string {
    try {
      const st = statSync(this.path);
      // The inode too: an atomic replacement (rename) of the same size within the file system's timestamp
      // granularity (a few ms) is still a new file.
      return `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      return '';
    }
  }
}
