//! soketto 0.8 echo on its own handshake (no axum), permessage-deflate on.
use futures::io::{BufReader, BufWriter};
use soketto::{connection, handshake};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncReadCompatExt;

async fn serve(socket: TcpStream) -> Result<(), soketto::BoxedError> {
    socket.set_nodelay(true).ok();
    let socket = BufReader::with_capacity(8 * 1024, BufWriter::with_capacity(16 * 1024, socket.compat()));
    let mut server = handshake::Server::new(socket);
    server.add_extension(Box::new(soketto::extension::deflate::Deflate::new(soketto::Mode::Server)));
    let key = server.receive_request().await?.key();
    server.send_response(&handshake::server::Response::Accept { key, protocol: None }).await?;
    let mut b = server.into_builder();
    b.set_max_message_size(16 << 20);
    b.set_max_frame_size(16 << 20);
    let (mut tx, mut rx) = b.finish();
    let mut message = Vec::new();
    loop {
        message.clear();
        match rx.receive_data(&mut message).await {
            Ok(soketto::Data::Binary(_)) => {
                tx.send_binary_mut(&mut message).await?;
                tx.flush().await?
            }
            Ok(soketto::Data::Text(_)) => {
                let txt = std::str::from_utf8(&message)?;
                tx.send_text(txt).await?;
                tx.flush().await?
            }
            Err(connection::Error::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9104".into());
    let l = TcpListener::bind(&addr).await.unwrap();
    println!("ws://{}", l.local_addr().unwrap());
    loop {
        let (s, _) = l.accept().await.unwrap();
        tokio::spawn(async move {
            if let Err(e) = serve(s).await {
                if std::env::var("VERBOSE").is_ok() { eprintln!("{e}"); }
            }
        });
    }
}
