import type { Logger } from 'pino';

/** Constructors only assign; `start()` connects; `stop()` undoes everything `start()` did. */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts services in order and stops them in reverse on SIGTERM/SIGINT, so a collector drains MQTT before its
 * storage flushes. A second signal while stopping exits at once. A failed start stops what had started.
 */
export async function runServices(services: Service[], log: Logger): Promise<void> {
  const started: Service[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ why }, 'stopping');
      for (const s of [...started].reverse()) {
        try {
          await s.stop();
          log.info({ service: s.name }, 'stopped');
        } catch (err) {
          log.error({ err, service: s.name }, 'stop failed');
        }
      }
    })();
    return stopping;
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ sig }, 'second signal: exiting without waiting');
      process.exit(130);
    }
    // process.exit() keeps an exit code a service set before signalling itself (e.g. a fatal storage error).
    void stopAll(sig).then(() => process.exit());
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    for (const s of services) {
      await s.start();
      started.push(s);
      log.info({ service: s.name }, 'started');
    }
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    await stopAll('start-up failed');
    process.exitCode = 1;
    throw err;
  }
}
