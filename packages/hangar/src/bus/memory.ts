import type { EventEnvelope } from '../events/envelope.ts';
import type { Bus, ThreadMessage, Unsubscribe } from './bus.ts';

/** The in-process bus of `hangar dev`: events go straight through memory. */
export class MemoryBus implements Bus {
  private readonly threads = new Map<string, Set<(message: ThreadMessage) => void>>();
  private readonly workHandlers = new Set<() => void>();
  private readonly cancelHandlers = new Set<(runId: string) => void>();

  publishEvents(threadId: string, events: readonly EventEnvelope[]): void {
    const handlers = this.threads.get(threadId);
    if (handlers === undefined || events.length === 0) return;
    const message: ThreadMessage = { kind: 'events', events: [...events] };
    for (const handler of handlers) handler(message);
  }

  subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe {
    let handlers = this.threads.get(threadId);
    if (handlers === undefined) {
      handlers = new Set();
      this.threads.set(threadId, handlers);
    }
    handlers.add(handler);
    return () => {
      handlers.delete(handler);
      if (handlers.size === 0) this.threads.delete(threadId);
    };
  }

  /** Delivers a cross-process hint to local subscribers of a thread. */
  dispatchHint(threadId: string, lastSeq: number): void {
    const handlers = this.threads.get(threadId);
    if (handlers === undefined) return;
    for (const handler of handlers) handler({ kind: 'hint', lastSeq });
  }

  /** After a reconnect hints may have been missed: every subscriber re-reads the log. */
  dispatchHintToAll(): void {
    for (const handlers of this.threads.values()) {
      for (const handler of handlers) handler({ kind: 'hint', lastSeq: Number.MAX_SAFE_INTEGER });
    }
  }

  notifyWork(): void {
    for (const handler of this.workHandlers) queueMicrotask(handler);
  }

  onWork(handler: () => void): Unsubscribe {
    this.workHandlers.add(handler);
    return () => this.workHandlers.delete(handler);
  }

  notifyCancel(runId: string): void {
    for (const handler of this.cancelHandlers) queueMicrotask(() => handler(runId));
  }

  onCancel(handler: (runId: string) => void): Unsubscribe {
    this.cancelHandlers.add(handler);
    return () => this.cancelHandlers.delete(handler);
  }

  async close(): Promise<void> {
    this.threads.clear();
    this.workHandlers.clear();
    this.cancelHandlers.clear();
  }
}
