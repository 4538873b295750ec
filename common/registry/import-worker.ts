import { closeSync, fsyncSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ENTITIES, registrySchema } from '../../contracts/registry.js';
import { ImportError, readFiles } from './import.js';
import { type ImportJob, PART_ITEMS, type WorkerMessage, workerFile } from './import-run.js';
import { ImportLimitError } from './limits.js';
import { mergeRead } from './merge.js';
import { RegistryFileError, readRegistryFile } from './store.js';

// The worker process of `import-run.ts`: for each job, parse the files, merge them into the registry on disk,
// check the result, write it beside the registry and send it back in parts; the parent renames the file into
// place. One job at a time: the parent sends the next only after this one's outcome. It ends with its parent
// (the IPC channel closes).

async function run(job: ImportJob): Promise<WorkerMessage> {
  try {
    const files = job.files.map((f) => ({
      name: f.name,
      data: Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength),
      ...(f.entity ? { entity: f.entity } : {}),
    }));
    const read = await readFiles(files, job.limits);
    const { rows } = read;
    // Merge into what is on disk now, not into a copy another process has since replaced; cell errors and
    // reference errors are reported together.
    const merged = mergeRead(readRegistryFile(job.path) ?? registrySchema.parse({}), read, job.opts);
    // Written and synced beside the registry; the parent renames it into place (atomic) once it has it all.
    const file = workerFile(job.path, process.pid);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(merged, null, 1)}\n`);
    const fd = openSync(file, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    for (const entity of ENTITIES)
      for (let i = 0; i < merged[entity].length; i += PART_ITEMS)
        process.send!({
          type: 'part',
          entity,
          items: merged[entity].slice(i, i + PART_ITEMS),
        } satisfies WorkerMessage);
    return {
      type: 'done',
      rows: {
        regions: rows.regions.length,
        schools: rows.schools.length,
        classrooms: rows.classrooms.length,
        devices: rows.devices.length,
      },
    };
  } catch (e) {
    if (e instanceof ImportError) return { type: 'rejected', issues: e.issues };
    if (e instanceof ImportLimitError) return { type: 'limit', limit: e.limit, value: e.value, what: e.what };
    if (e instanceof RegistryFileError) return { type: 'registry-file', message: e.message };
    return { type: 'failed', message: (e as Error).stack ?? String(e) };
  }
}

let current: ImportJob | undefined;
process.on('message', (job: ImportJob) => {
  current = job;
  void run(job).then((outcome) => {
    current = undefined;
    process.send!(outcome);
  });
});
// A parser's stream error that escaped its pipe: the file could not be read. Say so, then end (this process
// may be in any state); the parent starts a new worker for the next import.
process.on('uncaughtException', (e) => {
  const file = current?.files.map((f) => f.name).join(', ') ?? '(no import running)';
  const outcome: WorkerMessage = {
    type: 'rejected',
    issues: [{ file, message: `cannot be read: ${e.message}` }],
  };
  if (current) process.send!(outcome, () => process.exit(1));
  else process.exit(1);
});
process.on('disconnect', () => process.exit(0));
