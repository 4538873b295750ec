import { z } from 'zod';
import { teachingSitesSchema } from './sites.js';

/** `agent.activity`: where the evidence of use comes from (docs/usage.md). */
export const activityConfigSchema = z
  .discriminatedUnion('source', [
    z.strictObject({ source: z.literal('none') }),
    z.strictObject({
      source: z.literal('windows'),
      teachingSites: teachingSitesSchema,
    }),
    z.strictObject({
      source: z.literal('x11'),
      display: z
        .string()
        .min(1)
        .max(256)
        .optional()
        .describe("The X display of the classroom's session; default: the agent's `DISPLAY`, else `:0`."),
      xauthority: z
        .string()
        .min(1)
        .optional()
        .describe(
          "The session's X authority file, when the agent runs as another user (e.g. a system service).",
        ),
      timeoutMs: z
        .number()
        .int()
        .min(100)
        .max(60_000)
        .default(2_000)
        .describe('Each X tool is killed after this.'),
      teachingSites: teachingSitesSchema,
    }),
    z.strictObject({
      source: z.literal('simulated'),
      teachingSites: teachingSitesSchema,
    }),
    z.strictObject({
      source: z.literal('command'),
      command: z
        .string()
        .min(1)
        .describe('A tool printing the activity as one JSON object, run per reading.'),
      args: z.array(z.string()).default([]).describe('Arguments; no shell is involved.'),
      timeoutMs: z
        .number()
        .int()
        .min(100)
        .max(60_000)
        .default(5_000)
        .describe('The command is killed after this.'),
      teachingSites: teachingSitesSchema,
    }),
  ])
  .default({ source: 'none' })
  .describe(
    'Where the evidence of use comes from (docs/usage.md): `none`, `windows` (the Windows helper), `x11` (a Linux desktop), `simulated` (the simulated classroom, with a simulated display) or `command`.',
  );
export type ActivityConfig = z.infer<typeof activityConfigSchema>;

/** `agent.windowsHelper`: the one PowerShell process that reads activity and NIC counters on Windows. */
export const windowsHelperConfigSchema = z
  .strictObject({
    command: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Windows PowerShell; default: `%SystemRoot%\\System32\\WindowsPowerShell\\v1.0\\powershell.exe`.',
      ),
    timeoutMs: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(5_000)
      .describe('One reading; two unanswered in a row restart the helper.'),
    startTimeoutMs: z
      .number()
      .int()
      .min(1_000)
      .max(300_000)
      .default(60_000)
      .describe('From start to its first line (it compiles its C# at start).'),
    restartMaxMs: z
      .number()
      .int()
      .min(100)
      .max(3_600_000)
      .default(60_000)
      .describe('Longest wait before restarting a helper that died (from 1 s, doubling).'),
    sessionPipe: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe(
        "With `activity.source: windows`: take the activity from the session helper in the user's session, over the named pipe `<sessionPipe>-<console session id>` (Windows: `'\\\\.\\pipe\\cfm-activity'`, what install.ps1's scheduled task serves; elsewhere a Unix socket path). Unset: from the agent's own helper, which sees the user's input only when the agent runs in the user's session.",
      ),
  })
  .prefault({})
  .describe(
    'The Windows helper: one long-lived PowerShell process that reads input idle time, the foreground window, the screen and NIC byte counters (agents/sources/activity/README.md). It runs with `activity.source: windows`, and on Windows for the host NIC counters.',
  );
export type WindowsHelperConfig = z.infer<typeof windowsHelperConfigSchema>;
