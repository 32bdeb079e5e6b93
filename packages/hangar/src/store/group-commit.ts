/**
 * The queue behind Hangar's group commits (runs/batcher.ts for creates,
 * worker/checkpoints.ts for checkpoints). A commit costs a statement and a WAL
 * flush whatever it carries, so writes that arrive while statements are in
 * flight wait for the next one and share it. With fewer than `maxInFlight`
 * statements in flight, what is queued goes out at the next turn of the event
 * loop (so the writes of one turn share a statement); an idle database gets
 * each write at once, alone.
 */
export abstract class GroupCommit<P> {
  protected queue: P[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(private readonly maxInFlight: number) {}

  /** Writes waiting for a statement. */
  get queued(): number {
    return this.queue.length;
  }

  protected enqueue(pending: P): void {
    this.queue.push(pending);
    this.schedule();
  }

  /** The next statement's writes, taken out of `queue` (never empty while the queue is not). */
  protected abstract take(): P[];

  /** Writes a batch; settles every write of it, and never rejects. */
  protected abstract send(batch: P[]): Promise<void>;

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.take();
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.schedule();
      });
    }
  }
}
