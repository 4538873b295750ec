import { type Activity, activitySchema } from '../../../contracts/messages.js';

/**
 * An activity source (docs/usage.md): reads what the person at the teaching computer is doing and returns it
 * as `activitySchema` evidence. It reports; the collector judges use. A failed read rejects with an Error that
 * names the source and the reason; the agent then sends the reading without `activity`.
 */
export interface ActivitySource {
  readonly kind: Activity['source'];
  start?(): Promise<void> | void;
  read(nowMs: number): Promise<Activity>;
  stop?(): Promise<void> | void;
}

const foregroundSchema = activitySchema.shape.foreground;

/**
 * The executable name in `raw` (a name, or a path on Windows or Linux): its last path component, if that is a
 * valid `activity.foreground`; otherwise undefined (no foreground rather than a wrong one).
 */
export function executableName(raw: string | undefined | null): string | undefined {
  if (!raw) return undefined;
  const name = raw.slice(Math.max(raw.lastIndexOf('/'), raw.lastIndexOf('\\')) + 1).trim();
  if (!name || !foregroundSchema.safeParse(name).success) return undefined;
  if (!EXECUTABLE_LIKE.test(name) || DOCUMENT_EXTENSION.test(name)) return undefined;
  return name;
}

/**
 * What a program's name looks like: no spaces (a document's name — `期末试卷 三年级二班.pptx` — often has them), no
 * control or format characters (U+202E and the like), no drive letter, and no extension other than Windows' `.exe`
 * (or a screen saver's `.scr`) or a Linux binary's `.bin` (`soffice.bin`): a name like `试卷.pptx` is a file, not a program, and never leaves.
 */
const EXECUTABLE_LIKE = /^(?![A-Za-z]:)[^\s\p{C}:]+$/u;
const DOCUMENT_EXTENSION = /\.(?!exe$|scr$|bin$)[A-Za-z0-9]{2,5}$/i;

/** Whole seconds from milliseconds, capped at the contract's maximum (a longer idle says only "not since boot"). */
export function idleSeconds(ms: number, maxS: number): number {
  return Math.min(maxS, Math.floor(Math.max(0, ms) / 1000));
}
