/**
 * A Server-Sent Events parser over a fetch body (WHATWG HTML "event stream
 * interpretation"), for browsers and Node alike: EventSource cannot send an
 * API key header or a POST body, so the client reads the stream itself.
 */
export interface SseFrame {
  /** The frame's `id:`, when it had one. */
  id: string | undefined;
  /** The frame's `event:`; `message` when absent. */
  event: string;
  data: string;
}

/**
 * Yields the frames of an SSE body as they complete; comments (heartbeats)
 * are skipped, but every chunk read, heartbeats included, calls `onChunk`
 * (what an idle watchdog needs).
 */
export async function* sseFrames(
  body: ReadableStream<Uint8Array>,
  onChunk?: () => void,
): AsyncGenerator<SseFrame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let frame = emptyFrame();
  let data: string[] = [];
  // A '\r' that ended the last chunk: a '\n' starting the next one belongs to it.
  let pendingCr = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return; // an incomplete last frame is dropped, as EventSource does
      onChunk?.();
      let text = decoder.decode(value, { stream: true });
      if (text === '') continue; // the start of a multi-byte character
      if (pendingCr && text.startsWith('\n')) text = text.slice(1);
      pendingCr = text.endsWith('\r');
      buffer += text;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) yield { ...frame, data: data.join('\n') };
          frame = emptyFrame();
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') frame.event = value;
        else if (field === 'id' && !value.includes('\0')) frame.id = value;
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}

function emptyFrame(): Omit<SseFrame, 'data'> {
  return { id: undefined, event: 'message' };
}
