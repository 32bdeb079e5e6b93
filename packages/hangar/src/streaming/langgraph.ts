import { z } from 'zod';
import type { RunErrorRecord } from '../errors.ts';
import { type EventEnvelope, isTerminalEvent, type LifecycleData } from '../events/envelope.ts';

/**
 * The LangGraph `stream_mode`s Hangar can serve. The SDK's other modes
 * (`debug`, `tasks`, `checkpoints`, `tools`, `lifecycle`) have no Hangar
 * counterpart yet and are refused with a 400 rather than silently empty.
 */
export const STREAM_MODES = ['values', 'updates', 'custom', 'messages', 'messages-tuple', 'events'] as const;
export type StreamMode = (typeof STREAM_MODES)[number];

const Mode = z.enum(STREAM_MODES);

/** `stream_mode` as a body field or query parameter: one mode or a list, deduplicated. */
export const StreamModeParam = z
  .union([Mode, z.array(Mode).min(1)])
  .transform((value): StreamMode[] => [...new Set(Array.isArray(value) ? value : [value])]);

/** LangGraph's default when a client asks for no mode. */
export const DEFAULT_STREAM_MODES: readonly StreamMode[] = ['values'];

/** One SSE event as the LangGraph SDK reads it (`event:` name and JSON `data:`). */
export interface LangGraphEvent {
  event: string;
  data: unknown;
}

interface MessageState {
  id: string;
  metadata: Record<string, unknown>;
  text: string;
}

/**
 * Maps a run's Hangar event envelopes, in seq order, to the LangGraph SSE
 * events of the requested stream modes:
 *
 * | Hangar channel                 | mode             | LangGraph event                                                      |
 * | ------------------------------ | ---------------- | -------------------------------------------------------------------- |
 * | `values`                       | `values`         | `values` (the thread state)                                          |
 * | `updates`                      | `updates`        | `updates` (`{ [step]: result }`)                                     |
 * | `custom`                       | `custom`         | `custom` (what `ctx.emit('custom', …)` sent)                         |
 * | `messages` text deltas         | `messages-tuple` | `messages`: `[AIMessageChunk, metadata]`, the delta as `content`     |
 * | `messages` `message-finish`    | `messages-tuple` | a last empty chunk with `usage_metadata` and `response_metadata`     |
 * | `messages` `message-start`     | `messages`       | `messages/metadata` (`{ [id]: { metadata } }`)                       |
 * | `messages` text deltas         | `messages`       | `messages/partial`: `[ai message with the text so far]`              |
 * | `messages` `message-finish`    | `messages`       | `messages/complete`: `[the whole ai message]`                        |
 * | any                            | `events`         | `events` (the envelope itself)                                       |
 * | terminal `lifecycle`, failed   | any              | `error` (`{ error, message }`), then `end`                           |
 * | terminal `lifecycle`, success  | `values`         | `values` with the output, if the run emitted no values; then `end`   |
 *
 * Message deltas carry no message id, so they belong to the last started
 * message: parallel model calls in one run interleave their text.
 *
 * The mapper keeps what later events need (whether values were sent, the
 * message text so far). A stream resumed after a position first feeds the
 * events up to it through `map` and drops the result, so its state is the
 * same as if it had never stopped.
 */
export class LangGraphMapper {
  private readonly modes: ReadonlySet<StreamMode>;
  private valuesSeen = false;
  private message: MessageState | undefined;

  constructor(
    modes: readonly StreamMode[],
    private readonly run: { run_id: string; thread_id: string },
  ) {
    this.modes = new Set(modes.length === 0 ? DEFAULT_STREAM_MODES : modes);
  }

  map(envelope: EventEnvelope): LangGraphEvent[] {
    const out: LangGraphEvent[] = [];
    if (this.modes.has('events')) out.push({ event: 'events', data: envelope });
    switch (envelope.channel) {
      case 'values':
        this.valuesSeen = true;
        if (this.modes.has('values')) out.push({ event: 'values', data: envelope.data });
        break;
      case 'updates':
        if (this.modes.has('updates')) out.push({ event: 'updates', data: envelope.data });
        break;
      case 'custom':
        if (this.modes.has('custom')) out.push({ event: 'custom', data: envelope.data });
        break;
      case 'messages':
        out.push(...this.mapMessage(envelope.data));
        break;
      case 'lifecycle':
        if (isTerminalEvent(envelope)) out.push(...this.mapEnd(envelope.data as LifecycleData));
        break;
    }
    return out;
  }

  private mapMessage(data: unknown): LangGraphEvent[] {
    if (typeof data !== 'object' || data === null) return [];
    const part = data as Record<string, unknown>;
    const tuple = this.modes.has('messages-tuple');
    const full = this.modes.has('messages');
    const out: LangGraphEvent[] = [];
    if (part.event === 'message-start') {
      const metadata = typeof part.metadata === 'object' && part.metadata !== null ? part.metadata : {};
      this.message = {
        id: String(part.id ?? `${this.run.run_id}:message`),
        metadata: { ...metadata, run_id: this.run.run_id, thread_id: this.run.thread_id },
        text: '',
      };
      if (full)
        out.push({
          event: 'messages/metadata',
          data: { [this.message.id]: { metadata: this.message.metadata } },
        });
      return out;
    }
    const message = this.message;
    if (message === undefined) return out;
    if (part.event === 'content-block-delta') {
      const delta = part.delta as { type?: unknown; text?: unknown } | undefined;
      if (delta?.type !== 'text-delta' || typeof delta.text !== 'string') return out;
      message.text += delta.text;
      if (tuple) out.push(this.tupleChunk(message, { content: delta.text }));
      if (full) out.push({ event: 'messages/partial', data: [aiMessage(message, {})] });
    } else if (part.event === 'content-block-finish') {
      const content = part.content as { type?: unknown; text?: unknown } | undefined;
      // The block's whole text: also right for a stream resumed in the middle of the message.
      if (content?.type === 'text' && typeof content.text === 'string') message.text = content.text;
    } else if (part.event === 'message-finish') {
      const extra = finishFields(part);
      if (tuple) out.push(this.tupleChunk(message, { content: '', ...extra }));
      if (full) out.push({ event: 'messages/complete', data: [aiMessage(message, extra)] });
      this.message = undefined;
    }
    return out;
  }

  private tupleChunk(message: MessageState, fields: Record<string, unknown>): LangGraphEvent {
    return {
      event: 'messages',
      data: [
        { type: 'AIMessageChunk', id: message.id, ...fields },
        { tags: [], ...message.metadata },
      ],
    };
  }

  private mapEnd(end: LifecycleData): LangGraphEvent[] {
    const out: LangGraphEvent[] = [];
    if (end.status === 'success') {
      if (!this.valuesSeen && this.modes.has('values'))
        out.push({ event: 'values', data: outputValue(end.output) });
    } else {
      out.push({ event: 'error', data: errorData(end, this.run.run_id) });
    }
    out.push({ event: 'end', data: { run_id: this.run.run_id, status: end.status } });
    return out;
  }
}

/**
 * An output as a `values` event: as `runs.wait` answers it, a value that is
 * not a JSON object or array is wrapped as `{ output }`.
 */
function outputValue(output: unknown): unknown {
  return typeof output === 'object' && output !== null ? output : { output: output ?? null };
}

/** `error` is the agent's error class name for its own errors, else Hangar's error code (as `wait`). */
function errorData(end: LifecycleData, runId: string): { error: string; message: string } {
  const record = (typeof end.error === 'object' && end.error !== null ? end.error : undefined) as
    | Partial<RunErrorRecord>
    | undefined;
  const code = record?.code ?? end.status;
  return {
    error: record?.code === 'agent_error' && record.type !== undefined ? record.type : code,
    message: record?.message ?? `run ${runId} ended with status ${end.status}`,
  };
}

function finishFields(part: Record<string, unknown>): Record<string, unknown> {
  const usage = part.usage as
    | { inputTokens?: number; outputTokens?: number; totalTokens?: number }
    | undefined;
  return {
    response_metadata: { finish_reason: part.reason ?? null },
    ...(usage === undefined
      ? {}
      : {
          usage_metadata: {
            input_tokens: usage.inputTokens ?? 0,
            output_tokens: usage.outputTokens ?? 0,
            total_tokens: usage.totalTokens ?? 0,
          },
        }),
  };
}

function aiMessage(message: MessageState, extra: Record<string, unknown>): Record<string, unknown> {
  return { type: 'ai', id: message.id, content: message.text, ...extra };
}
