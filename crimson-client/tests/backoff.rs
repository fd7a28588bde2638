//! Reconnect timing under tokio's paused clock: the delays the client waits are the policy's,
//! and the attempt limit ends in `Closed` with an error. No network: the endpoint provider
//! fails every time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crimson_client::{
    BoxError, ClientError, ClientEvent, ConnectError, ConnectionState, CrimsonClient, Endpoint,
    RetryPolicy,
};
use futures_util::StreamExt;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// A client whose provider always fails, recording when it was asked.
fn failing_client(
    policy: RetryPolicy,
) -> (CrimsonClient<String, String>, Arc<Mutex<Vec<Instant>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let client = CrimsonClient::builder()
        .endpoint(move || {
            recorded.lock().unwrap().push(Instant::now());
            async { Err::<Endpoint, BoxError>("auth server down".into()) }
        })
        .retry(policy)
        .build()
        .unwrap();
    (client, calls)
}

fn gaps(calls: &[Instant]) -> Vec<Duration> {
    calls.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn exponential_delays_double_cap_at_max_and_max_attempts_ends_in_closed() {
    let policy = RetryPolicy::exponential(100 * MS, 400 * MS)
        .unwrap()
        .with_jitter(0.0)
        .unwrap()
        .with_max_attempts(5)
        .unwrap();
    let (client, calls) = failing_client(policy);
    let mut events = client.events();

    let err = client.connect().await.unwrap_err();
    let ConnectError::GaveUp(error) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(**error, ClientError::RetriesExhausted(5)),
        "{error}"
    );
    assert!(client.state().borrow().is_closed());

    // The first attempt and five retries, spaced as the policy says.
    assert_eq!(
        gaps(&calls.lock().unwrap()),
        [100 * MS, 200 * MS, 400 * MS, 400 * MS, 400 * MS]
    );

    // The states announced, in order.
    let mut retrying = Vec::new();
    let mut last = None;
    while let Some(Ok(event)) = events.next().await {
        if let ClientEvent::State(state) = event {
            if let ConnectionState::Retrying {
                attempt,
                next_delay,
            } = state
            {
                retrying.push((attempt, next_delay));
            }
            last = Some(state);
            if state.is_closed() {
                break;
            }
        }
    }
    assert_eq!(
        retrying,
        [
            (1, 100 * MS),
            (2, 200 * MS),
            (3, 400 * MS),
            (4, 400 * MS),
            (5, 400 * MS)
        ]
    );
    assert_eq!(last, Some(ConnectionState::Closed));
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_the_bounds() {
    let policy = RetryPolicy::exponential(1000 * MS, 8000 * MS)
        .unwrap()
        .with_jitter(0.5)
        .unwrap()
        .with_max_attempts(6)
        .unwrap();
    let (client, calls) = failing_client(policy.clone());
    let _ = client.connect().await;
    let gaps = gaps(&calls.lock().unwrap());
    assert_eq!(gaps.len(), 6);
    for (n, gap) in gaps.into_iter().enumerate() {
        let base = policy.base_delay(n as u32 + 1).unwrap();
        // The paused clock may add a millisecond when it jumps to a timer.
        assert!(
            gap <= base + MS && gap >= base / 2,
            "attempt {}: {gap:?} vs {base:?}",
            n + 1
        );
    }
}

#[tokio::test(start_paused = true)]
async fn never_makes_one_attempt() {
    let (client, calls) = failing_client(RetryPolicy::never());
    let err = client.connect().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not connect: the endpoint provider failed: auth server down"
    );
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_provider_hits_the_connect_timeout_and_is_retried() {
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let client = CrimsonClient::<String, String>::builder()
        .endpoint(move || {
            *counted.lock().unwrap() += 1;
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, BoxError>(Endpoint::new("ws://127.0.0.1:9/x"))
            }
        })
        .connect_timeout(Duration::from_secs(2))
        .retry(
            RetryPolicy::fixed(Duration::from_secs(1))
                .unwrap()
                .with_max_attempts(1)
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut events = client.events();
    let started = Instant::now();
    let _ = client.connect().await;
    // Two attempts of 2 s each and one 1 s delay (jittered down by at most 20%).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4800) && took <= Duration::from_millis(5100),
        "{took:?}"
    );
    assert_eq!(*calls.lock().unwrap(), 2);
    let mut timeouts = 0;
    while let Some(Ok(event)) = events.next().await {
        match event {
            ClientEvent::Error(error) if matches!(*error, ClientError::ConnectTimeout(_)) => {
                assert_eq!(
                    error.to_string(),
                    "connecting took longer than the connect timeout (2s)"
                );
                timeouts += 1;
            }
            ClientEvent::State(ConnectionState::Closed) => break,
            _ => {}
        }
    }
    assert_eq!(timeouts, 2);
}
