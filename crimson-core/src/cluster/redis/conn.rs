//! Commands to Redis: the connection, and batches of commands sent as pipelines, one per
//! hash tag on a Redis Cluster (a pipeline there must stay within one slot).

use redis::aio::ConnectionManager;
use redis::{Cmd, Pipeline, RedisResult, Value};

use super::names::hash_tag;

/// The connection commands go through.
pub(crate) type Conn = ConnectionManager;

/// How many pipelines of one batch may be in flight at once.
const CONCURRENT_PIPELINES: usize = 16;

/// Commands to send together: in one pipeline on a single Redis, in one pipeline per hash
/// tag on a Redis Cluster (sent concurrently). Results come back in the order the commands
/// were added.
#[derive(Debug)]
pub(crate) struct Batch {
    sharded: bool,
    atomic: bool,
    groups: Vec<Group>,
    tags: std::collections::HashMap<String, usize>,
    len: usize,
}

#[derive(Debug)]
struct Group {
    pipe: Pipeline,
    /// The batch index of each command of the pipeline.
    indices: Vec<usize>,
}

impl Batch {
    /// A batch for a single Redis (`sharded` false) or a Redis Cluster.
    pub(crate) fn new(sharded: bool) -> Self {
        Self {
            sharded,
            atomic: false,
            groups: Vec::new(),
            tags: std::collections::HashMap::new(),
            len: 0,
        }
    }

    /// Each pipeline runs as one transaction (MULTI/EXEC): readers never see half of it.
    pub(crate) fn atomic(mut self) -> Self {
        self.atomic = true;
        self
    }

    /// Adds a command on `key` (which picks its pipeline on a cluster); returns its index in
    /// the results.
    pub(crate) fn add(&mut self, key: &str, cmd: Cmd) -> usize {
        let tag = if self.sharded { hash_tag(key) } else { "" };
        let group = match self.tags.get(tag) {
            Some(&group) => group,
            None => {
                let mut pipe = redis::pipe();
                if self.atomic {
                    pipe.atomic();
                }
                self.groups.push(Group {
                    pipe,
                    indices: Vec::new(),
                });
                self.tags.insert(tag.to_owned(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let index = self.len;
        self.len += 1;
        let group = &mut self.groups[group];
        group.pipe.add_command(cmd);
        group.indices.push(index);
        index
    }

    /// How many commands there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sends every pipeline; the results, in the order the commands were added. Fails if any
    /// pipeline fails.
    pub(crate) async fn run(self, conn: &Conn) -> RedisResult<Vec<Value>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let len = self.len;
        let results: Vec<(Vec<usize>, Vec<Value>)> = stream::iter(self.groups)
            .map(|group| {
                let mut conn = conn.clone();
                async move {
                    let values: Vec<Value> = group.pipe.query_async(&mut conn).await?;
                    Ok::<_, redis::RedisError>((group.indices, values))
                }
            })
            .buffer_unordered(CONCURRENT_PIPELINES)
            .try_collect()
            .await?;
        let mut out = vec![Value::Nil; len];
        for (indices, values) in results {
            for (index, value) in indices.into_iter().zip(values) {
                out[index] = value;
            }
        }
        Ok(out)
    }
}
