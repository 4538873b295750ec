// postject (github.com/nodejs/postject) ships no types: its one API function, as dist/api.js defines it.
declare module 'postject' {
  export function inject(
    filename: string,
    resourceName: string,
    resourceData: Buffer,
    options?: {
      /** The fuse Node looks for; postject flips its last character to 1. */
      sentinelFuse?: string;
      /** Mach-O only. */
      machoSegmentName?: string;
      /** Replace a resource of that name if there is one. */
      overwrite?: boolean;
    },
  ): Promise<void>;
}
