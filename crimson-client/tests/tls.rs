//! `wss://`: a wss URL speaks TLS, a trusted certificate carries a real conversation, and an
//! untrusted one is refused.

#![cfg(feature = "rustls")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use crimson_client::{ClientError, ClientEvent, ConnectError, CrimsonClient, RetryPolicy};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[tokio::test]
async fn a_wss_url_starts_a_tls_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hello = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 6];
        tcp.read_exact(&mut head).await.unwrap();
        head
    });
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(format!("wss://{addr}/chat"))
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    client.connect();
    let head = within("the client hello", hello).await.unwrap();
    // A TLS record of type handshake (22), version 3.x, carrying a ClientHello (1).
    assert_eq!(head[0], 0x16);
    assert_eq!(head[1], 0x03);
    assert_eq!(head[5], 0x01);
}

/// A wss echo server with a fresh self-signed certificate for 127.0.0.1; returns its address
/// and the certificate (DER).
async fn tls_echo_server() -> (std::net::SocketAddr, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, cert_der)
}

#[tokio::test]
async fn wss_round_trip_with_a_trusted_certificate() {
    let (addr, cert) = tls_echo_server().await;
    let client = CrimsonClient::<Say, Say>::builder()
        .url(format!("wss://{addr}/echo"))
        .add_root_certificate(cert)
        .build()
        .unwrap();
    within("connect", client.connect()).await.unwrap();
    client.send(say("over tls")).unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "over tls");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (addr, _cert) = tls_echo_server().await;
    let client = CrimsonClient::<Say, Say>::builder()
        .url(format!("wss://{addr}/echo"))
        .retry(RetryPolicy::never())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut events = client.events();
    let err = within("connect", client.connect()).await.unwrap_err();
    let ConnectError::GaveUp(error) = err else {
        panic!("{err:?}")
    };
    let ClientError::Connect { reason, .. } = &*error else {
        panic!("{error}")
    };
    assert!(reason.contains("certificate"), "{reason}");
    let reported = next_event(&mut events, "the error event", |event| match event {
        ClientEvent::Error(error) => Some(error.to_string()),
        _ => None,
    })
    .await;
    assert!(
        reported.starts_with("could not connect to wss://"),
        "{reported}"
    );
}
