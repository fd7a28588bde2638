//! The order of one stream's publications on one node.
//!
//! Publications reach a node on the stream's channel, each with its position, in offset
//! order as long as the node's subscription holds. The sequencer delivers each one once, in
//! order, and when something is missing finds out what, never papering over it:
//!
//! - the next offset (`last + 1`): delivered;
//! - an offset already delivered: a duplicate, dropped;
//! - a later one: a gap (the subscription was down, or this node left the channel a while):
//!   what arrives is held while the missing ones are read from the stream's history, then
//!   all is delivered in order; what the history no longer has is told to the stream's
//!   sessions (`lost`) before what comes after it;
//! - another epoch: the stream's history was lost (Redis restarted empty): `lost` with
//!   `epoch_changed`, then the new epoch from its start (read back like a gap);
//! - a stream this node does not know yet (cold): held while its position is read.
//!
//! Holding is bounded: past [`Limits`], the sequencer stops waiting for the read, tells what
//! it could not deliver (`unavailable`) and goes on with what it holds.
//!
//! Pure: what it does goes through [`Effects`] (the node's sessions, the reads it starts),
//! so it is tested without Redis.

use std::collections::VecDeque;

use crate::protocol::LostReason;

/// A publication that reached this node, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arrival<T> {
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    /// What is delivered.
    pub(crate) item: T,
    /// Its size, counted against the bound on what is held.
    pub(crate) bytes: usize,
}

/// What the sequencer does to the world.
pub(crate) trait Effects<T> {
    /// Where this node's sessions stand: epoch and last offset delivered; `None` until the
    /// stream is warm.
    fn view(&self) -> Option<(String, u64)>;
    /// Delivers a publication, if it is the next one (else false: nothing happened).
    fn deliver(&mut self, epoch: &str, offset: u64, item: &T) -> bool;
    /// Tells the stream's sessions that what follows their position up to `offset` cannot be
    /// delivered; the stream goes on after `offset` (the node stands there now).
    fn lost(&mut self, epoch: &str, offset: u64, reason: LostReason);
    /// The stream is warm at `epoch`, `last`.
    fn warm(&mut self, epoch: &str, last: u64);
    /// Starts reading where the stream stands; answered with [`Sequencer::warmed`].
    fn warm_up(&mut self, ticket: u64);
    /// Starts reading offsets `first..=last` of `epoch`; answered with
    /// [`Sequencer::filled`].
    fn fetch(&mut self, ticket: u64, epoch: &str, first: u64, last: u64);
    /// A number no read had before.
    fn ticket(&mut self) -> u64;
}

/// How much a stream may hold while it waits for a read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Publications.
    pub(crate) held: usize,
    /// Their bytes.
    pub(crate) bytes: usize,
    /// The most publications one read fetches (the history's size: a longer gap is
    /// surely past what it keeps).
    pub(crate) fetch: u64,
}

/// The read under way.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    WarmUp {
        ticket: u64,
    },
    Fill {
        ticket: u64,
        epoch: String,
        last: u64,
    },
}

/// One stream's order on this node.
#[derive(Debug)]
pub(crate) struct Sequencer<T> {
    held: VecDeque<Arrival<T>>,
    bytes: usize,
    read: Option<Read>,
    limits: Limits,
}

impl<T: Clone> Sequencer<T> {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            held: VecDeque::new(),
            bytes: 0,
            read: None,
            limits,
        }
    }

    /// Nothing held, no read under way: the sequencer may be dropped (the node's view of the
    /// stream is kept by its sessions' side).
    pub(crate) fn is_idle(&self) -> bool {
        self.held.is_empty() && self.read.is_none()
    }

    /// Whether it holds publications.
    pub(crate) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `ticket` is the read under way.
    pub(crate) fn is_current(&self, ticket: u64) -> bool {
        matches!(&self.read, Some(Read::WarmUp { ticket: t } | Read::Fill { ticket: t, .. }) if *t == ticket)
    }

    /// A publication arrived. `over_budget`: the node holds too much already.
    pub(crate) fn arrive(
        &mut self,
        arrival: Arrival<T>,
        over_budget: bool,
        fx: &mut impl Effects<T>,
    ) {
        if !self.held.is_empty()
            && (self.held.len() >= self.limits.held
                || self.bytes + arrival.bytes > self.limits.bytes
                || over_budget)
        {
            self.give_up_waiting(fx);
        }
        self.bytes += arrival.bytes;
        self.held.push_back(arrival);
        self.pump(fx);
    }

    /// The stream has recipients on this node: warm it up if it is not warm.
    pub(crate) fn follow(&mut self, fx: &mut impl Effects<T>) {
        if fx.view().is_none() && self.read.is_none() {
            self.start_warm_up(fx);
        }
    }

    /// The stream stands at `epoch`, `last` in Redis (read by warm-up `ticket`).
    pub(crate) fn warmed(&mut self, ticket: u64, epoch: &str, last: u64, fx: &mut impl Effects<T>) {
        if !matches!(&self.read, Some(Read::WarmUp { ticket: t }) if *t == ticket) {
            return;
        }
        self.read = None;
        if fx.view().is_none() {
            // What arrived since the node subscribed is delivered, even if it was published
            // before the read: its recipients were here.
            let from = match self.held.front() {
                Some(first) if first.epoch == epoch => last.min(first.offset - 1),
                _ => last,
            };
            fx.warm(epoch, from);
        }
        self.pump(fx);
    }

    /// The warm-up under way gave up (the stream has no recipients left, nothing held).
    pub(crate) fn cancel(&mut self) {
        self.read = None;
    }

    /// Fill `ticket` read `entries` (offset order); the offsets it asked for that are not
    /// among them are gone, for `gone`.
    pub(crate) fn filled(
        &mut self,
        ticket: u64,
        entries: Vec<(u64, T)>,
        gone: LostReason,
        fx: &mut impl Effects<T>,
    ) {
        let Some(Read::Fill {
            ticket: current,
            epoch,
            last: asked,
        }) = self.read.clone()
        else {
            return;
        };
        if current != ticket {
            return;
        }
        self.read = None;
        if let Some((now, _)) = fx.view() {
            if now == epoch {
                for (offset, item) in entries {
                    let Some((_, last)) = fx.view() else { break };
                    if offset <= last || offset > asked {
                        continue;
                    }
                    if offset > last + 1 {
                        fx.lost(&epoch, offset - 1, gone);
                    }
                    fx.deliver(&epoch, offset, &item);
                }
                if fx.view().is_some_and(|(_, last)| last < asked) {
                    fx.lost(&epoch, asked, gone);
                }
            }
        }
        self.pump(fx);
    }

    /// Redis says the stream stands at `epoch`, `upto` (checked after an outage, asked when
    /// this node stood in epoch `asked_in`): what this node missed meanwhile is read back.
    pub(crate) fn catch_up(
        &mut self,
        asked_in: &str,
        epoch: &str,
        upto: u64,
        fx: &mut impl Effects<T>,
    ) {
        if self.read.is_some() || !self.held.is_empty() {
            // Under way already; what arrives next shows any gap.
            return;
        }
        let Some((now, last)) = fx.view() else { return };
        if now != asked_in {
            // Another epoch arrived meanwhile: this answer is older than what it knows.
            return;
        }
        let last = if now == epoch {
            last
        } else {
            fx.lost(epoch, 0, LostReason::EpochChanged);
            0
        };
        if upto > last {
            self.start_fill(epoch, last, upto, fx);
        }
    }

    fn start_warm_up(&mut self, fx: &mut impl Effects<T>) {
        let ticket = fx.ticket();
        self.read = Some(Read::WarmUp { ticket });
        fx.warm_up(ticket);
    }

    /// Reads `last + 1..=upto` back, or says they are gone when more are missing than the
    /// history keeps.
    fn start_fill(&mut self, epoch: &str, last: u64, upto: u64, fx: &mut impl Effects<T>) {
        if upto - last > self.limits.fetch {
            fx.lost(epoch, upto, LostReason::HistoryTooShort);
            return;
        }
        let ticket = fx.ticket();
        self.read = Some(Read::Fill {
            ticket,
            epoch: epoch.to_owned(),
            last: upto,
        });
        fx.fetch(ticket, epoch, last + 1, upto);
    }

    /// Stops waiting for the read under way: a cold stream is warmed where what it holds
    /// starts (lossless for its sessions, which came after), a gap is told (`unavailable`).
    fn give_up_waiting(&mut self, fx: &mut impl Effects<T>) {
        let Some(first) = self.held.front() else {
            return;
        };
        let (epoch, offset) = (first.epoch.clone(), first.offset);
        self.read = None;
        match fx.view() {
            None => fx.warm(&epoch, offset - 1),
            Some((now, last)) if now == epoch && offset > last + 1 => {
                fx.lost(&epoch, offset - 1, LostReason::Unavailable);
            }
            Some(_) => {}
        }
        self.pump(fx);
    }

    /// Delivers what it holds, in order, until it must wait for a read.
    fn pump(&mut self, fx: &mut impl Effects<T>) {
        while let Some(first) = self.held.front() {
            let Some((epoch, last)) = fx.view() else {
                if self.read.is_none() {
                    self.start_warm_up(fx);
                }
                return;
            };
            if first.epoch != epoch {
                // The stream's history was lost: a new epoch, read back from its start.
                let epoch = first.epoch.clone();
                self.read = None;
                fx.lost(&epoch, 0, LostReason::EpochChanged);
                continue;
            }
            if first.offset <= last {
                self.pop();
                continue;
            }
            if first.offset == last + 1 {
                if fx.deliver(&epoch, first.offset, &first.item) {
                    self.pop();
                }
                continue;
            }
            if self.read.is_none() {
                let upto = first.offset - 1;
                self.start_fill(&epoch, last, upto, fx);
                if self.read.is_none() {
                    // Too far behind to read back: told, and gone on.
                    continue;
                }
            }
            return;
        }
    }

    fn pop(&mut self) {
        if let Some(first) = self.held.pop_front() {
            self.bytes -= first.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's sessions, as the sequencer sees them: a record of what it did.
    #[derive(Debug, Default)]
    struct World {
        view: Option<(String, u64)>,
        delivered: Vec<(String, u64, &'static str)>,
        lost: Vec<(String, u64, LostReason)>,
        reads: Vec<String>,
        tickets: u64,
    }

    impl Effects<&'static str> for World {
        fn view(&self) -> Option<(String, u64)> {
            self.view.clone()
        }
        fn deliver(&mut self, epoch: &str, offset: u64, item: &&'static str) -> bool {
            let Some((now, last)) = &mut self.view else {
                return false;
            };
            if now != epoch || *last + 1 != offset {
                return false;
            }
            *last = offset;
            self.delivered.push((epoch.into(), offset, *item));
            true
        }
        fn lost(&mut self, epoch: &str, offset: u64, reason: LostReason) {
            self.view = Some((epoch.into(), offset));
            self.lost.push((epoch.into(), offset, reason));
        }
        fn warm(&mut self, epoch: &str, last: u64) {
            self.view = Some((epoch.into(), last));
        }
        fn warm_up(&mut self, ticket: u64) {
            self.reads.push(format!("warm-up #{ticket}"));
        }
        fn fetch(&mut self, ticket: u64, epoch: &str, first: u64, last: u64) {
            self.reads
                .push(format!("fetch #{ticket} {epoch} {first}..={last}"));
        }
        fn ticket(&mut self) -> u64 {
            self.tickets += 1;
            self.tickets
        }
    }

    fn limits() -> Limits {
        Limits {
            held: 4,
            bytes: 1000,
            fetch: 10,
        }
    }

    fn at(epoch: &str, offset: u64, item: &'static str) -> Arrival<&'static str> {
        Arrival {
            epoch: epoch.into(),
            offset,
            item,
            bytes: 10,
        }
    }

    fn warm(epoch: &str, last: u64) -> World {
        World {
            view: Some((epoch.into(), last)),
            ..World::default()
        }
    }

    fn items(world: &World) -> Vec<&'static str> {
        world.delivered.iter().map(|(_, _, item)| *item).collect()
    }

    #[test]
    fn in_order_is_delivered_and_duplicates_are_dropped() {
        let mut world = warm("e", 4);
        let mut seq = Sequencer::new(limits());
        for (offset, item) in [(5, "a"), (6, "b"), (6, "b again"), (3, "old"), (7, "c")] {
            seq.arrive(at("e", offset, item), false, &mut world);
        }
        assert_eq!(items(&world), ["a", "b", "c"]);
        assert!(world.reads.is_empty() && world.lost.is_empty());
        assert!(seq.is_idle());
        assert_eq!(seq.bytes(), 0);
    }

    #[test]
    fn a_gap_is_filled_from_the_history_before_what_came_after_it() {
        let mut world = warm("e", 4);
        let mut seq = Sequencer::new(limits());
        seq.arrive(at("e", 8, "h"), false, &mut world);
        seq.arrive(at("e", 9, "i"), false, &mut world);
        assert!(world.delivered.is_empty(), "held while 5..=7 are read");
        assert_eq!(world.reads, ["fetch #1 e 5..=7"]);
        assert!(!seq.is_idle());
        // A stale answer (another ticket) changes nothing.
        seq.filled(9, vec![(5, "x")], LostReason::HistoryTooShort, &mut world);
        assert!(world.delivered.is_empty());
        seq.filled(
            1,
            vec![(5, "e"), (6, "f"), (7, "g"), (8, "h twice")],
            LostReason::HistoryTooShort,
            &mut world,
        );
        assert_eq!(items(&world), ["e", "f", "g", "h", "i"]);
        assert!(world.lost.is_empty());
        assert!(seq.is_idle());
    }

    #[test]
    fn what_the_history_no_longer_has_is_said_before_what_follows() {
        let mut world = warm("e", 4);
        let mut seq = Sequencer::new(limits());
        seq.arrive(at("e", 9, "i"), false, &mut world);
        // 5 and 6 were trimmed.
        seq.filled(
            1,
            vec![(7, "g"), (8, "h")],
            LostReason::HistoryTooShort,
            &mut world,
        );
        assert_eq!(world.lost, [("e".into(), 6, LostReason::HistoryTooShort)]);
        assert_eq!(items(&world), ["g", "h", "i"]);
        // A read that finds nothing: all of it is said gone.
        seq.arrive(at("e", 12, "l"), false, &mut world);
        assert_eq!(world.reads.last().unwrap(), "fetch #2 e 10..=11");
        seq.filled(2, vec![], LostReason::Expired, &mut world);
        assert_eq!(world.lost[1], ("e".into(), 11, LostReason::Expired));
        assert_eq!(items(&world), ["g", "h", "i", "l"]);
        // Further behind than the history keeps: said at once, not read.
        seq.arrive(at("e", 30, "z"), false, &mut world);
        assert_eq!(world.lost[2], ("e".into(), 29, LostReason::HistoryTooShort));
        assert_eq!(items(&world).last(), Some(&"z"));
        assert_eq!(world.reads.len(), 2);
    }

    #[test]
    fn a_failed_read_is_said_and_the_stream_goes_on() {
        let mut world = warm("e", 1);
        let mut seq = Sequencer::new(limits());
        seq.arrive(at("e", 3, "c"), false, &mut world);
        seq.filled(1, vec![], LostReason::Unavailable, &mut world);
        assert_eq!(world.lost, [("e".into(), 2, LostReason::Unavailable)]);
        assert_eq!(items(&world), ["c"]);
    }

    #[test]
    fn a_new_epoch_is_said_and_read_from_its_start() {
        let mut world = warm("old", 7);
        let mut seq = Sequencer::new(limits());
        seq.arrive(at("new", 3, "c"), false, &mut world);
        assert_eq!(world.lost, [("new".into(), 0, LostReason::EpochChanged)]);
        assert_eq!(world.reads, ["fetch #1 new 1..=2"]);
        seq.filled(
            1,
            vec![(1, "a"), (2, "b")],
            LostReason::HistoryTooShort,
            &mut world,
        );
        assert_eq!(items(&world), ["a", "b", "c"]);
        assert_eq!(world.view, Some(("new".into(), 3)));
    }

    #[test]
    fn a_cold_stream_holds_what_arrives_until_it_is_warm() {
        let mut world = World::default();
        let mut seq = Sequencer::new(limits());
        seq.arrive(at("e", 11, "k"), false, &mut world);
        seq.arrive(at("e", 12, "l"), false, &mut world);
        assert_eq!(world.reads, ["warm-up #1"], "one warm-up");
        assert!(world.delivered.is_empty());
        // Redis says 12 (both were published before the read): they still reach the
        // sessions here, which were waiting for them.
        seq.warmed(1, "e", 12, &mut world);
        assert_eq!(world.delivered[0].1, 11);
        assert_eq!(items(&world), ["k", "l"]);
        assert!(seq.is_idle());
    }

    #[test]
    fn a_warm_up_behind_what_arrives_reads_the_gap_back() {
        let mut world = World::default();
        let mut seq = Sequencer::new(limits());
        seq.follow(&mut world);
        assert_eq!(world.reads, ["warm-up #1"]);
        seq.follow(&mut world);
        assert_eq!(world.reads.len(), 1, "one warm-up at a time");
        seq.arrive(at("e", 9, "i"), false, &mut world);
        seq.warmed(1, "e", 5, &mut world);
        assert_eq!(world.view, Some(("e".into(), 5)));
        assert_eq!(world.reads[1], "fetch #2 e 6..=8");
        seq.filled(
            2,
            vec![(6, "f"), (7, "g"), (8, "h")],
            LostReason::Expired,
            &mut world,
        );
        assert_eq!(items(&world), ["f", "g", "h", "i"]);
        // Nothing held: warmed where Redis stands.
        let mut quiet = World::default();
        let mut seq = Sequencer::new(limits());
        seq.follow(&mut quiet);
        seq.warmed(1, "e", 5, &mut quiet);
        assert_eq!(quiet.view, Some(("e".into(), 5)));
        assert!(seq.is_idle());
    }

    #[test]
    fn holding_is_bounded_a_slow_read_is_given_up_and_said() {
        let mut world = warm("e", 0);
        let mut seq = Sequencer::new(limits());
        for offset in 3..=6 {
            seq.arrive(at("e", offset, "x"), false, &mut world);
        }
        assert_eq!(world.reads, ["fetch #1 e 1..=2"]);
        assert!(world.delivered.is_empty());
        // A fifth is one too many: the read is given up, the gap said.
        seq.arrive(at("e", 7, "y"), false, &mut world);
        assert_eq!(world.lost, [("e".into(), 2, LostReason::Unavailable)]);
        assert_eq!(world.delivered.len(), 5);
        assert!(seq.is_idle());
        // Its answer, late, changes nothing.
        seq.filled(1, vec![(1, "late")], LostReason::Unavailable, &mut world);
        assert_eq!(world.delivered.len(), 5);
        // The node's budget, spent by other streams, does the same.
        let mut world = warm("e", 0);
        let mut seq = Sequencer::new(limits());
        seq.arrive(at("e", 2, "b"), false, &mut world);
        seq.arrive(at("e", 3, "c"), true, &mut world);
        assert_eq!(world.lost, [("e".into(), 1, LostReason::Unavailable)]);
        assert_eq!(items(&world), ["b", "c"]);
        // A cold stream that holds too much is warmed where what it holds starts.
        let mut world = World::default();
        let mut seq = Sequencer::new(limits());
        for offset in 20..25 {
            seq.arrive(at("e", offset, "z"), false, &mut world);
        }
        assert!(world.lost.is_empty());
        assert_eq!(world.delivered.first().unwrap().1, 20);
        assert_eq!(world.delivered.len(), 5);
        seq.warmed(1, "e", 24, &mut world);
        assert_eq!(world.delivered.len(), 5);
    }

    #[test]
    fn catching_up_after_an_outage_reads_what_was_missed() {
        let mut world = warm("e", 4);
        let mut seq = Sequencer::new(limits());
        seq.catch_up("e", "e", 4, &mut world);
        assert!(world.reads.is_empty(), "nothing missed");
        seq.catch_up("e", "e", 6, &mut world);
        assert_eq!(world.reads, ["fetch #1 e 5..=6"]);
        seq.filled(1, vec![(5, "e"), (6, "f")], LostReason::Expired, &mut world);
        assert_eq!(items(&world), ["e", "f"]);
        // Redis lost the stream meanwhile (restarted empty): a new epoch at 0.
        seq.catch_up("e", "n", 0, &mut world);
        assert_eq!(world.lost, [("n".into(), 0, LostReason::EpochChanged)]);
        assert!(seq.is_idle());
        // An answer asked before the node learnt of a newer epoch changes nothing.
        seq.catch_up("e", "e", 9, &mut world);
        assert_eq!(world.view, Some(("n".into(), 0)));
        assert_eq!(world.reads.len(), 1, "only the first read");
    }

    /// Random arrivals (duplicates, gaps, reorders within what a read covers) with a
    /// history that has everything: every offset is delivered once, in order.
    #[test]
    fn whatever_arrives_every_offset_is_delivered_once_in_order() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let mut world = World::default();
            let mut seq = Sequencer::new(Limits {
                held: 1000,
                bytes: usize::MAX,
                fetch: 1000,
            });
            let mut newest = 0u64;
            let mut warmed = false;
            for _ in 0..60 {
                match next(10) {
                    0..=5 => {
                        newest += 1 + u64::from(next(4) == 0) * next(3);
                        seq.arrive(at("e", newest, "p"), false, &mut world);
                    }
                    6 => seq.arrive(
                        at("e", newest.saturating_sub(next(3)).max(1), "p"),
                        false,
                        &mut world,
                    ),
                    _ => {}
                }
                // Answer the reads.
                while let Some(read) = world.reads.pop() {
                    let ticket: u64 = read
                        .split('#')
                        .nth(1)
                        .unwrap()
                        .split(' ')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    if read.starts_with("warm-up") {
                        warmed = true;
                        seq.warmed(ticket, "e", 0, &mut world);
                    } else {
                        let range = read.rsplit(' ').next().unwrap();
                        let (a, b) = range.split_once("..=").unwrap();
                        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                        let entries = (a..=b).map(|o| (o, "p")).collect();
                        seq.filled(ticket, entries, LostReason::Expired, &mut world);
                    }
                }
            }
            let offsets: Vec<u64> = world.delivered.iter().map(|d| d.1).collect();
            let expected: Vec<u64> = (1..=offsets.len() as u64).collect();
            assert_eq!(offsets, expected);
            assert!(world.lost.is_empty(), "{:?}", world.lost);
            if warmed {
                assert_eq!(offsets.len() as u64, newest, "all delivered once warm");
            }
        }
    }
}
