import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';

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

/**
 * Temporary file, fsync, rename: a crash mid-write leaves the previous version intact, and a reader never sees
 * half a file.
 */
export function writeFileAtomic(path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * Notices that a file was replaced since it was last read or written here (by modification time and size),
 * looking at most every `checkEveryMs`: cheap enough for a per-request path.
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

  /** Unthrottled: whether the file differs from the mark right now. */
  differs(): boolean {
    return this.current() !== this.stamp;
  }

  private current(): string {
    try {
      const st = statSync(this.path);
      return `${st.mtimeMs}:${st.size}`;
    } catch {
      return '';
    }
  }
}
