import { discardMarker, isRecord, type StreamEvent, type StreamItem } from './events.ts';

/**
 * What a UI shows of each run, with attempt fencing applied (docs/streaming.md
 * "Attempt fencing"). When a step is retried, or a new attempt resumes a run,
 * the worker logs an `output.discarded` marker: every non-lifecycle event of
 * that run after `after_seq` and before the marker is partial output of work
 * that is being redone. The events stay in the log, so a stream replays them;
 * this view drops them when the marker arrives, so the redone work's tokens
 * replace the abandoned ones instead of following them.
 *
 * It keeps each run's visible events (memory grows with the runs' output;
 * `forget` a run the UI no longer shows) and assembles the `messages`
 * channel into messages (Agent Protocol content blocks: text, reasoning).
 *
 * @example
 * const view = new VisibleOutput();
 * for await (const item of client.streamRun(threadId, runId)) {
 *   view.apply(item);
 *   render(view.text(runId));
 * }
 */
export interface AssembledMessage {
  id: string;
  role: string;
  /** Content blocks by index, as the deltas built them. */
  blocks: Array<Record<string, unknown>>;
  /** The text blocks' text, concatenated. */
  text: string;
  finished: boolean;
  /** A model-call failure the stream reported (`error` event). */
  error?: string;
}

export interface ApplyResult {
  /** Events dropped by a marker (0 for anything else). */
  discarded: number;
}

export class VisibleOutput {
  private readonly runs = new Map<string, StreamEvent[]>();
  private readonly assembled = new Map<string, AssembledMessage[]>();

  /**
   * Takes the next stream item. A reset clears nothing by itself (what is
   * shown may still be right); call `forget` for what you reload.
   */
  apply(item: StreamItem): ApplyResult {
    if (item.type !== 'event') return { discarded: 0 };
    const marker = discardMarker(item);
    const runId = marker?.run_id ?? item.runId;
    if (runId === undefined) return { discarded: 0 };
    const events = this.runs.get(runId) ?? [];
    this.runs.set(runId, events);
    let discarded = 0;
    if (marker !== undefined) {
      const kept = events.filter(
        (e) => e.channel === 'lifecycle' || e.seq <= marker.after_seq || e.seq >= item.seq,
      );
      discarded = events.length - kept.length;
      events.splice(0, events.length, ...kept);
      if (discarded > 0) this.assembled.delete(runId);
    }
    events.push(item);
    if (item.channel === 'messages' && this.assembled.has(runId)) {
      assemble(this.assembled.get(runId) ?? [], item);
    }
    return { discarded };
  }

  /** The run's visible events, in order (discarded ones removed; markers kept). */
  events(runId: string): readonly StreamEvent[] {
    return this.runs.get(runId) ?? [];
  }

  /** The run's messages from the `messages` channel, without discarded output. */
  messages(runId: string): readonly AssembledMessage[] {
    let messages = this.assembled.get(runId);
    if (messages === undefined) {
      messages = [];
      for (const event of this.events(runId)) if (event.channel === 'messages') assemble(messages, event);
      this.assembled.set(runId, messages);
    }
    return messages;
  }

  /** The text of the run's AI messages, concatenated. */
  text(runId: string): string {
    return this.messages(runId)
      .filter((m) => m.role === 'ai')
      .map((m) => m.text)
      .join('');
  }

  /** The runs seen, in order of first event. */
  runIds(): string[] {
    return [...this.runs.keys()];
  }

  /** Drops what is kept of a run (or of every run). */
  forget(runId?: string): void {
    if (runId === undefined) {
      this.runs.clear();
      this.assembled.clear();
    } else {
      this.runs.delete(runId);
      this.assembled.delete(runId);
    }
  }
}

/**
 * Applies one `messages` event (message-start, content-block-start/-delta/
 * -finish, message-finish, error) to the run's messages. Blocks of a message
 * do not interleave (the spec's rule), so deltas go to the last open message.
 */
function assemble(messages: AssembledMessage[], event: StreamEvent): void {
  const data = event.data;
  if (!isRecord(data)) return;
  if (data.event === 'message-start') {
    messages.push({
      id: typeof data.id === 'string' ? data.id : `#${event.seq}`,
      role: typeof data.role === 'string' ? data.role : 'ai',
      blocks: [],
      text: '',
      finished: false,
    });
    return;
  }
  const message = messages.at(-1);
  if (message === undefined || message.finished) return;
  const index = typeof data.index === 'number' ? data.index : 0;
  switch (data.event) {
    case 'content-block-start':
      if (isRecord(data.content)) message.blocks[index] = { ...data.content };
      break;
    case 'content-block-delta': {
      const block = message.blocks[index] ?? { type: 'text', text: '' };
      message.blocks[index] = block;
      const delta = isRecord(data.delta) ? data.delta : {};
      if (delta.type === 'text-delta') block.text = `${String(block.text ?? '')}${String(delta.text ?? '')}`;
      else if (delta.type === 'reasoning-delta') {
        block.reasoning = `${String(block.reasoning ?? '')}${String(delta.reasoning ?? '')}`;
      } else if (delta.type === 'data-delta')
        block.base64 = `${String(block.base64 ?? '')}${String(delta.data ?? '')}`;
      else if (delta.type === 'block-delta' && isRecord(delta.fields)) Object.assign(block, delta.fields);
      break;
    }
    case 'content-block-finish':
      if (isRecord(data.content)) message.blocks[index] = { ...data.content };
      break;
    case 'message-finish':
      message.finished = true;
      break;
    case 'error':
      message.error = typeof data.message === 'string' ? data.message : 'model call failed';
      message.finished = true;
      break;
  }
  message.text = message.blocks
    .filter((b) => b !== undefined && b.type === 'text')
    .map((b) => String(b.text ?? ''))
    .join('');
}
