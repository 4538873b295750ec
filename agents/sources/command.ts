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

export function readCommand(opts: CommandSourceOptions): Promise<DisplayHealth> {
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
          return reject(new Error(`display command ${name}: ${why}`));
        }
        let value: unknown;
        try {
          value = JSON.parse(stdout);
        } catch {
          return reject(new Error(`display command ${name}: output is not JSON: ${stdout.slice(0, 100)}`));
        }
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          return reject(new Error(`display command ${name}: output must be a JSON object`));
        }
        const r = displaySchema.safeParse({ source: 'command', ...value });
        if (!r.success) {
          const i = r.error.issues[0]!;
          return reject(new Error(`display command ${name}: ${i.path.join('.') || '(root)'}: ${i.message}`));
        }
        resolve({ ...r.data, source: 'command' });
      },
    );
  });
}
