//! The connection task: connect, run the connection, decide whether to reconnect, wait, repeat.

use std::sync::Arc;

use crimson_core::CrimsonMessage;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::connection;
use crate::dial::{self, AttemptError};
use crate::error::ClientError;
use crate::event::{ClientEvent, CloseEvent};
use crate::shared::{ClientState, RunEnd, Stop};
use crate::state::ConnectionState;
use crimson_core::ClosedBy;

/// Resolves once a stop was requested (or every way to request one is gone).
async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) {
    let _ = stop.wait_for(Option::is_some).await;
}

/// Runs one client from `connect()` until it is closed, then reports how it ended.
pub(crate) async fn run<Down: CrimsonMessage + Clone>(
    shared: Arc<ClientState<Down>>,
    mut stop: watch::Receiver<Option<Stop>>,
    done: watch::Sender<Option<RunEnd>>,
) {
    let span = tracing::debug_span!(
        "crimson_client",
        down = crimson_core_short(std::any::type_name::<Down>())
    );
    let end = cycle(&shared, &mut stop).instrument(span).await;
    shared.finish(&done, end);
}

fn crimson_core_short(name: &'static str) -> &'static str {
    let head = name.find('<').unwrap_or(name.len());
    name[..head].rfind("::").map_or(name, |at| &name[at + 2..])
}

async fn cycle<Down: CrimsonMessage + Clone>(
    shared: &Arc<ClientState<Down>>,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> RunEnd {
    let config = &shared.config;
    // Reconnect attempts since the client started or since the last connection that stayed up
    // for `stable_after`: failed attempts and connections that closed sooner both count.
    let mut attempt = 0u32;
    let mut connected = false;
    // Upgrades refused with 401 or 403 in a row (tried again up to `retry_unauthorized`).
    let mut refused = 0u32;
    let mut last_error: Option<Arc<ClientError>>;
    tracing::debug!("client started");

    loop {
        if stop.borrow().is_some() {
            return RunEnd {
                connected,
                error: None,
            };
        }
        shared.set_state(ConnectionState::Connecting);
        let dialed = tokio::select! {
            dialed = tokio::time::timeout(config.connect_timeout, dial::dial(config)) => dialed,
            () = stopped(stop) => continue,
        };
        // The retry policy's delay before the next attempt; `None` when it makes no more.
        let next_delay = |attempt: u32| config.retry.delay(attempt.saturating_add(1));
        let delay = match dialed {
            Ok(Ok((mut conn, url, framed))) => {
                connected = true;
                shared
                    .framed
                    .store(framed, std::sync::atomic::Ordering::Release);
                refused = 0;
                tracing::debug!(%url, "connected");
                shared.set_state(ConnectionState::Connected);
                // Before anything else: where the client stands in each stream it follows.
                if framed {
                    let frame = Down::CODECS
                        .get(config.codec.down)
                        .map_or(Down::FRAME, |codec| codec.frame);
                    for resume in shared.recovery.resumes(frame) {
                        let _ = conn.send(&resume, None);
                    }
                } else {
                    for outcome in shared.recovery.unresumable(
                        "the server did not agree to the Crimson protocol (crimson.v1)",
                    ) {
                        shared.recovery_outcome(outcome);
                    }
                }
                if let Some(hook) = &config.hooks.on_connect {
                    let mut first = Vec::new();
                    if let Err(err) = hook(&url, config.codec.up, &mut first) {
                        shared.report(ClientError::Encode(err));
                    }
                    // Ahead of the outbox: nothing else has been queued on it yet.
                    for payload in &first {
                        let _ = if framed {
                            let frame = crimson_core::protocol::write(
                                crimson_core::protocol::Kind::Message,
                                payload,
                            );
                            conn.send(&frame, None)
                        } else {
                            conn.send(payload, None)
                        };
                    }
                }
                let _ = shared
                    .events
                    .send(ClientEvent::Connected { url: url.clone() });

                let opened = Instant::now();
                let ended = connection::run(conn, framed, shared, stop.clone())
                    .instrument(tracing::debug_span!("connection", %url))
                    .await;
                // Only a connection that stayed up starts the backoff over: a server that
                // accepts and closes at once (a connection limit, a rejected token) is backed
                // off from like one that refuses, and counts toward the policy's limit.
                let stable = opened.elapsed() >= config.stable_after;
                if stable {
                    attempt = 0;
                }
                last_error = ended.error.map(|error| shared.report(error));
                let asked_to_stop = stop.borrow().is_some();
                let wants_retry = !asked_to_stop
                    && ended.by != ClosedBy::Client
                    && config.retry.retries()
                    && (config.abnormal_close)(ended.code, &ended.reason);
                let delay = if wants_retry {
                    next_delay(attempt)
                } else {
                    None
                };
                let close = CloseEvent {
                    code: ended.code,
                    reason: ended.reason,
                    by: ended.by,
                    reconnect: delay.is_some(),
                };
                tracing::debug!(code = close.code.as_u16(), reason = %close.reason, by = ?close.by, stable, reconnect = close.reconnect, "connection closed");
                if let Some(hook) = &config.hooks.on_close {
                    hook(&close);
                }
                let _ = shared.events.send(ClientEvent::Closed(close));
                if !wants_retry {
                    return RunEnd {
                        connected,
                        error: None,
                    };
                }
                delay
            }
            Ok(Err(AttemptError::Fatal(error))) => {
                // A refused token may be refreshed by the provider: try again, a few times.
                let unauthorized = matches!(
                    error,
                    ClientError::Rejected {
                        status: 401 | 403,
                        ..
                    }
                );
                if unauthorized && refused < config.retry_unauthorized {
                    refused += 1;
                    last_error = Some(shared.report(error));
                    next_delay(attempt)
                } else {
                    return RunEnd {
                        connected,
                        error: Some(shared.report(error)),
                    };
                }
            }
            Ok(Err(AttemptError::Retry(error))) => {
                last_error = Some(shared.report(error));
                next_delay(attempt)
            }
            Err(_elapsed) => {
                last_error =
                    Some(shared.report(ClientError::ConnectTimeout(config.connect_timeout)));
                next_delay(attempt)
            }
        };

        attempt = attempt.saturating_add(1);
        let Some(delay) = delay else {
            if config.retry.retries() {
                last_error = Some(shared.report(ClientError::RetriesExhausted(attempt - 1)));
            }
            return RunEnd {
                connected,
                error: last_error,
            };
        };
        tracing::warn!(attempt, ?delay, "reconnecting after a delay");
        crimson_core::metrics::count("crimson_client_reconnect_attempts_total", &[], 1);
        shared.set_state(ConnectionState::Retrying {
            attempt,
            next_delay: delay,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(stop) => {}
        }
    }
}
