import type { ThreadMessage, Unsubscribe } from '../bus/bus.ts';
import { MemoryBus } from '../bus/memory.ts';

/** The in-process bus, tracking how many thread subscriptions are open (a follower that leaks one shows here). */
export class TrackingBus extends MemoryBus {
  open = 0;
  override subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe {
    const unsubscribe = super.subscribeThread(threadId, handler);
    this.open++;
    let done = false;
    return () => {
      if (!done) this.open--;
      done = true;
      unsubscribe();
    };
  }
}
