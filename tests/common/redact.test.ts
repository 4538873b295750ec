import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { channelSchema } from '../../alerting/channels/index.js';
import { createLogger } from '../../common/log.js';
import {
  configFields,
  forgetSecrets,
  REDACTED,
  redactConfig,
  redactUrl,
  rememberSecrets,
  scrubError,
  scrubText,
  secret,
  secretValues,
  urlWithSecrets,
} from '../../common/redact.js';
import { ALL_SECTIONS } from '../../scripts/gen-docs.js';

const ALL = z.strictObject(ALL_SECTIONS);

/**
 * Every secret-bearing field of every config section, with how much of it is secret. A field added to a schema
 * with a secret marker must be added here, and one whose marker is lost fails here.
 */
const EXPECTED_SECRETS = {
  'influx.url': 'url',
  'influx.token': 'value',
  'influx.password': 'value',
  'collector.mqtt.url': 'url',
  'collector.mqtt.password': 'value',
  'agent.mqtt.url': 'url',
  'agent.mqtt.password': 'value',
  'agent.display{source=pjlink}.password': 'value',
  'poller.mqtt.url': 'url',
  'poller.mqtt.password': 'value',
  'poller.targets[].community': 'value',
  'poller.targets[].v3.authKey': 'value',
  'poller.targets[].v3.privKey': 'value',
  'api.mqtt.url': 'url',
  'api.mqtt.password': 'value',
  'alerts.channels[]{kind=webhook}.url': 'url-path',
  'alerts.channels[]{kind=wecom}.url': 'url',
  'alerts.channels[]{kind=dingtalk}.url': 'url',
  'alerts.channels[]{kind=dingtalk}.secret': 'value',
  'alerts.channels[]{kind=feishu}.url': 'url-path',
  'alerts.channels[]{kind=feishu}.secret': 'value',
  'alerts.channels[]{kind=email}.smtp.password': 'value',
};

/** Fields whose name sounds secret but whose value is not, each with the reason. */
const NOT_SECRET: Record<string, string> = {
  'broker.credentialsFile': 'a path to the scrypt hashes of the MQTT passwords, not a password',
  'broker.listeners[]{kind=tls}.keyFile':
    'a path: the private key stays in the file, which only the broker reads',
  'api.tokensFile': 'a path to the SHA-256 hashes of the API tokens, not a token',
  'poller.credentialsFile':
    'a path: the SNMP credentials stay in the file (mode 0600), whose own schema marks them secret',
  'api.pollerCredentialsFile': "a path: the API reads only the credential names from the pollers' file",
  'api.credentialNamesFile':
    "a path to the names-only copy of the pollers' credentials file: no secret in it",
  'alerts.linkBaseUrl': "the API's public address, printed in every notification on purpose",
  'api.alertsUrl':
    'the worker’s internal address; refuses user-info (the caller’s bearer token is forwarded instead)',
};

const SOUNDS_SECRET = /password|passwd|token|secret|key|community|credential|webhook|url|dsn/i;

describe('secret fields (the schema walk)', () => {
  const fields = configFields(ALL);

  it('finds exactly the expected secret fields', () => {
    const found = Object.fromEntries(fields.filter((f) => f.secret).map((f) => [f.path, f.secret]));
    expect(found).toEqual(EXPECTED_SECRETS);
  });

  it('marks every field whose name sounds secret, or says why not', () => {
    const unmarked = fields
      .filter((f) => !f.secret && SOUNDS_SECRET.test(f.key) && !(f.path in NOT_SECRET))
      .map((f) => f.path);
    expect(unmarked, 'mark them with secret()/urlWithSecrets() or list them in NOT_SECRET').toEqual([]);
    // The allow-list names real fields (a renamed one must not leave a stale excuse behind).
    for (const path of Object.keys(NOT_SECRET)) expect(fields.map((f) => f.path)).toContain(path);
  });

  it('keeps the marker through describe(), optional(), default() and later checks', () => {
    const s = z.strictObject({
      a: secret(z.string().min(3)).optional().describe('a'),
      b: urlWithSecrets(z.url()).default('http://h'),
      c: secret(z.string()).min(3),
    });
    expect(configFields(s).map((f) => [f.path, f.secret])).toEqual([
      ['a', 'value'],
      ['b', 'url'],
      ['c', 'value'],
    ]);
  });
});

describe('redaction', () => {
  afterEach(() => forgetSecrets());

  it('keeps scheme, host and port of a URL and hides user-info, query values, fragment and (on request) path', () => {
    expect(redactUrl('http://cfm:pw@db.example:8086')).toBe(`http://${REDACTED}@db.example:8086/`);
    expect(redactUrl('mqtts://dev:pw@broker.example:8883')).toBe(`mqtts://${REDACTED}@broker.example:8883`);
    expect(redactUrl('https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K1&debug')).toBe(
      `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${REDACTED}&${REDACTED}`,
    );
    expect(redactUrl('https://open.feishu.cn/open-apis/bot/v2/hook/T0K3N#x', { path: true })).toBe(
      `https://open.feishu.cn/${REDACTED}#${REDACTED}`,
    );
    expect(redactUrl('not a url')).toBe(REDACTED);
  });

  it('walks a config by its schema: each channel by its own kind, whatever the key names', () => {
    const channels = z.array(channelSchema).parse([
      { kind: 'webhook', name: 'w', url: 'https://hooks.example/T1/B2/XYZ?token=abc' },
      {
        kind: 'dingtalk',
        name: 'd',
        url: 'https://oapi.dingtalk.com/robot/send?access_token=AT',
        secret: 'S',
      },
      { kind: 'email', name: 'e', smtp: { host: 'smtp.example', password: 'pw' }, from: 'a@b', to: ['c@d'] },
    ]);
    const r = redactConfig(z.array(channelSchema), channels);
    expect(r[0]).toMatchObject({ url: `https://hooks.example/${REDACTED}?token=${REDACTED}` });
    expect(r[1]).toMatchObject({
      url: `https://oapi.dingtalk.com/robot/send?access_token=${REDACTED}`,
      secret: REDACTED,
    });
    expect(r[2]).toMatchObject({ smtp: { host: 'smtp.example', password: REDACTED }, from: 'a@b' });
    // The input is not touched.
    expect(channels[1]).toMatchObject({ secret: 'S' });
    // What the schema cannot describe is not shown at all.
    expect(redactConfig(z.object({ x: z.unknown() }), { x: { anything: 1 } })).toEqual({ x: REDACTED });
  });

  it('collects the secret texts of a config, to scrub them from free text', () => {
    const v = secretValues(
      z.array(channelSchema),
      z.array(channelSchema).parse([
        {
          kind: 'feishu',
          name: 'f',
          url: 'https://ops:p%2F123456@open.feishu.cn/open-apis/bot/v2/hook/0123456789abcdef?x=json',
          secret: 'sign',
        },
      ]),
    );
    expect(v).toEqual(
      expect.arrayContaining([
        'sign',
        'p%2F123456',
        'p/123456',
        'open-apis/bot/v2/hook/0123456789abcdef',
        '0123456789abcdef',
      ]),
    );
    // Not the user name, nor a short query value: they would scrub ordinary words from every log line.
    expect(v).not.toContain('ops');
    expect(v).not.toContain('json');
  });

  it('scrubs URL credentials, credential query parameters and registered secrets from text', () => {
    rememberSecrets(['registered-secret', 'abc']);
    expect(
      scrubText(
        'connect to mqtt://dev:pw@127.0.0.1:1 failed; POST https://x.example/send?access_token=AT&n=1: registered-secret abc',
      ),
    ).toBe(
      `connect to mqtt://${REDACTED}@127.0.0.1:1 failed; POST https://x.example/send?access_token=${REDACTED}&n=1: ${REDACTED} abc`,
    );
  });

  it("scrubs an error whose message is a getter (a DOMException: fetch's timeout) without throwing", () => {
    const timeout = new DOMException('gave up on http://u:hunter2-pass@db:8086/query', 'TimeoutError');
    const err = scrubError(new Error('query failed', { cause: timeout }));
    expect((err.cause as DOMException).message).toBe(`gave up on http://${REDACTED}@db:8086/query`);
    expect((err.cause as DOMException).name).toBe('TimeoutError');
    expect(scrubError(new DOMException('nothing secret', 'TimeoutError')).message).toBe('nothing secret');
  });

  it('keeps secrets out of every log line: messages, fields, errors and their causes', () => {
    const lines: string[] = [];
    const log = createLogger('t', { level: 'debug' }, { write: (s: string) => lines.push(s) });
    rememberSecrets(['S3NTINEL-1']);
    const cause = new TypeError(
      'Request cannot be constructed from a URL that includes credentials: http://u:p@h/',
    );
    log.error(new Error('delivery failed: S3NTINEL-1', { cause }));
    log.warn({ err: new Error('x', { cause }) });
    log.warn(
      { why: 'refused S3NTINEL-1', nested: { list: ['S3NTINEL-1'] }, err: 'S3NTINEL-1' },
      'at S3NTINEL-1',
    );
    log.info({ url: 'mqtt://u:p@h:1883?x=1', password: 'pw0', target: { community: 'c0mm' } }, 'ok');
    log.child({ part: 'live' }).warn({ err: new Error('S3NTINEL-1') }, 'child');
    const text = lines.join('');
    expect(text).not.toMatch(/S3NTINEL-1|u:p@|pw0|c0mm/);
    expect(lines).toHaveLength(5);
    const [first, , third, fourth] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(first!.msg).toBe(`delivery failed: ${REDACTED}`);
    expect(third).toMatchObject({ why: `refused ${REDACTED}`, msg: `at ${REDACTED}` });
    expect(fourth).toMatchObject({ url: `mqtt://${REDACTED}@h:1883?x=${REDACTED}`, password: REDACTED });
  });
});
