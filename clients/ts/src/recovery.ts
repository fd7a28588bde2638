// Where a CrimsonSocket stands in each stream it gets publications of, and the recovery after
// a reconnect (docs/protocol.md, "Streams and recovery"): one `resume` per stream before
// anything else, then what the server answers. Each publication reaches the application once,
// in offset order; what cannot be recovered is said (an outcome), never a silent gap.
//
// crimson-client's `recovery.rs` does the same for Rust; the two keep the same rules.

import type { Frame, Position } from "./codec.js";

/** The most streams a socket follows (a server reads at most 64 `resume` frames). */
export const MAX_STREAMS = 64;

/** How a stream's recovery went: the socket's `onRecovered` and `onNotRecovered` events. */
export type Outcome =
  | { readonly kind: "recovered"; readonly stream: string; readonly count: bigint }
  | { readonly kind: "notRecovered"; readonly stream: string; readonly reason: string };

/** What a frame of a stream gives the application: bodies to deliver, in order, then perhaps an outcome. */
export interface Step {
  readonly deliver: Frame[];
  outcome?: Outcome;
  /** A publication of a stream past {@link MAX_STREAMS}: delivered, but not followed. */
  unfollowed?: string;
}

interface Held {
  readonly epoch: string;
  readonly offset: bigint;
  readonly body: Frame;
}

type Phase =
  | { readonly name: "live" }
  /** A `resume` was sent: live publications are held until its answer. */
  | { readonly name: "waiting"; readonly held: Held[] }
  /** `left` of the `count` missed publications are still to come; then what was held. */
  | { readonly name: "recovering"; left: bigint; readonly count: bigint; readonly held: Held[] };

interface Follow {
  epoch: string;
  offset: bigint;
  phase: Phase;
}

const LIVE: Phase = { name: "live" };

/** The streams a socket follows, and their recoveries. */
export class Recovery {
  readonly #streams = new Map<string, Follow>();
  readonly #maxHeld: number;
  /** Publications held across every stream (at most `maxHeld`). */
  #held = 0;

  constructor(maxHeld: number) {
    this.#maxHeld = maxHeld;
  }

  /** Where the socket stands in each stream it follows, by stream name. */
  positions(): Position[] {
    return [...this.#streams]
      .map(([stream, follow]) => ({ stream, epoch: follow.epoch, offset: follow.offset }))
      .sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
  }

  /**
   * A new connection of the protocol: the position of every stream followed, each to send as a
   * `resume` before anything else; each stream now holds its live publications until the answer.
   */
  resumes(): Position[] {
    this.#held = 0;
    const positions: Position[] = [];
    for (const [stream, follow] of this.#streams) {
      follow.phase = { name: "waiting", held: [] };
      positions.push({ stream, epoch: follow.epoch, offset: follow.offset });
    }
    return positions;
  }

  /** A new connection without the protocol: nothing can be resumed. Every stream is forgotten, each with its outcome. */
  unresumable(reason: string): Outcome[] {
    const outcomes: Outcome[] = [...this.#streams.keys()].map((stream) => ({ kind: "notRecovered", stream, reason }));
    this.#streams.clear();
    this.#held = 0;
    return outcomes;
  }

  /**
   * The connection dropped: what was held goes (it is asked for again after the reconnect,
   * from the position of what was delivered).
   */
  connectionLost(): void {
    for (const follow of this.#streams.values()) follow.phase = LIVE;
    this.#held = 0;
  }

  /**
   * A `sub` frame: the session follows the stream from `at` (it connected, or joined the room).
   * A stream being resumed is settled by the resume's answer instead. Returns the stream's name
   * when it could not be followed ({@link MAX_STREAMS}).
   */
  subscribed(at: Position): string | undefined {
    const follow = this.#streams.get(at.stream);
    if (!follow) {
      if (this.#streams.size >= MAX_STREAMS) return at.stream;
      this.#streams.set(at.stream, { epoch: at.epoch, offset: at.offset, phase: LIVE });
      return undefined;
    }
    if (follow.phase.name === "live" && (follow.epoch !== at.epoch || follow.offset < at.offset)) {
      // Joined again after leaving: what was published meanwhile was not for this session.
      follow.epoch = at.epoch;
      follow.offset = at.offset;
    }
    return undefined;
  }

  /**
   * An `unsub` frame: the session left the room, and the stream is forgotten (not resumed after
   * a reconnect). What was held is delivered; a resume still unanswered will not be (the server
   * drops it), so what it would have recovered is said to be lost.
   */
  unsubscribed(stream: string): Step {
    const step: Step = { deliver: [] };
    const follow = this.#streams.get(stream);
    if (!follow) return step;
    this.#streams.delete(stream);
    if (follow.phase.name === "live") return step;
    const held = follow.phase.held;
    if (follow.phase.name === "waiting") {
      step.outcome = { kind: "notRecovered", stream, reason: "left the room before the resume was answered" };
      // What was held arrived live: delivered in offset order, whatever the epoch named.
      follow.epoch = "";
      follow.offset = 0n;
    }
    this.#release(follow, held, step);
    return step;
  }

  /** A `pub` frame. */
  publication(at: Position, body: Frame): Step {
    const step: Step = { deliver: [] };
    const follow = this.#streams.get(at.stream);
    if (!follow) {
      if (this.#streams.size < MAX_STREAMS) {
        this.#streams.set(at.stream, { epoch: at.epoch, offset: at.offset, phase: LIVE });
      } else {
        step.unfollowed = at.stream;
      }
      step.deliver.push(body);
      return step;
    }
    const phase = follow.phase;
    switch (phase.name) {
      case "live":
        if (at.epoch !== follow.epoch) {
          // A new stream under the old name (the server lost its history) while connected:
          // nothing was missed on this connection.
          follow.epoch = at.epoch;
          follow.offset = at.offset;
          step.deliver.push(body);
        } else if (at.offset > follow.offset) {
          follow.offset = at.offset;
          step.deliver.push(body);
        }
        // Else a publication already delivered.
        return step;
      case "waiting":
        if (this.#held < this.#maxHeld) {
          phase.held.push({ epoch: at.epoch, offset: at.offset, body });
          this.#held += 1;
          return step;
        }
        // The answer is too long in coming: what is held goes out, and the gap is said.
        step.outcome = {
          kind: "notRecovered",
          stream: at.stream,
          reason: `no answer to the resume (${this.#maxHeld} publications held)`,
        };
        this.#release(follow, phase.held, step);
        if (at.epoch === follow.epoch && at.offset > follow.offset) {
          follow.offset = at.offset;
          step.deliver.push(body);
        }
        return step;
      case "recovering":
        // The missed publications come together, right after `recovered`.
        if (at.epoch === follow.epoch && at.offset > follow.offset) {
          follow.offset = at.offset;
          step.deliver.push(body);
        }
        phase.left -= 1n;
        if (phase.left <= 0n) {
          this.#release(follow, phase.held, step);
          step.outcome = { kind: "recovered", stream: at.stream, count: phase.count };
        }
        return step;
    }
  }

  /** A `recovered` frame: `count` missed publications follow. */
  recovered(at: Position, count: bigint): Step {
    const step: Step = { deliver: [] };
    const follow = this.#streams.get(at.stream);
    if (!follow || follow.phase.name !== "waiting") return step;
    const held = follow.phase.held;
    if (count === 0n) {
      this.#release(follow, held, step);
      step.outcome = { kind: "recovered", stream: at.stream, count };
    } else {
      follow.phase = { name: "recovering", left: count, count, held };
    }
    return step;
  }

  /** A `lost` frame: the stream goes on from `at`; the gap is said. */
  lost(at: Position, reason: string): Step {
    const step: Step = { deliver: [] };
    const follow = this.#streams.get(at.stream);
    if (!follow) return step;
    const held = follow.phase.name === "live" ? [] : follow.phase.held;
    follow.epoch = at.epoch;
    // What was held arrived live: delivered, though older than the stream's position.
    follow.offset = 0n;
    this.#release(follow, held, step);
    if (at.offset > follow.offset) follow.offset = at.offset;
    step.outcome = { kind: "notRecovered", stream: at.stream, reason };
    return step;
  }

  /** The stream goes live: what was held is delivered, in offset order, once each, past its position. */
  #release(follow: Follow, held: Held[], step: Step): void {
    follow.phase = LIVE;
    this.#held -= held.length;
    held.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
    for (const h of held) {
      if (h.epoch !== follow.epoch) {
        // Of another epoch than the one the server named: the socket can place it nowhere,
        // unless the stream starts anew (a `lost` of a stream the server no longer has).
        if (follow.offset === 0n && follow.epoch === "") follow.epoch = h.epoch;
        else continue;
      }
      if (h.offset > follow.offset) {
        follow.offset = h.offset;
        step.deliver.push(h.body);
      }
    }
  }
}
