import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';

/**
 * How the agent reaches a Windows helper (windows.ts speaks the protocol over either): a child process's
 * stdin/stdout (the helper the agent starts), or a client connection to a named pipe (the session helper a
 * scheduled task starts in the user's session; README.md, "Sessions"). The protocol code does not know which.
 */

/** What a link reports. `closed` is called exactly once per link, after which it sends nothing. */
export interface LinkEvents {
  data(chunk: Buffer): void;
  /** Diagnostics beside the protocol (a process's stderr). */
  diagnostic(chunk: Buffer): void;
  closed(why: string): void;
}

export interface HelperLink {
  /** The process id, when the link is a process (tests, logs). */
  readonly pid?: number | undefined;
  write(line: string): void;
  /** Ends it now: a hung or hostile peer. */
  kill(): void;
  /** Ends it gracefully (end of input), and for good after `graceMs`. */
  end(graceMs: number): void;
}

export interface HelperTransport {
  /** What it reaches, for logs: the command, or the pipe. */
  readonly target: string;
  /** What happens after a link ends, for logs: `restarting it`, `connecting again`. */
  readonly again: string;
  /** Opens a link; never throws: a failure to open is reported by `closed`. */
  open(events: LinkEvents): HelperLink;
}

/** A child process: the script on its command line, the protocol on its stdin and stdout. */
export class ProcessTransport implements HelperTransport {
  readonly again = 'restarting it';

  constructor(
    private readonly o: {
      command: string;
      args: readonly string[];
      /** Default: the agent's environment. */
      env?: NodeJS.ProcessEnv | undefined;
    },
  ) {}

  get target(): string {
    return this.o.command;
  }

  open(events: LinkEvents): HelperLink {
    let child: ChildProcess;
    try {
      child = spawn(this.o.command, [...this.o.args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        windowsHide: true,
        ...(this.o.env ? { env: this.o.env } : {}),
      });
    } catch (err) {
      // spawn throws synchronously only for arguments it cannot pass (e.g. a NUL byte in the path).
      const why = `cannot be started: ${(err as Error).message}`;
      queueMicrotask(() => events.closed(why));
      return { write() {}, kill() {}, end() {} };
    }
    child.stdout!.on('data', (chunk: Buffer) => events.data(chunk));
    child.stderr!.on('data', (chunk: Buffer) => events.diagnostic(chunk));
    // Writing to a helper that just died: the close handler below reports it.
    child.stdin!.on('error', () => {});
    let spawnError: string | undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err.code === 'ENOENT' ? `${this.o.command} not found` : err.message;
    });
    // 'close' follows 'error' when the spawn itself failed, and 'exit' otherwise.
    child.on('close', (code, signal) =>
      events.closed(spawnError ?? (signal ? `killed by ${signal}` : `exited with code ${code}`)),
    );
    return {
      pid: child.pid,
      write: (line) => {
        child.stdin!.write(line);
      },
      kill: () => {
        child.kill();
      },
      end: (graceMs) => {
        child.stdin!.end(); // the helper's loop ends at end of input
        const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        child.once('close', () => clearTimeout(killer));
      },
    };
  }
}

/**
 * A client connection to a named pipe (`\\.\pipe\NAME` on Windows: Node's net module speaks Windows named pipes)
 * or, elsewhere, a Unix socket at that path — the same code, which is how the tests run it on Linux. `path` may
 * change between links (the console's session moved): the next link goes there.
 */
export class SocketTransport implements HelperTransport {
  readonly again = 'connecting again';

  constructor(public path: string) {}

  get target(): string {
    return this.path;
  }

  open(events: LinkEvents): HelperLink {
    const socket = connect({ path: this.path });
    let error: string | undefined;
    socket.on('data', (chunk: Buffer) => events.data(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error =
        err.code === 'ENOENT'
          ? 'no such pipe (the session helper is not running)'
          : err.code === 'ECONNREFUSED'
            ? 'nobody is serving it'
            : err.message;
    });
    socket.on('close', () => events.closed(error ?? 'closed by the session helper'));
    return {
      write: (line) => {
        socket.write(line);
      },
      kill: () => {
        socket.destroy();
      },
      end: (graceMs) => {
        socket.end();
        const killer = setTimeout(() => socket.destroy(), graceMs);
        socket.once('close', () => clearTimeout(killer));
      },
    };
  }
}
