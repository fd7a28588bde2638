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
export declare const DEFAULT_RETRY: ResolvedRetryPolicy;
/**
 * Fills in the defaults and checks the values; throws a `RangeError` that names the field
 * when one cannot work (a zero delay would reconnect in a busy loop).
 */
export declare function resolveRetry(policy?: RetryPolicy): ResolvedRetryPolicy;
/**
 * The delay before reconnect attempt number `attempt` (counting from 1), in milliseconds, or
 * `null` when the policy gives up. `random` returns a number in [0, 1), as `Math.random` does.
 */
export declare function retryDelay(policy: ResolvedRetryPolicy, attempt: number, random?: () => number): number | null;
