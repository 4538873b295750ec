import { copyFileSync, existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { JsonFileError, readJsonFileAs, writeFileAtomic } from '../common/json-file.js';
import { migrateIds, type StateFile, stateFileSchema } from './state.js';

/**
 * The alert state file (`alerts.stateFile`): active alerts, silences, history, pending deliveries. Read
 * validated field by field (state.ts); written atomically, the file replaced kept as `<file>.bak`.
 */
export class StateStore {
  /**
   * Set when the state came from the last good copy because the state file was malformed (for /metrics).
   * The state file itself is then kept as `<file>.malformed` for inspection.
   */
  recoveredFrom: string | undefined;
  /** The state file on disk is one this process loaded or wrote: the next write may keep it as the backup. */
  private fileGood = false;

  constructor(
    readonly file: string,
    private readonly log: Logger,
  ) {}

  /** The last good copy of the state file: the file as it was before the last write. */
  get backupFile(): string {
    return `${this.file}.bak`;
  }

  /**
   * The saved state; undefined on a first start. A malformed file is not a reason to forget every active
   * alert and silence — nor to run on silently without them: the last good copy (`.bak`) is loaded with an
   * error in the log saying which file was used and why; when that is malformed or missing too, start-up is
   * refused naming both files and the first bad field of each. A missing state file is a first start (or a
   * reset by hand: a `.bak` beside it is left alone).
   */
  load(): StateFile | undefined {
    const { file, backupFile: bak } = this;
    let s: StateFile | undefined;
    try {
      s = readJsonFileAs(file, 'alerts state', stateFileSchema);
      this.fileGood = true;
    } catch (e) {
      if (!(e instanceof JsonFileError)) throw e;
      s = this.recover(e);
    }
    // Writes never remove the state file, so it was removed by hand: a reset, which the copy must not undo.
    if (s === undefined && existsSync(bak))
      this.log.warn(
        { file, unused: bak },
        `no alerts state ${file}: starting with an empty alert state; the last good copy ${bak} is not loaded`,
      );
    return s && migrateIds(s);
  }

  private recover(e: JsonFileError): StateFile {
    const { file, backupFile: bak } = this;
    let good: StateFile | undefined;
    let bakProblem: string;
    try {
      good = readJsonFileAs(bak, 'alerts state', stateFileSchema);
      bakProblem = good === undefined ? `there is no last good copy ${bak}` : '';
    } catch (b) {
      if (!(b instanceof JsonFileError)) throw b;
      bakProblem = `its last good copy is malformed too (${b.message})`;
    }
    if (good === undefined)
      throw new Error(
        `alerts state ${file} is malformed (${e.detail}) and ${bakProblem}: refusing to start without the active alerts and silences. Fix the file, or move both aside to start with an empty alert state (alerts still active are notified again, silences are lost).`,
      );
    const kept = `${file}.malformed`;
    try {
      copyFileSync(file, kept);
    } catch {
      // unreadable: nothing to keep
    }
    this.log.error(
      { file, problem: e.detail, loaded: bak, kept },
      `alerts state ${file} is malformed (${e.detail}): loaded the last good copy ${bak} instead; the malformed file is kept as ${kept}, and the next write replaces it. Changes made after that copy (at most the last write) are lost.`,
    );
    this.recoveredFrom = bak;
    return good;
  }

  /** Writes the state atomically (temporary file, then rename); throws what the file system throws. */
  write(state: StateFile): void {
    // The file being replaced becomes the last good copy — unless it is the malformed one this process
    // started without (`recoveredFrom`): that would overwrite the copy it was recovered from.
    writeFileAtomic(this.file, JSON.stringify(state), 0o600, {
      ...(this.fileGood ? { backup: this.backupFile } : {}),
    });
    this.fileGood = true;
  }
}
