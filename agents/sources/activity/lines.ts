/**
 * Splits a byte stream into lines (`\n`, an optional `\r` before it dropped), each at most `maxBytes`: a longer
 * line is not kept — its bytes are discarded as they come, up to its newline — and reported once as too long,
 * so a child that prints without end costs no memory.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onTooLong: (bytes: number) => void,
  ) {}

  push(chunk: Buffer): void {
    let from = 0;
    while (from < chunk.length) {
      const nl = chunk.indexOf(0x0a, from);
      const end = nl < 0 ? chunk.length : nl;
      if (!this.skipping) {
        const piece = chunk.subarray(from, end);
        if (this.size + piece.length > this.maxBytes) {
          this.skipping = true;
          this.onTooLong(this.size + piece.length);
          this.parts = [];
          this.size = 0;
        } else if (piece.length > 0) {
          this.parts.push(piece);
          this.size += piece.length;
        }
      }
      if (nl < 0) return;
      if (this.skipping) this.skipping = false;
      else {
        let line = Buffer.concat(this.parts, this.size).toString('utf8');
        if (line.endsWith('\r')) line = line.slice(0, -1);
        this.parts = [];
        this.size = 0;
        this.onLine(line);
      }
      from = nl + 1;
    }
  }

  /** Forget a partial line (the stream ended or was replaced). */
  reset(): void {
    this.parts = [];
    this.size = 0;
    this.skipping = false;
  }
}
