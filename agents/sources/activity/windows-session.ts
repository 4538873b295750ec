import type { Logger } from 'pino';
import type { Activity } from '../../../contracts/messages.js';
import { type HelperResponse, WindowsHelper, type WindowsHelperStats, windowsActivity } from './windows.js';
import { SocketTransport } from './windows-link.js';

/**
 * Windows activity with the agent as a session-0 service (README.md, "Sessions"): the user's input, windows
 * and screen are read by the session helper in the user's session, which the agent reaches over a named pipe;
 * the agent's own helper (in session 0) says which session is the console's and whether anyone is logged on
 * there. Nobody logged on is evidence (nobody at the computer); a user logged on whose helper does not answer is
 * a failure — the reading then goes without activity and is judged by power, never given an invented absence
 * of use.
 */

type Match = (title: string | undefined) => string | undefined;

/**
 * The activity in an answer of the agent's own helper, when it is the activity source (no session helper): the
 * user's when the helper runs in the console's session; `{source: windows}` (nobody there) when it does not and
 * nobody is logged on at the console; otherwise it cannot see the user's input, and throws — as it does when
 * there is no answer (`failed`: why).
 */
export function localActivity(
  r: HelperResponse | undefined,
  failed: Error | undefined,
  match: Match,
): Activity {
  if (!r) throw failed ?? new Error('windows helper gave no answer');
  const { activity, sessionMismatch } = windowsActivity(r, match);
  if (!sessionMismatch) return activity;
  if (r.consoleUser === false) return { source: 'windows', loggedOn: false };
  throw new Error(
    `windows helper runs outside the console session (session ${sessionMismatch.session}, console ${sessionMismatch.console}) and ${r.consoleUser ? 'a user is logged on there' : 'cannot tell whether anyone is logged on there'}: no input, window or screen to read (set agent.windowsHelper.sessionPipe, or run the agent in the classroom user's session: docs/usage.md)`,
  );
}

export interface WindowsSessionOptions {
  /** The pipe's name without the session: `\\.\pipe\cfm-activity` (a Unix socket path in the tests). */
  pipe: string;
  /** One answer, and from connection to hello (the session helper has its types compiled already). */
  timeoutMs: number;
  restartMinMs?: number;
  restartMaxMs: number;
  maxLineBytes?: number;
  match: Match;
  log: Logger;
}

export class WindowsSessionActivity {
  private readonly transport: SocketTransport;
  private readonly helper: WindowsHelper;
  private consoleSession: number | undefined;

  constructor(private readonly opts: WindowsSessionOptions) {
    this.transport = new SocketTransport(opts.pipe);
    this.helper = new WindowsHelper({
      transport: this.transport,
      name: 'session helper',
      timeoutMs: opts.timeoutMs,
      startTimeoutMs: opts.timeoutMs,
      ...(opts.restartMinMs ? { restartMinMs: opts.restartMinMs } : {}),
      restartMaxMs: opts.restartMaxMs,
      ...(opts.maxLineBytes ? { maxLineBytes: opts.maxLineBytes } : {}),
      log: opts.log,
    });
  }

  /** The pipe the agent connects to: `<pipe>-<console session id>`. */
  pipeOf(session: number): string {
    return `${this.opts.pipe}-${session}`;
  }

  stats(): WindowsHelperStats {
    return this.helper.stats();
  }

  /** The connection to the session helper (tests, diagnostics). */
  get connection(): WindowsHelper {
    return this.helper;
  }

  /**
   * The activity of one reading, given the agent's own helper's answer (undefined: it failed). Rejects when
   * there is none to send: the agent counts it and sends the reading without activity.
   */
  async read(local: HelperResponse | undefined): Promise<Activity> {
    // Nobody at the console: nobody to read (the collector judges this as not in use), and no pipe to dial
    // until someone logs on.
    if (local?.consoleUser === false) {
      if (this.helper.started) await this.helper.stop();
      return { source: 'windows', loggedOn: false };
    }
    // The console's session as the agent's own helper (session 0, which no user can replace) sees it; while it
    // cannot tell (a session switch, or no answer), the last one it saw.
    const consoleSession = local?.console ?? this.consoleSession;
    if (consoleSession === undefined) {
      throw new Error('the console session is not known yet: no session helper to ask');
    }
    this.consoleSession = consoleSession;
    const path = this.pipeOf(consoleSession);
    if (!this.helper.started) {
      this.transport.path = path;
      this.helper.start();
    } else if (this.transport.path !== path) {
      this.opts.log.info(
        { pipe: path },
        'the console moved to another session: connecting to its session helper',
      );
      this.transport.path = path;
      this.helper.restart();
    }
    if (!this.helper.ready) await this.helper.whenReady(this.opts.timeoutMs);
    const r = await this.helper.read();
    // The session helper names its own session; it must be the console's, as the agent's own helper sees it.
    if (r.session !== consoleSession) {
      throw new Error(
        `session helper on ${path} answers from session ${r.session ?? 'unknown'}, not the console's (${consoleSession})`,
      );
    }
    const { activity, sessionMismatch } = windowsActivity(r, this.opts.match);
    if (sessionMismatch) {
      throw new Error(
        `session helper on ${path} runs outside the console session (session ${sessionMismatch.session}, console ${sessionMismatch.console})`,
      );
    }
    return activity;
  }

  async stop(): Promise<void> {
    await this.helper.stop();
  }
}
