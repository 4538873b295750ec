/**
 * V8 flags the agent runs with (deploy unit files, bench:agent). A cap on the old generation turns a leak into
 * a crash and a restart by the service manager instead of a classroom PC slowly running out of memory. (Smaller
 * young generations, --optimize-for-size and malloc arena limits were measured and did not lower RSS.)
 */
export const AGENT_NODE_FLAGS = ['--max-old-space-size=64'];
