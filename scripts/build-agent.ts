// npm run build:agent — the classroom agent as one file, dist/cfm-agent.mjs (and its .map), for `node`.
//
// The same bundle, as CommonJS, goes into the single executable (scripts/build-agent-sea.ts). Both leave out
// what the agent never runs, so that it is neither loaded nor kept in memory (bench:agent measures it):
// - mqtt.js loads every transport it has at the first connect: WebSocket (`ws`, and with it Node's http,
//   https and zlib) and the SOCKS proxy client (`socks`, with dns and assert), though the agent speaks MQTT
//   over TCP or TLS and has no proxy setting. Here they load when a `ws://`/`wss://` URL or a proxy asks for
//   them, and not before.
// - `ws` tries the native add-ons `bufferutil` and `utf-8-validate` and falls back to JavaScript when they are
//   absent; they are not installed, and a single executable can load nothing but Node's own modules (it warns
//   at every try), so the bundle has them as absent.
// The first two change mqtt.js's source as it is bundled: if a new version of it no longer has the text
// replaced, the build fails instead of bundling the eager version unnoticed.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BuildOptions, build, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The agent's entry point and the file `npm run build:agent` writes, relative to the repository. */
export const AGENT_ENTRY = 'agents/classroom/main.ts';
export const AGENT_BUNDLE = 'dist/cfm-agent.mjs';

/** `from` → `to` in a bundled file of mqtt.js, each found exactly `count` times. */
const MQTT_PATCHES: { file: RegExp; replace: [from: string, to: string, count: number][] }[] = [
  {
    file: /[\\/]mqtt[\\/]build[\\/]lib[\\/]connect[\\/]index\.js$/,
    replace: [
      [
        "require('./ws').streamBuilder;",
        "(client, opts) => require('./ws').streamBuilder(client, opts);",
        2, // ws, wss
      ],
    ],
  },
  {
    file: /[\\/]mqtt[\\/]build[\\/]lib[\\/]connect[\\/](tcp|tls)\.js$/,
    replace: [
      [
        'const socks_1 = __importDefault(require("./socks"));',
        'const socks_1 = { get default() { return __importDefault(require("./socks")).default; } };',
        1,
      ],
    ],
  },
];

const ABSENT_ADDONS = /^(bufferutil|utf-8-validate)$/;

export const agentBundlePlugin: Plugin = {
  name: 'cfm-agent-bundle',
  setup(b) {
    for (const patch of MQTT_PATCHES) {
      b.onLoad({ filter: patch.file }, (args) => {
        let text = readFileSync(args.path, 'utf8');
        for (const [from, to, count] of patch.replace) {
          const found = text.split(from).length - 1;
          if (found !== count)
            throw new Error(
              `${args.path}: expected ${count} × ${JSON.stringify(from)}, found ${found}: mqtt.js changed, update scripts/build-agent.ts`,
            );
          text = text.replaceAll(from, to);
        }
        return { contents: text, loader: 'js' };
      });
    }
    b.onResolve({ filter: ABSENT_ADDONS }, (args) => ({ path: args.path, namespace: 'cfm-absent' }));
    b.onLoad({ filter: /.*/, namespace: 'cfm-absent' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not in the agent's bundle`)});`,
      loader: 'js',
    }));
  },
};

/** esbuild's options for the agent's bundle: ESM for `node`, CommonJS for the single executable. */
export function agentBuildOptions(format: 'esm' | 'cjs', outfile: string): BuildOptions {
  return {
    entryPoints: [join(root, AGENT_ENTRY)],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format,
    minify: true,
    outfile,
    logLevel: 'warning',
    plugins: [agentBundlePlugin],
    // CommonJS modules in an ES module bundle still call require() (for Node's own modules).
    ...(format === 'esm'
      ? {
          banner: {
            js: "import { createRequire as __cfmRequire } from 'node:module'; const require = __cfmRequire(import.meta.url);",
          },
        }
      : {}),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await build({ ...agentBuildOptions('esm', join(root, AGENT_BUNDLE)), sourcemap: true });
}
