import { z } from 'zod';
import { type Activity, activitySchema } from '../../../contracts/messages.js';
import { type CommandSourceOptions, runJsonCommand } from '../command.js';
import { type ActivitySource, executableName } from './activity.js';

/**
 * Activity from a tool of the operator's choosing (a vendor's 集控 client, a script): run without a shell per
 * reading, it prints one JSON object — `idleS`, `foreground` (an executable name; a path is cut to its name),
 * `screenOn`, and `title`, the foreground window's title, which is matched against the teaching sites here and
 * never sent. Anything else is an error naming the command, the field and the reason.
 */
const commandOutputSchema = z.object({
  idleS: activitySchema.shape.idleS,
  foreground: z.string().max(1_024).optional(),
  title: z.string().max(4_096).optional(),
  screenOn: activitySchema.shape.screenOn,
});

export class CommandActivity implements ActivitySource {
  readonly kind = 'command';

  constructor(
    private readonly opts: CommandSourceOptions & {
      match: (title: string | undefined) => string | undefined;
    },
  ) {}

  async read(): Promise<Activity> {
    const value = await runJsonCommand('activity', this.opts);
    const r = commandOutputSchema.safeParse(value);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new Error(`activity command ${this.opts.command}: ${i.path.join('.') || '(root)'}: ${i.message}`);
    }
    const a: Activity = { source: 'command' };
    if (r.data.idleS !== undefined) a.idleS = r.data.idleS;
    if (r.data.foreground !== undefined) {
      const name = executableName(r.data.foreground);
      if (!name) {
        throw new Error(
          `activity command ${this.opts.command}: foreground: must be an executable name: ${JSON.stringify(r.data.foreground.slice(0, 80))}`,
        );
      }
      a.foreground = name;
    }
    const site = this.opts.match(r.data.title);
    if (site) a.teachingSite = site;
    if (r.data.screenOn !== undefined) a.screenOn = r.data.screenOn;
    return a;
  }
}
