#!/usr/bin/env node
// Stands in for powershell.exe in the tests of the Windows helper (agents/sources/activity/windows.ts), which
// start it as `agent.windowsHelper.command` with the arguments powershell.exe gets, and for the session helper
// (FAKE_PS_LISTEN: the pipe server a scheduled task starts in the user's session; on Linux a Unix socket). It
// speaks the helper's line protocol — one `read <id>` line in, one JSON line out — replaying lines recorded
// from the helper (tests/fixtures/windows/*.jsonl: the hello, then answers, their `id` replaced by the
// request's), or doing what the test's plan says instead. Environment:
//   FAKE_PS_FIXTURE   the .jsonl file to replay
//   FAKE_PS_PLAN      a JSON file: { "starts": [plan of the 1st start, of the 2nd, …] } (the last repeats);
//                     as a server, one plan per connection;
//                     a plan: { "hello": "fixture" | "<raw line>" | null (say nothing),
//                               "exitAtStart": code, "stderr": "text written before anything else",
//                               "ignoreEnd": true (keeps running at end of input, like a hung helper),
//                               "steps": [step per request (the last repeats)] }
//                     a step: { "replay": true } | { "raw": "<line, sent as is>" } | { "bytes": n } (n bytes
//                     of `x`, then a newline) | { "exit": code } (the process ends: the server goes away) |
//                     { "drop": true } (as a server: this connection is closed) | { "silent": true } (no answer)
//                     | { "delayMs": n } (the replayed answer, n ms late) | { "flood": n } (n answers to no
//                     request, then the answer)
//   FAKE_PS_LISTEN    serve the protocol on this Unix socket path, one connection at a time, instead of stdio
//   FAKE_PS_LOG       a file this process appends to: `start <pid>` when it starts; as a server, `listen <pid>`
//                     once listening, then `connect <n>` and `close <n>` for each connection
//   FAKE_PS_SCRIPT    a file this process writes the script decoded from -EncodedCommand to
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

const env = process.env;
const log = (line) => env.FAKE_PS_LOG && appendFileSync(env.FAKE_PS_LOG, `${line}\n`);
let starts = 0;
if (env.FAKE_PS_LOG) {
  try {
    starts = readFileSync(env.FAKE_PS_LOG, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('start ')).length;
  } catch {}
  log(`start ${process.pid}`);
}
const args = process.argv.slice(2);
const enc = args.indexOf('-EncodedCommand');
if (env.FAKE_PS_SCRIPT && enc >= 0) {
  writeFileSync(env.FAKE_PS_SCRIPT, Buffer.from(args[enc + 1] ?? '', 'base64').toString('utf16le'));
}
const planFile = env.FAKE_PS_PLAN ? JSON.parse(readFileSync(env.FAKE_PS_PLAN, 'utf8')) : { starts: [{}] };
const planOf = (n) => planFile.starts[Math.min(n, planFile.starts.length - 1)];
const recorded = env.FAKE_PS_FIXTURE
  ? readFileSync(env.FAKE_PS_FIXTURE, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
  : [];
const answers = recorded.slice(1);

/** The helper's side of the protocol on one input and output, as `plan` says; `close` ends this output. */
function serve(input, output, plan, close) {
  const say = (line) => output.write(`${line}\n`);
  const hello = plan.hello === undefined ? 'fixture' : plan.hello;
  if (hello === 'fixture') say(recorded[0]);
  else if (hello !== null) say(hello);
  let request = 0;
  let answered = 0; // each connection replays from the first answer
  const nextAnswer = () => JSON.parse(answers[answered++ % answers.length]);
  const steps = plan.steps ?? [{ replay: true }];
  const lines = createInterface({ input });
  // A client that resets the connection (the agent dropping a squatter): readline re-emits the socket's error.
  lines.on('error', () => {});
  lines.on('line', (line) => {
    const m = /^read (\d+)$/.exec(line);
    const step = steps[Math.min(request++, steps.length - 1)];
    if (step.exit !== undefined) process.exit(step.exit);
    if (step.drop) return close();
    if (step.silent) return;
    if (step.raw !== undefined) return say(step.raw);
    if (step.bytes !== undefined) return say('x'.repeat(step.bytes));
    if (!m) return say(JSON.stringify({ id: null, error: 'unknown request' }));
    for (let i = 0; i < (step.flood ?? 0); i++) say(JSON.stringify({ ...JSON.parse(answers[0]), id: 0 }));
    const answer = nextAnswer();
    const send = () => say(JSON.stringify({ ...answer, id: Number(m[1]) }));
    if (step.delayMs) setTimeout(send, step.delayMs);
    else send();
  });
}

const first = planOf(starts);
if (first.stderr) process.stderr.write(`${first.stderr}\n`);
if (first.exitAtStart !== undefined) process.exit(first.exitAtStart);

if (env.FAKE_PS_LISTEN) {
  const path = env.FAKE_PS_LISTEN;
  rmSync(path, { force: true });
  let connections = 0;
  // One connection at a time, as the session helper's one pipe instance: a second waits for the first to end.
  const server = createServer({ allowHalfOpen: true }, (conn) => {
    const n = connections++;
    const plan = planOf(n);
    log(`connect ${n}`);
    conn.on('close', () => log(`close ${n}`));
    conn.on('error', () => {});
    conn.on('end', () => {
      if (!plan.ignoreEnd) conn.end();
    });
    serve(conn, conn, plan, () => conn.destroy());
  });
  server.maxConnections = 1;
  server.listen(path, () => log(`listen ${process.pid}`));
  process.on('SIGTERM', () => process.exit(0));
} else {
  serve(process.stdin, process.stdout, first, () => process.exit(0));
  // At end of input the real helper's loop ends and PowerShell exits: so does this.
  process.stdin.on('end', () => {
    if (first.ignoreEnd) setInterval(() => {}, 60_000);
    else process.exit(0);
  });
}
