import type { EventEnvelope } from '../events/envelope.ts';
import type { Bus, PublishFence, ThreadMessage, Unsubscribe } from './bus.ts';

/** Runs whose highest published epoch is remembered; older entries are forgotten first. */
const FENCE_MEMORY = 10_000;

/**
 * The highest lease epoch that published for each recent run (the in-process
 * twin of the Redis fence key). Bounded: a forgotten run accepts any epoch,
 * which costs nothing worse than the log allows (its events are committed).
 */
export class EpochFence {
  private readonly epochs = new Map<string, number>();

  /** True when `fence` may publish (no higher epoch did); records its epoch. */
  admit(fence: PublishFence | undefined): boolean {
    if (fence === undefined) return true;
    const seen = this.epochs.get(fence.runId);
    if (seen !== undefined && seen > fence.epoch) return false;
    this.epochs.delete(fence.runId);
    this.epochs.set(fence.runId, fence.epoch);
    if (this.epochs.size > FENCE_MEMORY) {
      const oldest = this.epochs.keys().next().value;
      if (oldest !== undefined) this.epochs.delete(oldest);
    }
    return true;
  }
}

/** The in-process bus of `hangar dev`: events go straight through memory. */
export class MemoryBus implements Bus {
  private readonly threads = new Map<string, Set<(message: ThreadMessage) => void>>();
  private readonly workHandlers = new Set<() => void>();
  private readonly cancelHandlers = new Set<(runId: string) => void>();
  private readonly fence = new EpochFence();

  publishEvents(threadId: string, events: readonly EventEnvelope[], fence?: PublishFence): void {
    if (events.length === 0 || !this.fence.admit(fence)) return;
    this.dispatchEvents(threadId, events);
  }

  /** Delivers events to local subscribers of a thread (no fence: the caller checked it). */
  dispatchEvents(threadId: string, events: readonly EventEnvelope[]): void {
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
