//! Subscriptions: every wanted channel subscribed on the shard that owns it, and nothing
//! else, again after reconnects and failovers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use redis::Value;

use super::Shards;

/// The channels this node wants, and those each shard's current connection has confirmed.
#[derive(Default)]
pub(super) struct Subscriptions {
    pub(super) wanted: HashSet<String>,
    /// Shard address → (connection id, channels subscribed on that connection).
    active: HashMap<String, (u64, HashSet<String>)>,
}

impl Shards {
    /// Wants `channels` and subscribes to them where their shard is up (the health task
    /// does the rest later). `Ok(false)` when some are not subscribed yet.
    pub(crate) async fn subscribe(&self, channels: Vec<String>) -> bool {
        let mut subs = self.subs.lock().await;
        subs.wanted.extend(channels.iter().cloned());
        self.apply(&mut subs, channels).await
    }

    /// No longer wants `channels`, but those for which `keep` is true when the
    /// subscriptions are changed (a room that was joined again meanwhile); unsubscribes
    /// where they are subscribed.
    pub(crate) async fn unsubscribe_unless(
        &self,
        mut channels: Vec<String>,
        keep: impl Fn(&str) -> bool,
    ) -> bool {
        let mut subs = self.subs.lock().await;
        channels.retain(|channel| !keep(channel));
        for channel in &channels {
            subs.wanted.remove(channel);
        }
        self.apply(&mut subs, channels).await
    }

    /// Replaces the wanted channels for which `replaceable` is true with `channels` (a
    /// rewrite: exactly the rooms this node has members in).
    pub(crate) async fn replace(
        &self,
        replaceable: impl Fn(&str) -> bool,
        channels: HashSet<String>,
    ) -> bool {
        let mut subs = self.subs.lock().await;
        let gone: Vec<String> = subs
            .wanted
            .iter()
            .filter(|c| replaceable(c) && !channels.contains(*c))
            .cloned()
            .collect();
        for channel in &gone {
            subs.wanted.remove(channel);
        }
        let mut touched = gone;
        touched.extend(channels.iter().cloned());
        subs.wanted.extend(channels);
        self.apply(&mut subs, touched).await
    }

    /// Puts every wanted channel on its shard, and nothing else. `false` if some are not.
    pub(super) async fn reconcile(&self) -> bool {
        let mut subs = self.subs.lock().await;
        self.subs_dirty.store(false, Ordering::Release);
        let mut all: HashSet<String> = subs.wanted.clone();
        for (_, channels) in subs.active.values() {
            all.extend(channels.iter().cloned());
        }
        let topology = self.topology();
        subs.active
            .retain(|addr, _| topology.shards.iter().any(|s| &s.addr == addr));
        let ok = self.apply(&mut subs, all.into_iter().collect()).await;
        if !ok {
            self.subs_dirty.store(true, Ordering::Release);
        }
        ok
    }

    /// Subscribes or unsubscribes each of `channels` so that it is subscribed exactly when
    /// wanted, on the shard that owns it.
    async fn apply(&self, subs: &mut Subscriptions, channels: Vec<String>) -> bool {
        let topology = self.topology();
        // Per shard: (subscribe, unsubscribe).
        let mut plan: HashMap<usize, (Vec<String>, Vec<String>)> = HashMap::new();
        let mut complete = true;
        for channel in channels {
            let owner = self.shard_of(&topology, &channel);
            let wanted = subs.wanted.contains(&channel);
            for (index, shard) in topology.shards.iter().enumerate() {
                let current = shard.conn().map(|(id, _)| id);
                let active = subs
                    .active
                    .get(&shard.addr)
                    .and_then(|(id, set)| (Some(*id) == current).then_some(set.contains(&channel)));
                let subscribed = active.unwrap_or(false);
                let should = wanted && owner == Some(index);
                if should && !subscribed {
                    if current.is_some() {
                        plan.entry(index).or_default().0.push(channel.clone());
                    } else {
                        complete = false;
                    }
                } else if !should && subscribed {
                    plan.entry(index).or_default().1.push(channel.clone());
                }
            }
            if wanted && owner.is_none() {
                complete = false;
            }
        }
        let (sub, unsub) = if self.cluster {
            ("SSUBSCRIBE", "SUNSUBSCRIBE")
        } else {
            ("SUBSCRIBE", "UNSUBSCRIBE")
        };
        for (index, (add, remove)) in plan {
            let shard = &topology.shards[index];
            let Some((id, mut conn)) = shard.conn() else {
                complete = false;
                continue;
            };
            // One channel per command: each is answered with exactly one confirmation.
            let mut pipe = redis::pipe();
            for channel in &add {
                pipe.cmd(sub).arg(channel);
            }
            for channel in &remove {
                pipe.cmd(unsub).arg(channel);
            }
            let sent =
                tokio::time::timeout(self.timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await;
            match sent {
                Ok(Ok(_)) => {
                    let entry = subs
                        .active
                        .entry(shard.addr.clone())
                        .or_insert_with(|| (id, HashSet::new()));
                    if entry.0 != id {
                        *entry = (id, HashSet::new());
                    }
                    entry.1.extend(add);
                    for channel in &remove {
                        entry.1.remove(channel);
                    }
                }
                Ok(Err(err)) => {
                    self.failed(shard, id, &err);
                    complete = false;
                }
                // Slow, or hung: the probe decides; the connection stays.
                Err(_) => complete = false,
            }
        }
        if !complete {
            self.subs_dirty.store(true, Ordering::Release);
        }
        complete
    }
}
