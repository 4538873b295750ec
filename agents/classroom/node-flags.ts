/**
 * V8 flags the agent runs with (deploy unit files, the Windows service's NODE_OPTIONS, bench:agent).
 * - `--max-old-space-size=64`: a cap on the old generation turns a leak into a crash and a restart by the
 *   service manager instead of a classroom PC slowly running out of memory.
 * - `--max-semi-space-size=1` (MB): the young generation grows to 16 MB semi-spaces while the agent starts
 *   (config validation, module evaluation) and V8 did not always give that back: bench:agent measured
 *   50.7–57.2 MB RSS at the end of a minute and 56.3–62.9 MB at most without it, 50.7 MB and 54.6 MB in three
 *   runs of three with it, at the same CPU (0.13–0.15 % of a core: one reading every 10 s allocates little).
 * (--optimize-for-size and malloc arena limits were measured and did not lower RSS; --jitless raised it.)
 */
export const AGENT_NODE_FLAGS = ['--max-old-space-size=64', '--max-semi-space-size=1'];

/**
 * Environment the agent runs with on Linux (the systemd unit, bench:agent). glibc's malloc serves requests
 * below its mmap threshold (128 KB, raised on the fly up to 32 MB) from the process heap, and gives freed heap
 * memory back only from its top: what V8 parses and compiles at start-up is freed, but a later allocation above
 * it kept 6–7 MB of it resident in about one start in six (`malloc_trim(0)` in gdb gave it back, so it was free
 * memory). A fixed 16 KB threshold puts V8's larger temporary blocks in their own mappings, returned when freed:
 * in twelve starts the process heap stayed at 2 MB. (glibc only; Windows has its own allocator.)
 */
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '16384' };
