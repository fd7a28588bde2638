//! [`Cluster<Down>`]: the typed face of a session cluster.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{
    AckError, AckStream, ClusterError, Delivery, LocalCluster, SendToError, SessionCluster, Target,
};
use crate::message::{CrimsonMessage, CrimsonRequest, Payload};
use crate::session::{SessionHandle, SessionId, SessionInfo};
use crate::DecodeError;

/// A session cluster whose sessions receive `Down`: broadcast to all, to a room, or send to
/// one session by id, from a handler or from anywhere else (an HTTP route, a timer).
///
/// Every message is encoded once per codec its recipients speak (once, in a route of one
/// codec); the same shared bytes are queued for each recipient of that codec.
/// Cloning is cheap and shares the cluster.
///
/// ```
/// use crimson_core::cluster::Cluster;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cluster: Cluster<String> = Cluster::local();
/// let delivery = cluster.broadcast(&"nobody is here yet".to_string()).await.unwrap();
/// assert_eq!(delivery.delivered, 0);
/// # }
/// ```
pub struct Cluster<Down> {
    backend: Arc<dyn SessionCluster>,
    _down: PhantomData<fn(&Down)>,
}

impl<Down> Clone for Cluster<Down> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            _down: PhantomData,
        }
    }
}

impl<Down> fmt::Debug for Cluster<Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cluster").field(&self.backend).finish()
    }
}

impl<Down> Default for Cluster<Down> {
    fn default() -> Self {
        Self::local()
    }
}

impl<Down> Cluster<Down> {
    /// A fresh [`LocalCluster`] with no limits.
    pub fn local() -> Self {
        Self::new(LocalCluster::new())
    }

    /// A typed handle on any backend.
    pub fn new(backend: impl SessionCluster) -> Self {
        Self {
            backend: Arc::new(backend),
            _down: PhantomData,
        }
    }

    /// A typed handle on a shared backend.
    pub fn from_arc(backend: Arc<dyn SessionCluster>) -> Self {
        Self {
            backend,
            _down: PhantomData,
        }
    }

    /// The backend, for the calls servers make (`add`, `remove`).
    pub fn backend(&self) -> &Arc<dyn SessionCluster> {
        &self.backend
    }

    /// This node's own sessions: look one up by id, list them, see which rooms they are in,
    /// watch them come and go ([`LocalCluster::membership`]).
    pub fn node(&self) -> &LocalCluster {
        self.backend.local()
    }

    /// This node's id: the node part of the session ids it hands out.
    pub fn node_id(&self) -> u64 {
        self.backend.node_id()
    }

    /// How many sessions the whole cluster has.
    pub async fn count(&self) -> Result<usize, ClusterError> {
        self.backend.count().await
    }

    /// How many sessions are in `room`, across the cluster.
    pub async fn room_len(&self, room: &str) -> Result<usize, ClusterError> {
        self.backend.room_len(room).await
    }

    /// The sessions in `room`, across the cluster.
    pub async fn room_members(&self, room: &str) -> Result<Vec<SessionId>, ClusterError> {
        self.backend.room_members(room).await
    }

    /// Puts a session of this node in a room (1 to 1024 bytes of name).
    pub fn join(&self, id: SessionId, room: &str) -> Result<(), SendToError> {
        self.backend.join(id, room)
    }

    /// Takes a session of this node out of a room.
    pub fn leave(&self, id: SessionId, room: &str) {
        self.backend.leave(id, room);
    }
}

impl<Down: CrimsonMessage> Cluster<Down> {
    /// Sends `message` to every session, on every node.
    pub async fn broadcast(&self, message: &Down) -> Result<Delivery, ClusterError> {
        self.broadcast_to(message, Target::All).await
    }

    /// Sends `message` to every session but `except` (typically the sender).
    pub async fn broadcast_except(
        &self,
        message: &Down,
        except: SessionId,
    ) -> Result<Delivery, ClusterError> {
        self.broadcast_to(message, Target::Except(except)).await
    }

    /// Sends `message` to every session in `room`, on every node.
    pub async fn broadcast_room(
        &self,
        room: &str,
        message: &Down,
    ) -> Result<Delivery, ClusterError> {
        self.broadcast_to(message, Target::Room(room.to_owned()))
            .await
    }

    /// Sends `message` to every session in `room` but `except` (typically the sender), on
    /// every node.
    pub async fn broadcast_room_except(
        &self,
        room: &str,
        message: &Down,
        except: SessionId,
    ) -> Result<Delivery, ClusterError> {
        self.broadcast_to(message, Target::RoomExcept(room.to_owned(), except))
            .await
    }

    /// Sends `message` to the sessions `target` names.
    pub async fn broadcast_to(
        &self,
        message: &Down,
        target: Target,
    ) -> Result<Delivery, ClusterError> {
        let payload = message.encode().map_err(ClusterError::Encode)?;
        let future = self
            .backend
            .broadcast_in(payload, &|codec| message.encode_in(codec), target);
        future.await
    }

    /// Sends `message` to the sessions of **this node** for which `filter` returns true. (A
    /// closure cannot travel to other nodes: use rooms or [`Target`] for cluster-wide subsets.)
    pub fn broadcast_local(
        &self,
        message: &Down,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Result<Delivery, ClusterError> {
        let payload = message.encode().map_err(ClusterError::Encode)?;
        Ok(self.backend.local().broadcast_local_with(
            &payload,
            Some(&|codec| message.encode_in(codec)),
            filter,
        ))
    }

    /// Sends `message` to the session with this id, wherever it lives.
    pub async fn send_to(&self, id: SessionId, message: &Down) -> Result<(), SendToError> {
        let payload = message.encode().map_err(SendToError::Encode)?;
        let future = self
            .backend
            .send_to_in(id, payload, &|codec| message.encode_in(codec));
        future.await
    }
}

impl<Down: CrimsonRequest> Cluster<Down> {
    /// Asks every session that `target` names, on every node, `message` (a request, over
    /// the Crimson protocol) and streams their answers as they come: `(session,
    /// Ok(response))`, or why a session gave none (its client does not speak the protocol,
    /// refused, timed out, left; see [`AckError`]). Each session gets the message in its own
    /// codec, made once per codec on each node.
    ///
    /// Other nodes (a Redis cluster's) are asked first: if they cannot be reached (Redis is
    /// unavailable, the message is over `max_payload`, too many acknowledged broadcasts
    /// already wait) this fails at once and nobody is asked. Then this node's sessions are
    /// asked. Each node answers for its own sessions; the stream ends when every session
    /// has answered or failed, or at the latest a grace second after `timeout`: a session
    /// whose node said it asked it but whose answer never came yields
    /// [`AckError::Timeout`], and nodes that never said which sessions they asked are
    /// counted in [`AckStream::silent_nodes`] (and logged). Across nodes `timeout` is at
    /// most 5 minutes. No session yields twice.
    ///
    /// ```
    /// use std::time::Duration;
    /// use crimson_core::cluster::{Cluster, Target};
    /// use crimson_core::{CrimsonMessage, CrimsonRequest};
    /// use futures_util::StreamExt;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, CrimsonMessage)]
    /// struct StillThere;
    ///
    /// #[derive(Serialize, Deserialize, CrimsonMessage)]
    /// struct Yes;
    ///
    /// impl CrimsonRequest for StillThere {
    ///     type Response = Yes;
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster: Cluster<StillThere> = Cluster::local();
    /// let mut answers = cluster
    ///     .broadcast_with_ack(&StillThere, Target::All, Duration::from_secs(2))
    ///     .await?;
    /// while let Some((session, answer)) = answers.next().await {
    ///     match answer {
    ///         Ok(Yes) => println!("{session} is there"),
    ///         Err(why) => println!("{session}: no answer ({why})"),
    ///     }
    /// }
    /// assert_eq!(answers.asked(), 0, "nobody is connected yet");
    /// # Ok(()) }
    /// ```
    pub fn broadcast_with_ack(
        &self,
        message: &Down,
        target: Target,
        timeout: Duration,
    ) -> impl Future<Output = Result<AckStream<Down::Response>, ClusterError>> + Send + '_
    where
        Down::Response: Send,
    {
        // Everything made from the value now, so that the future does not hold it.
        let prepared = self.prepare_asks(message, &target);
        let backend = &self.backend;
        async move {
            let (default, asks) = prepared?;
            let remote = backend.ask_remote(default, target, timeout).await?;
            let mut stream = AckStream::new();
            for (handle, body) in asks {
                stream.push(ask_one::<Down>(&handle, body, timeout));
            }
            if let Some(remote) = remote {
                stream.remote(remote, decode_answer::<Down>);
            }
            Ok(stream)
        }
    }

    /// The request in the default codec, and each targeted session of this node with the
    /// request in its codec (made once per codec).
    #[allow(clippy::type_complexity)]
    fn prepare_asks(
        &self,
        message: &Down,
        target: &Target,
    ) -> Result<(Payload, Vec<(SessionHandle, Payload)>), ClusterError> {
        let default = message.encode().map_err(ClusterError::Encode)?;
        let mut made: Vec<(usize, Payload)> = vec![(0, default.clone())];
        let mut asks = Vec::new();
        for handle in self.backend.local().handles(target) {
            let codec = handle.codec();
            let body = match made.iter().find(|(c, _)| *c == codec) {
                Some((_, body)) => body.clone(),
                None => {
                    let body = message.encode_in(codec).map_err(ClusterError::Encode)?;
                    made.push((codec, body.clone()));
                    body
                }
            };
            asks.push((handle, body));
        }
        Ok((default, asks))
    }
}

/// Asks one session of this node; its answer, or why none, within `timeout`.
fn ask_one<Down: CrimsonRequest>(
    handle: &SessionHandle,
    body: Payload,
    timeout: Duration,
) -> BoxFuture<'static, (SessionId, Result<Down::Response, AckError>)>
where
    Down::Response: Send,
{
    let id = handle.id();
    let codec = handle.codec();
    match handle.ask(body) {
        Err(err) => Box::pin(async move { (id, Err(AckError::Ask(err))) }),
        Ok(answer) => Box::pin(async move {
            let result = match tokio::time::timeout(timeout, answer).await {
                Err(_) => Err(AckError::Timeout(timeout)),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Ok(Ok(Err((code, message)))) => Err(AckError::Rejected { code, message }),
                Ok(Ok(Ok(body))) => decode_answer::<Down>(&body, codec).map_err(AckError::Decode),
            };
            (id, result)
        }),
    }
}

/// Decodes an answer to a `Down` request from a session that speaks `Down::CODECS[codec]`:
/// the response type's codec of the same token.
fn decode_answer<Down: CrimsonRequest>(
    body: &Payload,
    codec: usize,
) -> Result<Down::Response, DecodeError> {
    if codec != 0 && codec >= Down::CODECS.len() {
        return Err(DecodeError::new::<Down::Response>(
            "?",
            format!(
                "the answer is in codec {codec} of the request type, which lists {}",
                Down::CODECS.len()
            ),
        ));
    }
    let token = Down::CODECS.get(codec).map(|c| c.token);
    let index = crate::message::codec_index::<Down::Response>(token);
    <Down::Response as CrimsonMessage>::decode_in(body.as_ref(), index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{MemorySink, SessionHandle};

    #[tokio::test]
    async fn typed_handle_encodes_once_and_targets() {
        let cluster: Cluster<String> = Cluster::local();
        let mut boxes = Vec::new();
        let mut ids = Vec::new();
        for n in 0..3 {
            let outbox = Arc::new(MemorySink::new(8));
            let info = SessionInfo {
                id: SessionId::on_node(cluster.node_id()),
                connected_at: std::time::SystemTime::now(),
                remote_addr: None,
                path: format!("/{n}"),
                config: "c".into(),
            };
            ids.push(info.id);
            cluster
                .backend()
                .add(SessionHandle::new(info, outbox.clone()))
                .unwrap();
            boxes.push(outbox);
        }
        assert_eq!(cluster.broadcast(&"all".into()).await.unwrap().delivered, 3);
        assert_eq!(
            cluster
                .broadcast_except(&"not 0".into(), ids[0])
                .await
                .unwrap()
                .delivered,
            2
        );
        cluster.join(ids[2], "room").unwrap();
        cluster.join(ids[1], "room").unwrap();
        assert_eq!(
            cluster
                .broadcast_room("room", &"r".into())
                .await
                .unwrap()
                .delivered,
            2
        );
        assert_eq!(
            cluster
                .broadcast_room_except("room", &"r".into(), ids[1])
                .await
                .unwrap()
                .delivered,
            1
        );
        assert_eq!(cluster.room_len("room").await.unwrap(), 2);
        let mut members = cluster.room_members("room").await.unwrap();
        members.sort();
        let mut expected = vec![ids[1], ids[2]];
        expected.sort();
        assert_eq!(members, expected);
        let only_1 = cluster
            .broadcast_local(&"f".into(), |s| s.path == "/1")
            .unwrap();
        assert_eq!(only_1.delivered, 1);
        cluster.send_to(ids[0], &"direct".into()).await.unwrap();
        assert_eq!(
            boxes.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![2, 4, 4]
        );
        assert_eq!(cluster.count().await.unwrap(), 3);
    }
}
