import type { Frame, Position } from "./codec.js";
/** The most streams a socket follows (a server reads at most 64 `resume` frames). */
export declare const MAX_STREAMS = 64;
/** How a stream's recovery went: the socket's `onRecovered` and `onNotRecovered` events. */
export type Outcome = {
    readonly kind: "recovered";
    readonly stream: string;
    readonly count: bigint;
} | {
    readonly kind: "notRecovered";
    readonly stream: string;
    readonly reason: string;
};
/** What a frame of a stream gives the application: bodies to deliver, in order, then perhaps an outcome. */
export interface Step {
    readonly deliver: Frame[];
    outcome?: Outcome;
    /** A publication of a stream past {@link MAX_STREAMS}: delivered, but not followed. */
    unfollowed?: string;
}
/** The streams a socket follows, and their recoveries. */
export declare class Recovery {
    #private;
    constructor(maxHeld: number);
    /** Where the socket stands in each stream it follows, by stream name. */
    positions(): Position[];
    /**
     * A new connection of the protocol: the position of every stream followed, each to send as a
     * `resume` before anything else; each stream now holds its live publications until the answer.
     */
    resumes(): Position[];
    /** A new connection without the protocol: nothing can be resumed. Every stream is forgotten, each with its outcome. */
    unresumable(reason: string): Outcome[];
    /**
     * The connection dropped: what was held goes (it is asked for again after the reconnect,
     * from the position of what was delivered).
     */
    connectionLost(): void;
    /**
     * A `sub` frame: the session follows the stream from `at` (it connected, or joined the room).
     * A stream being resumed is settled by the resume's answer instead. Returns the stream's name
     * when it could not be followed ({@link MAX_STREAMS}).
     */
    subscribed(at: Position): string | undefined;
    /**
     * An `unsub` frame: the session left the room, and the stream is forgotten (not resumed after
     * a reconnect). What was held is delivered; a resume still unanswered will not be (the server
     * drops it), so what it would have recovered is said to be lost.
     */
    unsubscribed(stream: string): Step;
    /** A `pub` frame. */
    publication(at: Position, body: Frame): Step;
    /** A `recovered` frame: `count` missed publications follow. */
    recovered(at: Position, count: bigint): Step;
    /** A `lost` frame: the stream goes on from `at`; the gap is said. */
    lost(at: Position, reason: string): Step;
}
