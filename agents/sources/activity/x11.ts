import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { type Activity, MAX_IDLE_S } from '../../../contracts/messages.js';
import { type ActivitySource, executableName, idleSeconds } from './activity.js';

/**
 * Activity on a Linux classroom PC's X11 desktop, read with the X tools Debian and Ubuntu ship:
 * - `xprintidle`: milliseconds since the last input (the MIT-SCREEN-SAVER extension's idle time);
 * - `xdotool getactivewindow`: the window the window manager marks active (EWMH `_NET_ACTIVE_WINDOW`); without
 *   a window manager that announces it, the window with the input focus (`getwindowfocus`) instead; then
 *   `xdotool getwindowpid` (its owner's `_NET_WM_PID`) and `getwindowname` (its title) for that window;
 * - `/proc/<pid>/comm`: the executable's name (at most 15 characters, as the kernel keeps it);
 * - `xset q`: DPMS (`Monitor is On` / `Off` / `in Standby` / `in Suspend`) and the X screen saver's timeout —
 *   a screen blanked by the X screen saver (idle beyond its timeout) is off too.
 * A part that cannot be read is left out (and logged once); the read fails only when none could be.
 */
export interface X11ActivityOptions {
  /** The X display, e.g. `:0`. */
  display: string;
  /** The X authority file of the session, when the agent runs as another user. */
  xauthority?: string | undefined;
  /** Each tool is killed after this. */
  timeoutMs: number;
  match: (title: string | undefined) => string | undefined;
  log: Logger;
  /** Where /proc is (tests). */
  procDir?: string;
  /** The tools' environment, before DISPLAY and XAUTHORITY are set; default the agent's. */
  env?: NodeJS.ProcessEnv;
}

const MAX_OUTPUT_BYTES = 64 * 1024;

/** What `xset q` says of the screen. */
export function parseXsetQ(text: string): { monitor?: 'on' | 'off'; saverTimeoutS?: number } {
  const out: { monitor?: 'on' | 'off'; saverTimeoutS?: number } = {};
  const monitor = /^\s*Monitor is (On|Off|in Standby|in Suspend)\s*$/m.exec(text);
  if (monitor) out.monitor = monitor[1] === 'On' ? 'on' : 'off';
  // "Screen Saver:\n  prefer blanking:  yes    allow exposures:  yes\n  timeout:  600    cycle:  600"
  const saver = /Screen Saver:[\s\S]*?^\s*timeout:\s+(\d+)/m.exec(text);
  if (saver) out.saverTimeoutS = Number(saver[1]);
  return out;
}

/** `xdotool getwindowpid` (the pid on the first line), or a chain adding `getwindowname` (the title on the rest). */
export function parseWindowPidName(text: string): { pid?: number; title?: string } {
  const nl = text.indexOf('\n');
  const first = (nl < 0 ? text : text.slice(0, nl)).trim();
  const rest = nl < 0 ? '' : text.slice(nl + 1).replace(/\n$/, '');
  const out: { pid?: number; title?: string } = {};
  if (/^\d{1,10}$/.test(first) && Number(first) > 0) out.pid = Number(first);
  if (rest) out.title = rest;
  return out;
}

class ToolError extends Error {}

export class X11Activity implements ActivitySource {
  readonly kind = 'x11';
  private readonly logged = new Set<string>();
  /** Reads that had a part missing, by part. */
  readonly failures: Record<'idle' | 'window' | 'screen', number> = { idle: 0, window: 0, screen: 0 };

  constructor(private readonly opts: X11ActivityOptions) {}

  private run(tool: string, args: string[]): Promise<string> {
    const env: NodeJS.ProcessEnv = { ...(this.opts.env ?? process.env), DISPLAY: this.opts.display };
    if (this.opts.xauthority) env.XAUTHORITY = this.opts.xauthority;
    return new Promise((resolve, reject) => {
      execFile(
        tool,
        args,
        { env, timeout: this.opts.timeoutMs, maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          const why =
            e.code === 'ENOENT'
              ? `${tool} not found (Debian/Ubuntu: apt-get install ${tool === 'xset' ? 'x11-xserver-utils' : tool})`
              : e.killed
                ? `${tool} timed out after ${this.opts.timeoutMs} ms`
                : `${tool} failed: ${(stderr || e.message).trim().split('\n')[0]!.slice(0, 200)}`;
          reject(new ToolError(why));
        },
      );
    });
  }

  private warnOnce(part: string, err: unknown): void {
    const msg = err instanceof Error ? err.message : String(err);
    const key = `${part}:${msg}`;
    if (this.logged.has(key)) return;
    if (this.logged.size < 64) this.logged.add(key);
    this.opts.log.warn(
      { part, display: this.opts.display, err: msg },
      `x11 activity: cannot read the ${part}`,
    );
  }

  private async idleMs(): Promise<number> {
    const out = (await this.run('xprintidle', [])).trim();
    if (!/^\d{1,15}$/.test(out))
      throw new ToolError(`xprintidle printed ${JSON.stringify(out.slice(0, 40))}`);
    return Number(out);
  }

  /** The window the person works in: the window manager's active window, else the input focus. */
  private async windowId(): Promise<string> {
    let out: string;
    try {
      out = await this.run('xdotool', ['getactivewindow']);
    } catch (err) {
      // No EWMH window manager announcing `_NET_ACTIVE_WINDOW`: the window with the input focus.
      if (err instanceof ToolError && /not found/.test(err.message)) throw err;
      out = await this.run('xdotool', ['getwindowfocus']);
    }
    const id = out.trim();
    if (!/^\d{1,10}$/.test(id))
      throw new ToolError(`xdotool printed ${JSON.stringify(id.slice(0, 40))} for a window`);
    return id;
  }

  private async window(): Promise<{ foreground?: string; title?: string }> {
    const id = await this.windowId();
    // A window without `_NET_WM_PID` (or gone meanwhile) has no owner to name: no foreground, the title still counts.
    const [pidOut, title] = await Promise.all([
      this.run('xdotool', ['getwindowpid', id]).catch(() => ''),
      this.run('xdotool', ['getwindowname', id]).catch(() => ''),
    ]);
    const { pid } = parseWindowPidName(pidOut);
    const out: { foreground?: string; title?: string } = {};
    const t = title.replace(/\n$/, '');
    if (t) out.title = t;
    if (pid) {
      const comm = await readFile(`${this.opts.procDir ?? '/proc'}/${pid}/comm`, 'utf8').catch(
        () => undefined,
      );
      // comm is the kernel's name of the process, as it is: one a process gave itself with a slash or a control
      // character in it is no executable name, and is not cut to one.
      const name = comm?.replace(/\n$/, '');
      if (name && executableName(name) === name) out.foreground = name;
    }
    return out;
  }

  private async screen(idleMs: number | undefined): Promise<boolean | undefined> {
    const q = parseXsetQ(await this.run('xset', ['q']));
    if (q.monitor === 'off') return false;
    if (q.saverTimeoutS && idleMs !== undefined && idleMs >= q.saverTimeoutS * 1000) return false;
    // DPMS on, or no DPMS and no saver running: nothing blanks it.
    return true;
  }

  async read(): Promise<Activity> {
    const [idle, win] = await Promise.allSettled([this.idleMs(), this.window()]);
    const idleMs = idle.status === 'fulfilled' ? idle.value : undefined;
    const [screen] = await Promise.allSettled([this.screen(idleMs)]);
    const a: Activity = { source: 'x11' };
    const failed: string[] = [];
    if (idle.status === 'fulfilled') a.idleS = idleSeconds(idle.value, MAX_IDLE_S);
    else {
      this.failures.idle++;
      this.warnOnce('idle time', idle.reason);
      failed.push((idle.reason as Error).message);
    }
    if (win.status === 'fulfilled') {
      if (win.value.foreground) a.foreground = win.value.foreground;
      const site = this.opts.match(win.value.title);
      if (site) a.teachingSite = site;
    } else {
      // No focused window (the bare desktop) is an answer too: no foreground.
      this.failures.window++;
      this.warnOnce('active window', win.reason);
      failed.push((win.reason as Error).message);
    }
    if (screen!.status === 'fulfilled') {
      if (screen!.value !== undefined) a.screenOn = screen!.value;
    } else {
      this.failures.screen++;
      this.warnOnce('screen state', screen!.reason);
      failed.push((screen!.reason as Error).message);
    }
    if (failed.length === 3) throw new Error(`x11 activity on ${this.opts.display}: ${failed.join('; ')}`);
    return a;
  }
}
