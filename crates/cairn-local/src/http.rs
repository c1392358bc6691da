//! One HTTP/1.1 connection served until a stop, which lets the request in
//! flight finish: the daemon's API, `cairn util http-echo` and the tests'
//! backends all serve their connections this way.

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Serves HTTP/1.1 on `stream` with `service`; once `stop` is cancelled,
/// lets the request in flight finish, then closes (a graceful shutdown).
pub(crate) async fn serve_http1<S>(stream: TcpStream, service: S, stop: CancellationToken)
where
    S: HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
