// When a CrimsonSocket reconnects, and how long it waits first: the same policy as
// crimson-client's `RetryPolicy` (exponential with a cap, jitter, an optional limit).

/** How a {@link CrimsonSocket} backs off between reconnect attempts. Every field is optional. */
export interface RetryPolicy {
  /** The delay before the first reconnect, in milliseconds (default 1000). */
  readonly initialDelayMs?: number;
  /** No delay is longer than this, in milliseconds (default 30000). */
  readonly maxDelayMs?: number;
  /** Each delay is this many times the one before (default 2; 1 keeps it fixed). */
  readonly factor?: number;
  /**
   * A fraction from 0 to 1: each delay is drawn at random between `(1 - jitter) × d` and `d`,
   * so that clients cut off together do not all come back at once (default 0.2).
   */
  readonly jitter?: number;
  /**
   * How many reconnect attempts in a row may fail before the socket gives up and closes
   * (default `Infinity`). The count starts over after a connection that stayed up for the
   * socket's `stableAfterMs`.
   */
  readonly maxAttempts?: number;
}

/** A policy with every field set. */
export type ResolvedRetryPolicy = Required<RetryPolicy>;

/** What a socket does when given no policy: 1 s, 2 s, 4 s … up to 30 s, 20 % jitter, no limit. */
export const DEFAULT_RETRY: ResolvedRetryPolicy = Object.freeze({
  initialDelayMs: 1000,
  maxDelayMs: 30000,
  factor: 2,
  jitter: 0.2,
  maxAttempts: Infinity,
});

/**
 * Fills in the defaults and checks the values; throws a `RangeError` that names the field
 * when one cannot work (a zero delay would reconnect in a busy loop).
 */
export function resolveRetry(policy: RetryPolicy = {}): ResolvedRetryPolicy {
  const p = { ...DEFAULT_RETRY, ...policy };
  if (!(p.initialDelayMs > 0) || !Number.isFinite(p.initialDelayMs)) {
    throw new RangeError(`retry.initialDelayMs must be a finite number above 0, not ${p.initialDelayMs}`);
  }
  if (!(p.maxDelayMs >= p.initialDelayMs) || !Number.isFinite(p.maxDelayMs)) {
    throw new RangeError(
      `retry.maxDelayMs (${p.maxDelayMs}) must be finite and at least retry.initialDelayMs (${p.initialDelayMs})`,
    );
  }
  if (!(p.factor >= 1) || !Number.isFinite(p.factor)) {
    throw new RangeError(`retry.factor must be a finite number of at least 1, not ${p.factor}`);
  }
  if (!(p.jitter >= 0 && p.jitter <= 1)) {
    throw new RangeError(`retry.jitter must be a fraction from 0 to 1, not ${p.jitter}`);
  }
  if (!(p.maxAttempts >= 1) || !(Number.isInteger(p.maxAttempts) || p.maxAttempts === Infinity)) {
    throw new RangeError(`retry.maxAttempts must be a whole number of at least 1 (or Infinity), not ${p.maxAttempts}`);
  }
  return Object.freeze(p);
}

/**
 * The delay before reconnect attempt number `attempt` (counting from 1), in milliseconds, or
 * `null` when the policy gives up. `random` returns a number in [0, 1), as `Math.random` does.
 */
export function retryDelay(
  policy: ResolvedRetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number | null {
  if (attempt > policy.maxAttempts) return null;
  const grown = policy.initialDelayMs * policy.factor ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxDelayMs, grown);
  return Math.round(capped * (1 - policy.jitter * random()));
}
