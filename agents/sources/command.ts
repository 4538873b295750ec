import { execFile } from 'node:child_process';
import { type DisplayHealth, displaySchema } from '../../contracts/messages.js';

/**
 * Display health from a vendor tool (集控 clients of Seewo, Hitevision, Hikvision… often ship one): the
 * command runs without a shell, must exit 0 within `timeoutMs` and print one JSON object on stdout in the
 * shape of `displaySchema` (contracts/messages.ts); `source` may be omitted. Anything else is an error that
 * names the command and the reason.
 */
export interface CommandSourceOptions {
  command: string;
  args?: readonly string[];
  timeoutMs?: number;
}

const MAX_OUTPUT_BYTES = 64 * 1024;

/**
 * Runs `opts.command` (no shell) and returns the JSON object it printed; rejects with `${what} command …: why`
 * when it fails, times out, prints too much or prints anything but one JSON object.
 */
export function runJsonCommand(what: string, opts: CommandSourceOptions): Promise<Record<string, unknown>> {
  const name = opts.command;
  return new Promise((resolve, reject) => {
    execFile(
      opts.command,
      [...(opts.args ?? [])],
      { timeout: opts.timeoutMs ?? 5_000, maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true },
      (err, stdout) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
          const why = e.killed
            ? `timed out after ${opts.timeoutMs ?? 5_000} ms`
            : e.code === 'ENOENT'
              ? 'not found'
              : e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER'
                ? `printed more than ${MAX_OUTPUT_BYTES} bytes`
                : `failed: ${e.message.split('\n')[0]}`;
          return reject(new Error(`${what} command ${name}: ${why}`));
        }
        let value: unknown;
        try {
          value = JSON.parse(stdout);
        } catch {
          return reject(new Error(`${what} command ${name}: output is not JSON: ${stdout.slice(0, 100)}`));
        }
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          return reject(new Error(`${what} command ${name}: output must be a JSON object`));
        }
        resolve(value as Record<string, unknown>);
      },
    );
  });
}

export async function readCommand(opts: CommandSourceOptions): Promise<DisplayHealth> {
  const value = await runJsonCommand('display', opts);
  const r = displaySchema.safeParse({ source: 'command', ...value });
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new Error(`display command ${opts.command}: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return { ...r.data, source: 'command' };
}
