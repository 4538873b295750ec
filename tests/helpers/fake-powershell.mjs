#!/usr/bin/env node
// Stands in for powershell.exe in the tests of the Windows helper (agents/sources/activity/windows.ts), which
// start it as `agent.windowsHelper.command` with the arguments powershell.exe gets. It speaks the helper's line
// protocol — one `read <id>` line in, one JSON line out — replaying lines recorded from the helper
// (tests/fixtures/windows/*.jsonl: the hello, then answers, their `id` replaced by the request's), or doing
// what the test's plan says instead. Environment:
//   FAKE_PS_FIXTURE   the .jsonl file to replay
//   FAKE_PS_PLAN      a JSON file: { "starts": [plan of the 1st start, of the 2nd, …] } (the last repeats);
//                     a plan: { "hello": "fixture" | "<raw line>" | null (say nothing),
//                               "exitAtStart": code, "stderr": "text written before anything else",
//                               "ignoreEnd": true (keeps running at end of input, like a hung helper),
//                               "steps": [step per request (the last repeats)] }
//                     a step: { "replay": true } | { "raw": "<line, sent as is>" } | { "bytes": n } (n bytes
//                     of `x`, then a newline) | { "exit": code } | { "silent": true } (no answer) |
//                     { "delayMs": n } (the replayed answer, n ms late)
//   FAKE_PS_LOG       a file this process appends `start <pid>` to when it starts
//   FAKE_PS_SCRIPT    a file this process writes the script decoded from -EncodedCommand to
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const env = process.env;
let starts = 0;
if (env.FAKE_PS_LOG) {
  try {
    starts = readFileSync(env.FAKE_PS_LOG, 'utf8').split('\n').filter(Boolean).length;
  } catch {}
  appendFileSync(env.FAKE_PS_LOG, `start ${process.pid}\n`);
}
const args = process.argv.slice(2);
const enc = args.indexOf('-EncodedCommand');
if (env.FAKE_PS_SCRIPT && enc >= 0) {
  writeFileSync(env.FAKE_PS_SCRIPT, Buffer.from(args[enc + 1] ?? '', 'base64').toString('utf16le'));
}
const planFile = env.FAKE_PS_PLAN ? JSON.parse(readFileSync(env.FAKE_PS_PLAN, 'utf8')) : { starts: [{}] };
const plan = planFile.starts[Math.min(starts, planFile.starts.length - 1)];
const recorded = env.FAKE_PS_FIXTURE
  ? readFileSync(env.FAKE_PS_FIXTURE, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
  : [];
const say = (line) => process.stdout.write(`${line}\n`);

if (plan.stderr) process.stderr.write(`${plan.stderr}\n`);
if (plan.exitAtStart !== undefined) process.exit(plan.exitAtStart);
const hello = plan.hello === undefined ? 'fixture' : plan.hello;
if (hello === 'fixture') say(recorded[0]);
else if (hello !== null) say(hello);

let answered = 0;
let request = 0;
const steps = plan.steps ?? [{ replay: true }];
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = /^read (\d+)$/.exec(line);
  const step = steps[Math.min(request++, steps.length - 1)];
  if (step.exit !== undefined) process.exit(step.exit);
  if (step.silent) return;
  if (step.raw !== undefined) return say(step.raw);
  if (step.bytes !== undefined) return say('x'.repeat(step.bytes));
  if (!m) return say(JSON.stringify({ id: null, error: 'unknown request' }));
  const answers = recorded.slice(1);
  const answer = JSON.parse(answers[answered++ % answers.length]);
  const send = () => say(JSON.stringify({ ...answer, id: Number(m[1]) }));
  if (step.delayMs) setTimeout(send, step.delayMs);
  else send();
});
// At end of input the real helper's loop ends and PowerShell exits: so does this.
process.stdin.on('end', () => {
  if (plan.ignoreEnd) setInterval(() => {}, 60_000);
  else process.exit(0);
});
