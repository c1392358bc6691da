//! Public addresses: an `ip_address` associated with a server answers for
//! it. Every TCP port the server listens on at its own address is forwarded
//! from the public address, through the server's firewalls, the way an
//! Elastic IP reaches an instance through its security groups.
//!
//! The server's program chooses its ports, so they are learnt from the
//! kernel's socket table (`/proc/net/tcp`) a few times a second; a port it
//! opens later is forwarded from the next look, one it closes stops being.
//!
//! That is `process` isolation, where a server is a process on the
//! machine's loopback. With `runc` isolation the kernel does it instead: a
//! public address is an address of the cloud's own block routed into its
//! namespace and translated there to the server's (see `host::firewall`),
//! every port and protocol, the firewalls judging the real source; `public`
//! only checks the association.
//!
//! This file is the forwarding itself (`PublicAddress`), below the cloud
//! that holds one per associated address (`public`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::firewall::Ingress;
use super::relay::relay;

/// How often the server's listening ports are looked up.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// How long a connection to the server may take to be made.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running public address.
pub struct PublicAddress {
    /// The server it forwards to.
    pub server: Ipv4Addr,
    ingress: Arc<RwLock<Ingress>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl PublicAddress {
    /// Starts forwarding `public` to `server`'s listening ports.
    pub fn start(public: Ipv4Addr, server: Ipv4Addr, ingress: Ingress) -> PublicAddress {
        let ingress = Arc::new(RwLock::new(ingress));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(forward(public, server, ingress.clone(), cancel.clone()));
        PublicAddress {
            server,
            ingress,
            cancel,
            task,
        }
    }

    /// New rules apply from the next connection; open ones run on.
    pub fn set_ingress(&self, ingress: Ingress) {
        *self.ingress.write().expect("ingress lock") = ingress;
    }

    /// Stops listening and closes the connections it carries.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// The ports with a socket listening on `ip` itself (not on 0.0.0.0, which
/// any program may hold).
pub fn listening_ports(ip: Ipv4Addr) -> Vec<u16> {
    let Ok(table) = procfs::net::tcp() else {
        return Vec::new();
    };
    let mut ports: Vec<u16> = table
        .iter()
        .filter(|e| e.state == procfs::net::TcpState::Listen && e.local_address.ip() == ip)
        .map(|e| e.local_address.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

async fn forward(
    public: Ipv4Addr,
    server: Ipv4Addr,
    ingress: Arc<RwLock<Ingress>>,
    cancel: CancellationToken,
) {
    let mut open: HashMap<u16, CancellationToken> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let ports = listening_ports(server);
        open.retain(|port, stop| {
            let keep = ports.contains(port);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for port in ports {
            if open.contains_key(&port) {
                continue;
            }
            match TcpListener::bind(SocketAddr::from((public, port))).await {
                Ok(listener) => {
                    let stop = cancel.child_token();
                    open.insert(port, stop.clone());
                    tasks.spawn(serve(listener, server, port, ingress.clone(), stop));
                }
                // Tried again at the next look.
                Err(e) => tracing::debug!("public address {public}:{port}: {e}"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(LOOK_EVERY) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn serve(
    listener: TcpListener,
    server: Ipv4Addr,
    port: u16,
    ingress: Arc<RwLock<Ingress>>,
    stop: CancellationToken,
) {
    let what = format!("public address port {port} to {server}");
    let admit = move |peer: SocketAddr| {
        ingress
            .read()
            .expect("ingress lock")
            .access(port.into())
            .allows(peer.ip())
    };
    let dial = move || async move {
        let to = SocketAddr::from((server, port));
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{to} did not answer"),
                ))
            })
    };
    relay(listener, stop, what, admit, dial).await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-line echo server on `ip`, answering `hello` to anyone.
    async fn hello_server(ip: Ipv4Addr) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"hello").await;
            }
        });
        (port, task)
    }

    async fn read_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<String> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((from, 0)))?;
        let mut s = socket.connect(to).await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        Ok(text)
    }

    async fn until_forwarded(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<String> {
        let mut last = Err(std::io::Error::other("never tried"));
        for _ in 0..40 {
            last = read_from(from, to).await;
            if last.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    }

    #[tokio::test]
    async fn forwards_the_ports_the_server_listens_on_through_its_rules() {
        let (server, public) = (Ipv4Addr::new(127, 83, 0, 2), Ipv4Addr::new(127, 83, 0, 3));
        let (port, echo) = hello_server(server).await;
        assert_eq!(listening_ports(server), vec![port]);

        let only = Ingress::Rules(vec![(
            port.into(),
            port.into(),
            vec!["127.83.1.0/24".parse().unwrap()],
        )]);
        let pa = PublicAddress::start(public, server, only);
        let to = SocketAddr::from((public, port));
        let allowed = Ipv4Addr::new(127, 83, 1, 9);
        assert_eq!(until_forwarded(allowed, to).await.unwrap(), "hello");
        // Another source is reset.
        let refused = read_from(Ipv4Addr::new(127, 83, 2, 9), to).await;
        assert!(
            refused.as_ref().map_or(true, String::is_empty),
            "{refused:?}"
        );
        // Rules change for the next connection.
        pa.set_ingress(Ingress::Open);
        assert_eq!(
            read_from(Ipv4Addr::new(127, 83, 2, 9), to).await.unwrap(),
            "hello"
        );

        // The server stops listening: so does its public address.
        echo.abort();
        let _ = echo.await;
        let mut closed = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if TcpStream::connect(to).await.is_err() {
                closed = true;
                break;
            }
        }
        assert!(closed, "the public address still listens on {port}");
        pa.stop().await;
    }
}
