import { describe, expect, it } from 'vitest';
import {
  buildTopic,
  filters,
  isValidFilter,
  parseTopic,
  TopicError,
  topicMatches,
} from '../../contracts/topics.js';

describe('topic grammar', () => {
  it('builds and parses every channel', () => {
    for (const channel of ['status', 'telemetry', 'iface', 'event'] as const) {
      const t = buildTopic({ school: '3133001234', device: 'c0701-ops', channel });
      expect(t).toBe(`cfm/v1/3133001234/c0701-ops/${channel}`);
      expect(parseTopic(t)).toEqual({
        ok: true,
        school: '3133001234',
        device: 'c0701-ops',
        channel,
        key: '3133001234/c0701-ops',
      });
    }
  });

  it('refuses ids that would break the grammar or smuggle wildcards', () => {
    for (const bad of ['', '+', '#', 'a/b', '$SYS', 'a b', '-lead', 'x'.repeat(65), '学校', 'a\u0000b']) {
      expect(() => buildTopic({ school: bad, device: 'd', channel: 'status' }), bad).toThrow(TopicError);
      expect(() => buildTopic({ school: 's', device: bad, channel: 'status' }), bad).toThrow(TopicError);
      expect(() => filters.device('s', bad), bad).toThrow(TopicError);
    }
    expect(() => buildTopic({ school: 's', device: 'd', channel: 'nope' as 'status' })).toThrow(
      /unknown channel/,
    );
  });

  it('parses garbage into a reason, never an exception', () => {
    const cases: [string, string][] = [
      ['', 'foreign_root'],
      ['zigbee2mqtt/bridge/state', 'foreign_root'],
      ['cfm/v2/s/d/status', 'unsupported_version'],
      ['cfm/v1/s/d', 'bad_shape'],
      ['cfm/v1/s/d/status/extra', 'bad_shape'],
      ['cfm/v1/s/+/status', 'bad_id'],
      ['cfm/v1//d/status', 'bad_id'],
      ['cfm/v1/s/d/reboot', 'unknown_channel'],
    ];
    for (const [topic, reason] of cases) expect(parseTopic(topic), topic).toEqual({ ok: false, reason });
  });

  it('matches filters with MQTT semantics', () => {
    const t = 'cfm/v1/S1/D1/telemetry';
    expect(topicMatches(filters.all(), t)).toBe(true);
    expect(topicMatches(filters.all('telemetry'), t)).toBe(true);
    expect(topicMatches(filters.all('status'), t)).toBe(false);
    expect(topicMatches(filters.school('S1'), t)).toBe(true);
    expect(topicMatches(filters.school('S2'), t)).toBe(false);
    expect(topicMatches(filters.school('S1', 'telemetry'), t)).toBe(true);
    expect(topicMatches(filters.device('S1', 'D1'), t)).toBe(true);
    expect(topicMatches(filters.device('S1', 'D2'), t)).toBe(false);
    // `#` also matches the parent level (MQTT-4.7.1-2)
    expect(topicMatches('cfm/v1/S1/#', 'cfm/v1/S1')).toBe(true);
    // wildcards at the first level never match $-topics (MQTT-4.7.2-1)
    expect(topicMatches('#', '$SYS/broker/uptime')).toBe(false);
    expect(topicMatches('+/broker/uptime', '$SYS/broker/uptime')).toBe(false);
    expect(topicMatches('$SYS/#', '$SYS/broker/uptime')).toBe(true);
    expect(topicMatches('a/+', 'a/b/c')).toBe(false);
    expect(topicMatches('a/b/c', 'a/b')).toBe(false);
  });

  it('validates filters', () => {
    expect(isValidFilter(filters.shared('collectors', filters.all()))).toBe(true);
    expect(filters.shared('collectors', filters.all())).toBe('$share/collectors/cfm/v1/+/+/+');
    for (const bad of ['', 'a/#/b', 'a#', 'a/b+', 'x\u0000']) expect(isValidFilter(bad), bad).toBe(false);
  });
});
