import { describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../events/envelope.ts';
import { LangGraphMapper, type StreamMode, StreamModeParam } from './langgraph.ts';

const RUN = { run_id: 'r1', thread_id: 't1' };

function envelopes(parts: Array<[channel: string, data: unknown]>): EventEnvelope[] {
  return parts.map(([channel, data], i) => ({
    seq: i + 1,
    event_id: `e${i + 1}`,
    thread_id: RUN.thread_id,
    run_id: RUN.run_id,
    attempt: 1,
    ts: '2026-01-01T00:00:00.000Z',
    channel,
    namespace: [],
    data,
  }));
}

function mapAll(modes: StreamMode[], events: EventEnvelope[]) {
  const mapper = new LangGraphMapper(modes, RUN);
  return events.flatMap((e) => mapper.map(e));
}

const started = ['lifecycle', { event: 'run.started', status: 'running', attempt: 1 }] as [string, unknown];
const succeeded = (output: unknown): [string, unknown] => [
  'lifecycle',
  { event: 'run.completed', status: 'success', terminal: true, output },
];

const STEPS = envelopes([
  started,
  ['updates', { fetch: 1 }],
  ['custom', { progress: 0.5 }],
  ['values', { count: 1 }],
  ['audit.trail', { note: 'own channel' }],
  succeeded({ ok: true }),
]);

const MESSAGE = envelopes([
  ['messages', { event: 'message-start', role: 'ai', id: 'm1', metadata: { model: 'mock' } }],
  ['messages', { event: 'content-block-start', index: 0, content: { type: 'text', text: '' } }],
  ['messages', { event: 'content-block-delta', index: 0, delta: { type: 'text-delta', text: 'Hel' } }],
  ['messages', { event: 'content-block-delta', index: 0, delta: { type: 'text-delta', text: 'lo' } }],
  ['messages', { event: 'content-block-finish', index: 0, content: { type: 'text', text: 'Hello' } }],
  [
    'messages',
    { event: 'message-finish', reason: 'stop', usage: { inputTokens: 3, outputTokens: 2, totalTokens: 5 } },
  ],
]);

describe('LangGraph stream mapping', () => {
  it('maps each channel to the modes asked for, and ends with end', () => {
    expect(mapAll(['values', 'updates', 'custom'], STEPS)).toEqual([
      { event: 'updates', data: { fetch: 1 } },
      { event: 'custom', data: { progress: 0.5 } },
      { event: 'values', data: { count: 1 } },
      { event: 'end', data: { run_id: 'r1', status: 'success' } },
    ]);
    expect(mapAll(['updates'], STEPS).map((e) => e.event)).toEqual(['updates', 'end']);
  });

  it('defaults to values when no mode is given', () => {
    expect(mapAll([], STEPS).map((e) => e.event)).toEqual(['values', 'end']);
  });

  it('sends the run output as the final values when the run emitted none', () => {
    expect(mapAll(['values'], envelopes([started, succeeded({ answer: 42 })]))).toEqual([
      { event: 'values', data: { answer: 42 } },
      { event: 'end', data: { run_id: 'r1', status: 'success' } },
    ]);
    expect(mapAll(['values'], envelopes([started, succeeded('hi')]))[0]).toEqual({
      event: 'values',
      data: { output: 'hi' },
    });
    // Values not asked for: no final value.
    expect(mapAll(['updates'], envelopes([started, succeeded(1)])).map((e) => e.event)).toEqual(['end']);
  });

  it('turns a failed run into an error event named like wait does', () => {
    const failed = envelopes([
      started,
      [
        'lifecycle',
        {
          event: 'run.completed',
          status: 'error',
          terminal: true,
          error: { code: 'agent_error', type: 'TypeError', message: 'boom' },
        },
      ],
    ]);
    expect(mapAll(['values'], failed)).toEqual([
      { event: 'error', data: { error: 'TypeError', message: 'boom' } },
      { event: 'end', data: { run_id: 'r1', status: 'error' } },
    ]);
    const timedOut = envelopes([
      ['lifecycle', { event: 'run.completed', status: 'timeout', terminal: true }],
    ]);
    expect(mapAll(['values'], timedOut)[0]).toEqual({
      event: 'error',
      data: { error: 'timeout', message: 'run r1 ended with status timeout' },
    });
  });

  it('sends every envelope as is under events', () => {
    const mapped = mapAll(['events'], STEPS).filter((e) => e.event === 'events');
    expect(mapped.map((e) => e.data)).toEqual(STEPS);
  });

  it('streams message text as AIMessageChunk tuples, usage on the last chunk', () => {
    const meta = { tags: [], model: 'mock', run_id: 'r1', thread_id: 't1' };
    expect(mapAll(['messages-tuple'], MESSAGE)).toEqual([
      { event: 'messages', data: [{ type: 'AIMessageChunk', id: 'm1', content: 'Hel' }, meta] },
      { event: 'messages', data: [{ type: 'AIMessageChunk', id: 'm1', content: 'lo' }, meta] },
      {
        event: 'messages',
        data: [
          {
            type: 'AIMessageChunk',
            id: 'm1',
            content: '',
            response_metadata: { finish_reason: 'stop' },
            usage_metadata: { input_tokens: 3, output_tokens: 2, total_tokens: 5 },
          },
          meta,
        ],
      },
    ]);
  });

  it('streams messages mode as metadata, partial messages so far, then the complete one', () => {
    const mapped = mapAll(['messages'], MESSAGE);
    expect(mapped.map((e) => e.event)).toEqual([
      'messages/metadata',
      'messages/partial',
      'messages/partial',
      'messages/complete',
    ]);
    expect(mapped[0]?.data).toEqual({ m1: { metadata: { model: 'mock', run_id: 'r1', thread_id: 't1' } } });
    expect(mapped[2]?.data).toEqual([{ type: 'ai', id: 'm1', content: 'Hello' }]);
    expect(mapped[3]?.data).toEqual([
      {
        type: 'ai',
        id: 'm1',
        content: 'Hello',
        response_metadata: { finish_reason: 'stop' },
        usage_metadata: { input_tokens: 3, output_tokens: 2, total_tokens: 5 },
      },
    ]);
  });

  it('parses stream_mode as one mode or a list and refuses unknown modes', () => {
    expect(StreamModeParam.parse('updates')).toEqual(['updates']);
    expect(StreamModeParam.parse(['values', 'custom', 'values'])).toEqual(['values', 'custom']);
    expect(StreamModeParam.safeParse('debug').success).toBe(false);
    expect(StreamModeParam.safeParse([]).success).toBe(false);
  });
});
