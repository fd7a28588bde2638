//! yawc 0.5 client against `wstest -m fuzzingserver`: yawc-client ws://127.0.0.1:PORT AGENT
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use yawc::frame::OpCode;
use yawc::{Options, WebSocket};

fn options() -> Options {
    Options::default()
        .with_balanced_compression()
        .with_utf8()
        .with_limits((16 << 20) + 1, 32 << 20)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or("ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or("yawc".into());
    let mut ws = WebSocket::connect(format!("{base}/getCaseCount").parse().unwrap()).with_options(options()).await.unwrap();
    let n: usize = loop {
        let f = ws.next().await.expect("count");
        if f.opcode() == OpCode::Text { break f.as_str().parse().unwrap(); }
    };
    drop(ws);
    eprintln!("{n} cases");
    for i in 1..=n {
        let url = format!("{base}/runCase?case={i}&agent={agent}");
        let run = async {
            let mut ws = match WebSocket::connect(url.parse().unwrap()).with_options(options()).await {
                Ok(ws) => ws,
                Err(e) => { eprintln!("case {i}: connect: {e}"); return; }
            };
            while let Some(frame) = ws.next().await {
                if matches!(frame.opcode(), OpCode::Text | OpCode::Binary) {
                    if ws.send(frame).await.is_err() { break; }
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(120), run).await.is_err() { eprintln!("case {i}: timeout"); }
    }
    let mut ws = WebSocket::connect(format!("{base}/updateReports?agent={agent}").parse().unwrap()).await.unwrap();
    while ws.next().await.is_some() {}
    eprintln!("done");
}
