import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * A real X server for the tests of the x11 activity source: Debian's Xvfb, on a display it picks itself
 * (`-displayfd`: no guessing of free numbers), listening on no TCP port, and the X tools the source runs
 * (deploy/install-deps.sh --tests installs them all). A missing tool fails the test with what to install —
 * never a skip.
 */
export const X11_TOOLS = {
  Xvfb: 'xvfb',
  xdotool: 'xdotool',
  xprintidle: 'xprintidle',
  xset: 'x11-xserver-utils',
  xprop: 'x11-utils',
} as const;

export function which(tool: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    const file = join(dir, tool);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function requireX11Tools(): void {
  const missing = Object.entries(X11_TOOLS).filter(([tool]) => !which(tool));
  if (missing.length) {
    throw new Error(
      `the X11 tests need ${missing.map(([t]) => t).join(', ')}: run bash deploy/install-deps.sh --tests (Debian packages: ${missing.map(([, p]) => p).join(' ')})`,
    );
  }
}

export interface Xvfb {
  /** `:N` */
  display: string;
  /** Runs an X tool on this display; resolves with its stdout. */
  x(tool: string, ...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startXvfb(): Promise<Xvfb> {
  requireX11Tools();
  const child: ChildProcess = spawn(
    'Xvfb',
    // -noreset: an X server resets (and its idle time with it) when its last client leaves; a desktop session
    // always has clients, a test's server often has none between two tool runs.
    ['-displayfd', '3', '-noreset', '-nolisten', 'tcp', '-screen', '0', '1024x768x24'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-2_000);
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const display = await new Promise<string>((resolve, reject) => {
    let out = '';
    const fd3 = child.stdio[3] as NodeJS.ReadableStream;
    fd3.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve(`:${out.trim()}`);
    });
    const timer = setTimeout(() => reject(new Error(`Xvfb did not start within 10 s: ${stderr}`)), 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`Xvfb exited (${code}): ${stderr}`));
    });
    fd3.on('end', () => clearTimeout(timer));
  });
  const x = (tool: string, ...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        tool,
        args,
        { env: { ...process.env, DISPLAY: display }, timeout: 10_000 },
        (err, stdout, se) =>
          err ? reject(new Error(`${tool} ${args.join(' ')}: ${se || err.message}`)) : resolve(stdout),
      ),
    );
  return {
    display,
    x,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}
