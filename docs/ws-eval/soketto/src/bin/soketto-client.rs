//! soketto 0.8 client (deflate) against `wstest -m fuzzingserver`: soketto-client 127.0.0.1:PORT AGENT
use futures::io::{BufReader, BufWriter};
use soketto::{connection, handshake};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncReadCompatExt;

type B = Box<dyn std::error::Error + Send + Sync>;

async fn open(addr: &str, path: &str) -> Result<(connection::Sender<impl futures::AsyncRead + futures::AsyncWrite + Unpin>, connection::Receiver<impl futures::AsyncRead + futures::AsyncWrite + Unpin>), B> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true).ok();
    let s = BufReader::with_capacity(8 * 1024, BufWriter::with_capacity(16 * 1024, s.compat()));
    let mut c = handshake::Client::new(s, addr, path);
    c.add_extension(Box::new(soketto::extension::deflate::Deflate::new(soketto::Mode::Client)));
    match c.handshake().await? {
        handshake::ServerResponse::Accepted { .. } => {}
        other => return Err(format!("{other:?}").into()),
    }
    let mut b = c.into_builder();
    b.set_max_message_size(16 << 20);
    b.set_max_frame_size(16 << 20);
    Ok(b.finish())
}

async fn run_case(addr: &str, i: usize, agent: &str) -> Result<(), B> {
    let (mut tx, mut rx) = open(addr, &format!("/runCase?case={i}&agent={agent}")).await?;
    let mut m = Vec::new();
    loop {
        m.clear();
        match rx.receive_data(&mut m).await {
            Ok(soketto::Data::Binary(_)) => { tx.send_binary_mut(&mut m).await?; tx.flush().await? }
            Ok(soketto::Data::Text(_)) => { tx.send_text(std::str::from_utf8(&m)?).await?; tx.flush().await? }
            Err(connection::Error::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), B> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or("127.0.0.1:9001".into());
    let agent = args.next().unwrap_or("soketto".into());
    let (_tx, mut rx) = open(&addr, "/getCaseCount").await?;
    let mut d = Vec::new();
    rx.receive_data(&mut d).await?;
    let n: usize = std::str::from_utf8(&d)?.parse()?;
    eprintln!("{n} cases");
    for i in 1..=n {
        match tokio::time::timeout(Duration::from_secs(120), run_case(&addr, i, &agent)).await {
            Ok(Err(e)) => eprintln!("case {i}: {e}"),
            Err(_) => eprintln!("case {i}: timeout"),
            _ => {}
        }
    }
    let (_tx, mut rx) = open(&addr, &format!("/updateReports?agent={agent}")).await?;
    let _ = rx.receive_data(&mut d).await;
    eprintln!("done");
    Ok(())
}
