//! `cairn util http-echo`: a tiny HTTP responder for examples and tests. It
//! answers every request with its text, plus `/healthz`.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::http::serve_http1;

/// Serves until `shutdown` is cancelled; in-flight connections finish.
pub async fn serve(
    listener: TcpListener,
    text: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let text = Bytes::from(format!("{text}\n"));
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted?,
        };
        let text = text.clone();
        let stop = shutdown.clone();
        conns.spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let text = text.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain; charset=utf-8")
                            .body(Full::new(text))
                            .expect("a static response is valid"),
                    )
                }
            });
            serve_http1(stream, service, stop).await;
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Binds `address:port` and serves until Ctrl-C or SIGTERM.
pub async fn run(address: SocketAddr, text: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!("http-echo on http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    serve(listener, text, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn answers_with_its_text_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, "hello from 0".into(), shutdown.clone()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("hello from 0\n"), "{out}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
        assert!(crate::test_server::unbound(addr), "still listening");
    }
}
