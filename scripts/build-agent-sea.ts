// npm run build:agent:sea [-- --node FILE] [--out FILE] [--package DIR --winsw FILE]
//
// The classroom agent as one executable: Node.js's single executable application (SEA, nodejs.org/api/sea.html,
// Node ≥ 20), the agent's bundle embedded in a copy of a `node` binary. Steps, all offline:
//
//   1. esbuild agents/classroom/main.ts → dist/sea/cfm-agent.cjs: the same bundle as `npm run build:agent`
//      (scripts/build-agent.ts), as CommonJS (Node 20's SEA runs one CommonJS script; its `require` loads built-in modules only, so
//      everything else must be in the bundle — esbuild fails on anything it cannot bundle).
//   2. node --experimental-sea-config dist/sea/sea-config.json → dist/sea/sea-prep.blob. Without a code cache
//      or a snapshot, the blob is the same for every platform (the only thing that may be built on another
//      system than the one it runs on); it must come from the same Node.js version as the binary it goes into,
//      which is checked.
//   3. A copy of the binary (`--node`, default this Node: a Linux executable for tests and bench:agent; for
//      Windows a `node.exe` of the same version from the official `node-vX.Y.Z-win-x64.zip`, its signature
//      removed) with the blob injected by postject into the resource Node looks for (NODE_SEA_BLOB), and the
//      fuse flipped.
//
// `--package DIR` also lays out the Windows package (docs/deploy-windows-agent.md): the executable, the service
// wrapper (WinSW, `--winsw`: it cannot be downloaded here), its XML, the install script and an example config.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { inject } from 'postject';
import { SESSION_HELPER_SCRIPT } from '../agents/sources/activity/windows-script.js';
import { agentBuildOptions } from './build-agent.js';

/** The sentinel Node's SEA support looks for, and flips to :1 when a blob is injected (src/node_sea.cc). */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The version of a Node.js binary of any platform, from the headers URL every official build carries. */
export function binaryNodeVersion(binary: Buffer): string | undefined {
  const at = binary.indexOf('-headers.tar.gz');
  if (at < 0) return undefined;
  return /node-v(\d+\.\d+\.\d+)$/.exec(binary.toString('latin1', Math.max(0, at - 40), at))?.[1];
}

/**
 * A Windows executable without its Authenticode signature, as `signtool remove /s` leaves it (nodejs.org/api/
 * sea.html: remove it before injecting). Injecting into a signed node.exe would keep a signature that no longer
 * matches: worse than none, for antivirus products and for the bureau's own signing. The certificate table is
 * the last thing in the file (PE format, "The Attribute Certificate Table"): it is cut off, and its data
 * directory entry and the header checksum are zeroed. Anything that is not a PE file is returned as it is.
 */
export function stripAuthenticode(exe: Buffer): Buffer {
  if (exe.length < 0x40 || exe.readUInt16LE(0) !== 0x5a4d) return exe; // 'MZ'
  const pe = exe.readUInt32LE(0x3c);
  if (pe + 24 + 2 > exe.length || exe.readUInt32LE(pe) !== 0x4550)
    throw new Error('not a PE file: no PE header');
  const optional = pe + 24;
  const magic = exe.readUInt16LE(optional);
  if (magic !== 0x20b && magic !== 0x10b) throw new Error(`not a PE file: optional header magic ${magic}`);
  const security = optional + (magic === 0x20b ? 112 : 96) + 4 * 8; // data directory 4: the certificate table
  if (security + 8 > exe.length) throw new Error('not a PE file: no data directories');
  const offset = exe.readUInt32LE(security);
  const size = exe.readUInt32LE(security + 4);
  if (size === 0) return exe;
  if (offset + size !== exe.length)
    throw new Error(
      'the certificate table is not at the end of the file: remove the signature with signtool',
    );
  const out = Buffer.from(exe.subarray(0, offset));
  out.writeUInt32LE(0, security);
  out.writeUInt32LE(0, security + 4);
  out.writeUInt32LE(0, optional + 64); // CheckSum
  return out;
}

export interface SeaBuild {
  /** The executable written. */
  executable: string;
  bundle: string;
  blob: string;
}

/** Steps 1–3 above. */
export async function buildAgentSea(
  opts: { node?: string; out?: string; workDir?: string } = {},
): Promise<SeaBuild> {
  const node = resolve(opts.node ?? process.execPath);
  const windows = node.toLowerCase().endsWith('.exe');
  const dir = resolve(opts.workDir ?? join(root, 'dist/sea'));
  const out = resolve(opts.out ?? join(dir, windows ? 'cfm-agent.exe' : 'cfm-agent'));
  mkdirSync(dir, { recursive: true });
  mkdirSync(dirname(out), { recursive: true });

  const binary = readFileSync(node);
  const version = binaryNodeVersion(binary);
  if (version !== process.versions.node)
    throw new Error(
      `${node} is Node.js ${version ?? '(unknown version)'}, this build runs on ${process.versions.node}: the blob must be made by the same version (run the build with that version, or take the node binary of this one)`,
    );
  if (!binary.includes(`${SEA_FUSE}:0`))
    throw new Error(
      `${node} has no unused single-executable fuse (${SEA_FUSE}:0): not an official Node.js ≥ 20 build, or already an executable with a blob`,
    );

  const bundle = join(dir, 'cfm-agent.cjs');
  await build(agentBuildOptions('cjs', bundle));

  const blob = join(dir, 'sea-prep.blob');
  const config = join(dir, 'sea-config.json');
  writeFileSync(
    config,
    `${JSON.stringify(
      {
        main: bundle,
        output: blob,
        // Both must be off for a blob made on one platform and run on another (nodejs.org/api/sea.html).
        useSnapshot: false,
        useCodeCache: false,
        disableExperimentalSEAWarning: true,
      },
      null,
      2,
    )}\n`,
  );
  try {
    execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`node --experimental-sea-config: ${(err as { stderr?: Buffer }).stderr ?? err}`);
  }

  rmSync(out, { force: true });
  writeFileSync(out, stripAuthenticode(binary));
  chmodSync(out, 0o755);
  await inject(out, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE });
  return { executable: out, bundle, blob };
}

/** The files of the Windows package, by their name in it, and where they come from in the repository. */
export const WINDOWS_PACKAGE_FILES = {
  'install.ps1': 'deploy/windows/install.ps1',
  'cfm-agent-service.xml': 'deploy/windows/cfm-agent-service.xml',
  'agent.yaml': 'deploy/examples/agent-windows.yaml',
} as const;

/**
 * The files of the Windows package written from the agent's code: the session helper, which install.ps1's
 * scheduled task runs in each user's session (agents/sources/activity/README.md, "Sessions"). With a UTF-8
 * byte-order mark, so that Windows PowerShell 5.1 reads it as UTF-8 even when run with -File (it is ASCII).
 */
export const WINDOWS_PACKAGE_GENERATED = {
  'cfm-session-helper.ps1': () => `\ufeff${SESSION_HELPER_SCRIPT}`,
} as const;

/** Lays out the Windows package in `dir`: the executable, WinSW as cfm-agent-service.exe, and the files above. */
export function windowsPackage(dir: string, executable: string, winsw: string | undefined): string[] {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(executable, join(dir, 'cfm-agent.exe'));
  for (const [name, from] of Object.entries(WINDOWS_PACKAGE_FILES))
    copyFileSync(join(root, from), join(dir, name));
  for (const [name, text] of Object.entries(WINDOWS_PACKAGE_GENERATED))
    writeFileSync(join(dir, name), text());
  if (winsw) copyFileSync(winsw, join(dir, 'cfm-agent-service.exe'));
  return [
    'cfm-agent.exe',
    ...Object.keys(WINDOWS_PACKAGE_FILES),
    ...Object.keys(WINDOWS_PACKAGE_GENERATED),
    ...(winsw ? ['cfm-agent-service.exe'] : []),
  ];
}

/** The command line: what to build, checked before anything is built. */
export function seaCommandLine(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string' },
      out: { type: 'string' },
      package: { type: 'string' },
      winsw: { type: 'string' },
    },
  });
  if (values.package !== undefined) {
    if (!values.node?.toLowerCase().endsWith('.exe'))
      throw new Error('--package lays out the Windows package: give --node a node.exe');
    if (!values.winsw) throw new Error('--package needs --winsw WinSW-x64.exe (the service wrapper)');
    if (!existsSync(values.winsw)) throw new Error(`--winsw ${values.winsw}: no such file`);
  }
  return values;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const values = seaCommandLine(process.argv.slice(2));
    const made = await buildAgentSea({ node: values.node, out: values.out });
    if (values.package) {
      const files = windowsPackage(resolve(values.package), made.executable, values.winsw);
      process.stdout.write(`${resolve(values.package)}: ${files.join(', ')}\n`);
    } else process.stdout.write(`${made.executable} (${basename(made.bundle)} in ${basename(made.blob)})\n`);
  } catch (err) {
    process.stderr.write(`build-agent-sea: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
