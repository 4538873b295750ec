// The console, bundled with esbuild into console/dist (committed, like the generated dashboards, so the API
// serves it without a build step): `npm run gen:console`. tests/console/build.test.ts checks dist is current.
import { build } from 'esbuild';

export async function buildConsole(outdir = new URL('./dist/', import.meta.url).pathname, write = true) {
  return build({
    entryPoints: { app: new URL('./src/main.tsx', import.meta.url).pathname },
    bundle: true,
    format: 'esm',
    target: ['chrome100', 'firefox100', 'safari15'],
    minify: true,
    legalComments: 'none',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir,
    write,
    logLevel: 'silent',
  });
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  await buildConsole();
  process.stdout.write('wrote console/dist/app.js, console/dist/app.css\n');
}
