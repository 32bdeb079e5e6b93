import { describe, expect, it } from 'vitest';
import { HangarError } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import {
  errorResponse,
  filterOfId,
  matches,
  ProtocolError,
  parseParams,
  SubscribeParams,
  subscriptionId,
  toFilter,
  toProtocolEvent,
} from './protocol.ts';

const envelope = (channel: string, data: unknown, extra: Partial<EventEnvelope> = {}): EventEnvelope => ({
  seq: 7,
  event_id: 'e',
  thread_id: 't',
  run_id: 'r1',
  attempt: 1,
  ts: '2026-01-01T00:00:00.000Z',
  channel,
  namespace: [],
  data,
  ...extra,
});

describe('toProtocolEvent', () => {
  it('frames an event with eventId = seq, the run and a timestamp in ms', () => {
    const { channel, event } = toProtocolEvent(envelope('values', { a: 1 }));
    expect(channel).toBe('values');
    expect(event).toEqual({
      type: 'event',
      eventId: '7',
      seq: 7,
      runId: 'r1',
      method: 'values',
      params: { namespace: [], timestamp: Date.parse('2026-01-01T00:00:00.000Z'), data: { a: 1 } },
    });
  });

  it('maps Hangar channels to the spec methods', () => {
    const map = (channel: string, data: unknown) => {
      const { channel: c, event } = toProtocolEvent(envelope(channel, data));
      return [c, event.method, event.params.data];
    };
    const delta = { event: 'content-block-delta', index: 0, delta: { type: 'text-delta', text: 'hi' } };
    expect(map('messages', delta)).toEqual(['messages', 'messages', delta]);
    expect(map('updates', { greet: 'x' })).toEqual([
      'updates',
      'updates',
      { node: 'greet', values: { greet: 'x' } },
    ]);
    expect(map('custom', { i: 1 })).toEqual(['custom', 'custom', { payload: { i: 1 } }]);
    expect(map('progress', 3)).toEqual([
      'custom:progress',
      'custom:progress',
      { name: 'progress', payload: 3 },
    ]);
    expect(map('input', { event: 'input.requested', interruptId: 'i1', payload: { q: 1 } })).toEqual([
      'input',
      'input.requested',
      { interruptId: 'i1', payload: { q: 1 } },
    ]);
  });

  it('maps lifecycle events to AgentStatus and passes the output.discarded marker through', () => {
    const life = (data: unknown) => toProtocolEvent(envelope('lifecycle', data)).event.params.data;
    expect(life({ event: 'run.started', status: 'running', attempt: 2 })).toEqual({
      event: 'started',
      runId: 'r1',
      attempt: 2,
    });
    expect(life({ event: 'run.interrupted', status: 'interrupted', interrupt_id: 'i1' })).toEqual({
      event: 'interrupted',
      runId: 'r1',
      interruptId: 'i1',
    });
    expect(life({ event: 'run.completed', status: 'success', terminal: true, output: 5 })).toEqual({
      event: 'completed',
      runId: 'r1',
      status: 'success',
      output: 5,
      terminal: true,
    });
    expect(
      life({
        event: 'run.completed',
        status: 'error',
        terminal: true,
        error: { code: 'agent_error', message: 'boom' },
      }),
    ).toMatchObject({ event: 'failed', status: 'error', error: 'boom', terminal: true });
    const marker = {
      event: 'output.discarded',
      run_id: 'r1',
      after_seq: 3,
      reason: 'retry',
      attempt: 1,
      step: 's',
    };
    expect(life(marker)).toEqual(marker);
  });
});

describe('filters', () => {
  it('matches channels (custom covers custom:*), namespace prefixes and depth', () => {
    const all = toFilter({ channels: ['custom', 'lifecycle'] });
    expect(matches(all, 'custom:progress', ['a', 'b'])).toBe(true);
    expect(matches(all, 'values', [])).toBe(false);
    const scoped = toFilter({ channels: ['messages'], namespaces: [['a']], depth: 1 });
    expect(matches(scoped, 'messages', ['a'])).toBe(true);
    expect(matches(scoped, 'messages', ['a', 'b'])).toBe(true);
    expect(matches(scoped, 'messages', ['a', 'b', 'c'])).toBe(false);
    expect(matches(scoped, 'messages', ['b'])).toBe(false);
    expect(matches(scoped, 'messages', [])).toBe(false);
  });

  it('round-trips a filter through its subscription id, and refuses ids that are not ours', () => {
    const filter = toFilter({ channels: ['values', 'custom:x'], namespaces: [['a', 'b']], depth: 2 });
    expect(filterOfId(subscriptionId(filter))).toEqual(filter);
    expect(filterOfId(`${subscriptionId(filter)}#2`)).toEqual(filter);
    for (const bad of [
      'x',
      's1.',
      's1.@@',
      `s1.${Buffer.from('{"c":["bogus"],"n":[]}').toString('base64url')}`,
    ]) {
      expect(() => filterOfId(bad)).toThrow(ProtocolError);
    }
  });
});

describe('errors', () => {
  it('names the field of bad params', () => {
    expect(() => parseParams(SubscribeParams, { channels: ['values', 'nope'] })).toThrow(
      expect.objectContaining({
        error: 'invalid_argument',
        extra: expect.objectContaining({ field: 'params.channels.1' }),
      }),
    );
  });

  it('maps Hangar errors to spec codes, keeping the Hangar code and details; hides internals', () => {
    const conflict = new HangarError('conflict', 'already answered', { details: { answer: 1 } });
    expect(errorResponse(3, conflict)).toEqual({
      type: 'error',
      id: 3,
      error: 'invalid_argument',
      message: 'already answered',
      code: 'conflict',
      details: { answer: 1 },
    });
    expect(errorResponse(null, new Error('secret stack'))).toEqual({
      type: 'error',
      id: null,
      error: 'unknown_error',
      message: 'internal server error',
      code: 'internal',
    });
  });
});
