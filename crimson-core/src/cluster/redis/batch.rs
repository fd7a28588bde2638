//! [`Batch`]: commands sent together, one pipeline per shard (or per hash tag for
//! transactions), concurrently.

use std::collections::HashMap;

use redis::{Cmd, Pipeline, RedisResult, Value};

use super::names::hash_tag;
use super::shards::Shards;

/// How many pipelines of one batch may be in flight at once.
const CONCURRENT_PIPELINES: usize = 16;

/// Commands to send together: in one pipeline per shard (sent concurrently). Results come
/// back in the order the commands were added.
pub(crate) struct Batch {
    atomic: bool,
    /// (group key, pipeline, the batch index of each of its commands)
    groups: Vec<(String, Pipeline, Vec<usize>)>,
    index: HashMap<String, usize>,
    len: usize,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self {
            atomic: false,
            groups: Vec::new(),
            index: HashMap::new(),
            len: 0,
        }
    }

    /// Each pipeline runs as one transaction (MULTI/EXEC): readers never see half of it. On a
    /// cluster, a transaction holds the keys of one hash tag.
    pub(crate) fn atomic(mut self) -> Self {
        self.atomic = true;
        self
    }

    /// Adds a command on `key`; its index in the results.
    pub(crate) fn add(&mut self, key: &str, cmd: Cmd) -> usize {
        // The key routes the pipeline; transactions group by hash tag (one slot).
        let group = if self.atomic { hash_tag(key) } else { key };
        let group = match self.index.get(group) {
            Some(&g) => g,
            None => {
                let mut pipe = redis::pipe();
                if self.atomic {
                    pipe.atomic();
                }
                self.groups.push((key.to_owned(), pipe, Vec::new()));
                self.index.insert(group.to_owned(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let index = self.len;
        self.len += 1;
        self.groups[group].1.add_command(cmd);
        self.groups[group].2.push(index);
        index
    }

    /// How many commands there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sends every pipeline; the results in the order the commands were added. Fails if any
    /// pipeline fails.
    pub(crate) async fn run(self, shards: &Shards) -> RedisResult<Vec<Value>> {
        self.run_each(shards).await.into_iter().collect()
    }

    /// Sends every pipeline; each command's result, in the order the commands were added (a
    /// pipeline that fails fails each of its commands).
    pub(crate) async fn run_each(self, shards: &Shards) -> Vec<RedisResult<Value>> {
        use futures_util::stream::{self, StreamExt};
        let len = self.len;
        // Non-atomic groups of one shard merge into one pipeline.
        let groups = if self.atomic {
            self.groups
        } else {
            let topology = shards.topology();
            let mut merged: Vec<(String, Pipeline, Vec<usize>)> = Vec::new();
            let mut by_shard: HashMap<Option<usize>, usize> = HashMap::new();
            for (key, pipe, indices) in self.groups {
                let shard = shards.shard_of(&topology, &key);
                match by_shard.get(&shard) {
                    Some(&m) => {
                        for cmd in pipe.cmd_iter() {
                            merged[m].1.add_command(cmd.clone());
                        }
                        merged[m].2.extend(indices);
                    }
                    None => {
                        by_shard.insert(shard, merged.len());
                        merged.push((key, pipe, indices));
                    }
                }
            }
            merged
        };
        let results: Vec<(Vec<usize>, RedisResult<Vec<Value>>)> = stream::iter(groups)
            .map(|(key, pipe, indices)| async move {
                let sent = async {
                    let (shard, id, mut conn) = shards.conn_for(&key)?;
                    pipe.query_async::<Vec<Value>>(&mut conn)
                        .await
                        .inspect_err(|err| shards.failed(&shard, id, err))
                };
                (indices, sent.await)
            })
            .buffer_unordered(CONCURRENT_PIPELINES)
            .collect()
            .await;
        let mut out: Vec<RedisResult<Value>> = (0..len).map(|_| Ok(Value::Nil)).collect();
        for (indices, values) in results {
            match values {
                Ok(values) => {
                    for (index, value) in indices.into_iter().zip(values) {
                        out[index] = Ok(value);
                    }
                }
                Err(err) => {
                    for index in indices {
                        out[index] = Err(err.clone());
                    }
                }
            }
        }
        out
    }
}
