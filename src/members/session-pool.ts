import type { DistributionReader, MemberSession, PositionRequest } from "./member.js";

/**
 * A fixed set of items (a member's context sequences) lent one at a time: `take` hands out the
 * item given back most recently (its cache most likely matches the next caller's text), or waits
 * in line; `give` hands an item to the first in line, else puts it back.
 */
export class SessionPool<T> {
  private readonly free: T[];
  private readonly waiting: { resolve: (item: T) => void; reject: (error: unknown) => void }[] = [];
  private closedError: Error | undefined;

  constructor(items: readonly T[]) {
    // `take` pops from the end: the first item goes out first.
    this.free = [...items].reverse();
    this.size = items.length;
  }

  /** Items in all, lent or not. */
  readonly size: number;

  /** Items lent now. */
  get lent(): number {
    return this.size - this.free.length;
  }

  /** Callers waiting for an item. */
  get queued(): number {
    return this.waiting.length;
  }

  /** An item, now or when one is given back; rejects with the signal's reason if it aborts first. */
  take(signal?: AbortSignal): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const item = this.waiting.length === 0 ? this.free.pop() : undefined;
    if (item !== undefined) return Promise.resolve(item);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(entry);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal!.reason);
      };
      const entry = {
        resolve: (it: T) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(it);
        },
        reject: (error: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      this.waiting.push(entry);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  give(item: T): void {
    const next = this.waiting.shift();
    if (next) next.resolve(item);
    else this.free.push(item);
  }

  /** Turns away everyone waiting, and every later `take`, with `error` (the member is being disposed). */
  close(error: Error): void {
    this.closedError = error;
    for (const entry of this.waiting.splice(0)) entry.reject(error);
  }
}

/**
 * A session over a lent reader: reads go to `reader` until `close`, which gives the reader back
 * once the reads still running have settled (never while its sequence is evaluating).
 */
export function lentSession(reader: DistributionReader, giveBack: () => void): MemberSession {
  let open = true;
  let closed: Promise<void> | undefined;
  const running = new Set<Promise<unknown>>();
  const track = <R>(call: () => Promise<R>): Promise<R> => {
    if (!open) return Promise.reject(new Error("this member session is closed"));
    const promise = call();
    running.add(promise);
    const done = () => running.delete(promise);
    promise.then(done, done);
    return promise;
  };
  return {
    distributions: (tokens, requests) => track(() => reader.distributions(tokens, requests)),
    ...(reader.prefetch ? { prefetch: (tokens: readonly number[], requests: readonly PositionRequest[]) => track(() => reader.prefetch!(tokens, requests)) } : {}),
    close() {
      open = false;
      closed ??= Promise.allSettled([...running]).then(giveBack);
      return closed;
    },
  };
}
