import { type ChildProcess, fork } from 'node:child_process';
import { rm } from 'node:fs/promises';
import type { EntityName, Registry } from '../../contracts/registry.js';
import type { ImportFile, ImportIssue } from './import.js';
import type { ImportLimits } from './limits.js';
import type { MergeOptions } from './merge.js';

/**
 * One registry import in a worker process (`import-worker.ts`): the files are parsed, merged into the registry
 * on disk, checked and written beside it there, off the event loop of the process that asked, which then only
 * renames the file into place and indexes the registry.
 * The worker is bounded in heap (`--max-old-space-size`) and in time, and is killed when it exceeds either.
 *
 * A process, not a worker thread: a worker thread's `resourceLimits` are best-effort — V8 can abort the whole
 * process when a worker reaches its heap limit (nodejs/node#47224; here, a 200,000-row workbook with a 384 MB
 * limit ended the API with "FATAL ERROR: Reached heap limit"). A worker process that runs out of heap ends
 * alone. Starting one costs about a second (exceljs, the schemas), so a worker that finished a run is kept for
 * the next one for `IDLE_MS`, then ended; it never keeps its parent alive, and ends when its parent does.
 */

/** What the worker is given for one run. */
export interface ImportJob {
  path: string;
  files: { name: string; data: Uint8Array; entity?: EntityName }[];
  opts: MergeOptions;
  limits: ImportLimits;
}

/** How a run ended. Errors travel as data: class identity does not cross processes. */
export type ImportOutcome =
  | {
      type: 'done';
      registry: Registry;
      /** The new registry file, written and synced by the worker beside the registry: rename it into place. */
      file: string;
      rows: Record<EntityName, number>;
    }
  | { type: 'rejected'; issues: ImportIssue[] }
  | { type: 'limit'; limit: keyof ImportLimits; value: number; what: string }
  | { type: 'registry-file'; message: string }
  | { type: 'failed'; message: string };

/**
 * What the worker sends: the merged registry in parts of at most PART_ITEMS entries — one message of a city's
 * registry takes the receiving event loop a second or more to deserialise, many small ones a few ms each —
 * then the outcome (`done` without its registry).
 */
export type WorkerMessage =
  | { type: 'part'; entity: EntityName; items: unknown[] }
  | Exclude<ImportOutcome, { type: 'done' }>
  | { type: 'done'; rows: Record<EntityName, number> };

export const PART_ITEMS = 2_000;

/** Where the worker with process id `pid` writes the new registry file for `path`. */
export function workerFile(path: string, pid: number): string {
  return `${path}.import-${pid}.tmp`;
}

/** How long a worker that finished a run waits for the next one before it ends. */
export const IDLE_MS = 30_000;

/** Run from source (tsx, vitest) the worker is TypeScript too; built (`dist/`), it is plain JavaScript. */
function spawn(maxHeapMb: number): ChildProcess {
  const ts = import.meta.url.endsWith('.ts');
  const entry = new URL(`./import-worker.${ts ? 'ts' : 'js'}`, import.meta.url);
  return fork(entry, [], {
    execArgv: [...(ts ? ['--import', import.meta.resolve('tsx')] : []), `--max-old-space-size=${maxHeapMb}`],
    serialization: 'advanced', // Buffers and plain objects by the structured-clone algorithm
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
}

interface Worker {
  child: ChildProcess;
  maxHeapMb: number;
  /** The last few KB of its stderr: V8 says there why it aborted. */
  stderr: string;
}

/** At most one idle worker per process, ended after IDLE_MS. */
let idle: { worker: Worker; timer: NodeJS.Timeout } | undefined;

function setRef(w: Worker, ref: boolean): void {
  const c = w.child as ChildProcess & { channel?: { ref(): void; unref(): void } };
  if (ref) {
    c.ref();
    c.channel?.ref();
  } else {
    c.unref();
    c.channel?.unref();
  }
}

function takeWorker(maxHeapMb: number): Worker {
  const w = idle;
  if (w) {
    idle = undefined;
    clearTimeout(w.timer);
    if (w.worker.maxHeapMb === maxHeapMb && w.worker.child.exitCode === null && w.worker.child.connected) {
      setRef(w.worker, true);
      w.worker.stderr = '';
      return w.worker;
    }
    w.worker.child.kill('SIGKILL');
  }
  const worker: Worker = { child: spawn(maxHeapMb), maxHeapMb, stderr: '' };
  worker.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    worker.stderr = (worker.stderr + s).slice(-4096);
  });
  // stderr keeps no reference: an idle worker must not hold its parent open.
  (worker.child.stderr as unknown as { unref?: () => void }).unref?.();
  worker.child.on('exit', () => {
    if (idle?.worker === worker) {
      clearTimeout(idle.timer);
      idle = undefined;
    }
  });
  worker.child.on('error', () => {}); // reported to the run that owns it (below); an idle one just ends
  return worker;
}

function returnWorker(worker: Worker): void {
  if (idle) {
    worker.child.kill('SIGKILL');
    return;
  }
  setRef(worker, false);
  const timer = setTimeout(() => {
    if (idle?.worker === worker) idle = undefined;
    worker.child.kill('SIGKILL');
  }, IDLE_MS);
  timer.unref();
  idle = { worker, timer };
}

/** Ends the idle worker now (tests, shutdown); a running import is stopped by its own `stop()`. */
export function endIdleImportWorker(): void {
  const w = idle;
  idle = undefined;
  if (w) {
    clearTimeout(w.timer);
    w.worker.child.kill('SIGKILL');
  }
}

export class ImportRun {
  /** Settles once, with the outcome; never rejects. */
  readonly done: Promise<ImportOutcome>;
  private settle!: (o: ImportOutcome, reusable?: boolean) => void;

  constructor(path: string, files: readonly ImportFile[], opts: MergeOptions, limits: ImportLimits) {
    const names = files.map((f) => f.name).join(', ');
    const worker = takeWorker(limits.maxHeapMb);
    const { child } = worker;
    const file = workerFile(path, child.pid ?? 0);
    let timer: NodeJS.Timeout | undefined;
    const registry: Registry = { regions: [], schools: [], classrooms: [], devices: [] };
    const onMessage = (m: WorkerMessage) => {
      if (m.type === 'part') {
        const list = registry[m.entity] as unknown[];
        for (const x of m.items) list.push(x);
      } else if (m.type === 'done') this.settle({ ...m, registry, file }, true);
      else this.settle(m, true);
    };
    const onError = (err: Error) =>
      this.settle({ type: 'failed', message: `import worker failed: ${err.message}` });
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      // V8 aborts (SIGABRT, after "FATAL ERROR: … JavaScript heap out of memory") at --max-old-space-size.
      if (/heap out of memory|Reached heap limit/i.test(worker.stderr) || signal === 'SIGABRT')
        this.settle({
          type: 'limit',
          limit: 'maxHeapMb',
          value: limits.maxHeapMb,
          what: `${names}: importing needed more than ${limits.maxHeapMb} MB of memory (stopped; nothing changed)`,
        });
      else
        this.settle({
          type: 'failed',
          message: `import worker exited (${signal ?? `code ${code}`}) without a result: ${worker.stderr.trim().slice(-500)}`,
        });
    };
    this.done = new Promise((resolve) => {
      let settled = false;
      this.settle = (o, reusable = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.off('message', onMessage).off('error', onError).off('exit', onExit);
        if (reusable) returnWorker(worker);
        else {
          // Killed, perhaps while writing its file: remove what it left once it is gone.
          if (child.exitCode === null && child.signalCode === null)
            child.once('exit', () => void rm(file, { force: true }));
          else void rm(file, { force: true });
          child.kill('SIGKILL');
        }
        resolve(o);
      };
    });
    child.on('message', onMessage).on('error', onError).on('exit', onExit);
    const job: ImportJob = {
      path,
      opts,
      limits,
      files: files.map((f) => ({ name: f.name, data: f.data, ...(f.entity ? { entity: f.entity } : {}) })),
    };
    child.send(job, (err) => {
      if (err) onError(err);
    });
    timer = setTimeout(
      () =>
        this.settle({
          type: 'limit',
          limit: 'timeoutMs',
          value: limits.timeoutMs,
          what: `${names}: not imported within ${limits.timeoutMs} ms (stopped; nothing changed)`,
        }),
      limits.timeoutMs,
    );
  }

  /** Kills the worker; the run ends as failed (nothing is written). */
  stop(): Promise<ImportOutcome> {
    this.settle({ type: 'failed', message: 'import stopped: the service is shutting down' });
    return this.done;
  }
}
