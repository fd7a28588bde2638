//! The answering side of acknowledged broadcasts across nodes: another node's request
//! reaches this node's targeted sessions (each in its codec, made once per codec), this node
//! says at once which sessions it asked (`Asked`, on the origin's node channel), then relays
//! their answers as they come (`Answers`, batched by what is ready, each batch at most
//! `max_payload`), each session's at the latest when the request's timeout passes.
//!
//! Bounded: at most [`MAX_SERVING`] asks of other nodes are served at once (one task each,
//! which ends by the ask's timeout, itself at most [`MAX_ACK_TIMEOUT`]); past that each
//! targeted session is answered at once with why it was not asked. One `Asked` lists at most
//! `max_payload / 16` sessions; the rest are not asked and counted.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use super::acks::MAX_ACK_TIMEOUT;
use super::wire::{Answer, Outcome, Route};
use super::Node;
use crate::cluster::Target;
use crate::message::Payload;
use crate::session::{self, SessionId};

/// How many asks of other nodes one node serves at once.
pub const MAX_SERVING: usize = 256;

/// The most sessions one `Asked` lists, for `max_payload`.
pub(crate) fn max_listed(max_payload: usize) -> usize {
    (max_payload / 16).max(1)
}

/// Asks this node's sessions that `target` names `request` (in the default codec) for node
/// `origin`'s ask `ask`, and answers there.
pub(crate) fn serve(
    node: &Arc<Node>,
    origin: u64,
    ask: u64,
    timeout_ms: u32,
    target: &Target,
    request: &Payload,
) {
    let channel = node.names.node_channel(origin);
    let mut handles = node.local.handles(target);
    let unasked = handles.len().saturating_sub(max_listed(node.max_payload));
    handles.truncate(max_listed(node.max_payload));
    if unasked > 0 {
        node.reports.acks_unserved(
            unasked as u64,
            &format_args!(
                "an ask of node {origin:016x} names more sessions here than one list carries \
                 (max_payload / 16 = {})",
                max_listed(node.max_payload)
            ),
        );
    }
    let asked = Route::Asked {
        ask,
        unasked: u32::try_from(unasked).unwrap_or(u32::MAX),
        sessions: handles.iter().map(session::SessionHandle::id).collect(),
    };
    let Ok(permit) = node.serving.clone().try_acquire_owned() else {
        let why = format!(
            "already serving {MAX_SERVING} acknowledged broadcasts of other nodes, so it did \
             not ask the session"
        );
        node.reports.acks_unserved(handles.len() as u64, &why);
        node.publish_unawaited(channel.clone(), asked);
        let answers = handles
            .iter()
            .map(|handle| Answer {
                session: handle.id(),
                codec: codec_byte(handle.codec()),
                outcome: Outcome::Failed(why.clone()),
            })
            .collect();
        for batch in batches(answers, node.max_payload) {
            node.publish_unawaited(
                channel.clone(),
                Route::Answers {
                    ask,
                    answers: batch,
                },
            );
        }
        return;
    };
    let mut made: Vec<(usize, Result<Payload, String>)> = vec![(0, Ok(request.clone()))];
    let mut ready = Vec::new();
    let mut waiting = Vec::new();
    for handle in &handles {
        let codec = handle.codec();
        let body = match made.iter().find(|(c, _)| *c == codec) {
            Some((_, body)) => body.clone(),
            None => {
                let body = handle.transcode_body(request).map_err(|err| {
                    format!("the request did not re-encode in the session's codec: {err}")
                });
                made.push((codec, body.clone()));
                body
            }
        };
        let outcome = match body.map(|body| handle.ask(body)) {
            Ok(Ok(answer)) => {
                waiting.push((handle.id(), codec_byte(codec), answer));
                continue;
            }
            Ok(Err(err)) => Outcome::NotAsked(err),
            Err(why) => Outcome::Failed(why),
        };
        ready.push(Answer {
            session: handle.id(),
            codec: codec_byte(codec),
            outcome,
        });
    }
    // Before any answer: the publisher sends in order.
    node.publish_unawaited(channel.clone(), asked);
    let timeout = Duration::from_millis(u64::from(timeout_ms)).min(MAX_ACK_TIMEOUT);
    let node = Arc::downgrade(node);
    tokio::spawn(async move {
        relay_answers(node, channel, ask, ready, waiting, timeout).await;
        drop(permit);
    });
}

/// A codec index as the wire carries it (codec lists are short).
fn codec_byte(codec: usize) -> u8 {
    u8::try_from(codec).unwrap_or(u8::MAX)
}

/// Publishes `ready`, then each answer in `waiting` as it comes (what is ready at once goes
/// in one message), each by `timeout` at the latest.
async fn relay_answers(
    node: Weak<Node>,
    channel: String,
    ask: u64,
    mut ready: Vec<Answer>,
    waiting: Vec<(SessionId, u8, oneshot::Receiver<session::Answer>)>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting: FuturesUnordered<_> = waiting
        .into_iter()
        .map(|(session, codec, answer)| async move {
            let outcome = match tokio::time::timeout_at(deadline, answer).await {
                Err(_) => Outcome::Timeout,
                Ok(Err(_)) => Outcome::Disconnected,
                Ok(Ok(Err((code, message)))) => Outcome::Rejected(code, message),
                Ok(Ok(Ok(body))) => Outcome::Answered(body),
            };
            Answer {
                session,
                codec,
                outcome,
            }
        })
        .collect();
    loop {
        while let Some(Some(answer)) = waiting.next().now_or_never() {
            ready.push(answer);
        }
        if ready.is_empty() {
            match waiting.next().await {
                Some(answer) => {
                    ready.push(answer);
                    continue;
                }
                None => return,
            }
        }
        let Some(node) = node.upgrade() else { return };
        for batch in batches(std::mem::take(&mut ready), node.max_payload) {
            let count = batch.len() as u64;
            let route = Route::Answers {
                ask,
                answers: batch,
            };
            if let Err(err) = node.publish(channel.clone(), route, empty()).await {
                node.reports.acks_unserved(
                    count,
                    &format_args!("publishing answers to another node's ask failed: {err}"),
                );
            }
        }
    }
}

/// The payload of `Asked` and `Answers`: none.
pub(crate) fn empty() -> Payload {
    Payload::Binary(bytes::Bytes::new())
}

/// `answers` in messages of at most `max` bytes of answers each; an answer larger than that
/// alone is replaced by why it was not relayed.
pub(crate) fn batches(answers: Vec<Answer>, max: usize) -> Vec<Vec<Answer>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for mut answer in answers {
        let len = answer.wire_len();
        if len > max {
            answer.outcome = Outcome::Failed(format!(
                "the answer takes {len} bytes, over max_payload ({max} bytes), so it was not \
                 relayed"
            ));
        }
        let len = answer.wire_len();
        if !current.is_empty() && bytes + len > max {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += len;
        current.push(answer);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: u64, body: usize) -> Answer {
        Answer {
            session: SessionId::from_parts(1, seq),
            codec: 0,
            outcome: Outcome::Answered(Payload::Binary(vec![7; body].into())),
        }
    }

    #[test]
    fn batches_stay_under_max_payload_and_keep_every_answer() {
        let answers: Vec<Answer> = (0..100).map(|n| answer(n, 100)).collect();
        let one = answers[0].wire_len();
        let batches = batches(answers, 10 * one);
        assert_eq!(batches.len(), 10);
        assert!(batches.iter().all(|b| b.len() == 10));
        let sessions: Vec<u64> = batches.iter().flatten().map(|a| a.session.seq()).collect();
        assert_eq!(sessions, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn an_answer_over_max_payload_says_so_instead() {
        let batches = batches(vec![answer(1, 10), answer(2, 5000), answer(3, 10)], 1000);
        let outcomes: Vec<&Outcome> = batches.iter().flatten().map(|a| &a.outcome).collect();
        assert_eq!(outcomes.len(), 3);
        assert!(matches!(outcomes[0], Outcome::Answered(_)));
        match outcomes[1] {
            Outcome::Failed(why) => assert_eq!(
                why,
                "the answer takes 5023 bytes, over max_payload (1000 bytes), so it was not \
                 relayed"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(outcomes[2], Outcome::Answered(_)));
    }
}
