//! Connecting to a server from inside its cloud's network namespace: how
//! cairn's orchestration reaches local servers at their private addresses
//! (a bastion for free). A connection made from the cloud namespace leaves
//! through its `output` hook, not `forward`, so the servers' firewalls,
//! which guard what comes from outside the cloud, do not stand in the way
//! of the cloud's own management, as a cloud's control plane is not
//! stopped by a security group.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// The path of the network namespace of the cloud whose id is `cloud_id`.
pub fn cloud_netns_path(cloud_id: &str) -> PathBuf {
    let names = super::network::CloudNet::new(cloud_id, ipnet::Ipv4Net::default());
    PathBuf::from("/run/netns").join(names.netns)
}

/// Runs `f` on a thread of its own that has joined the network namespace
/// at `netns`, and returns what it made. A socket keeps the namespace it
/// was made in, so a listener bound or a connection made there can be used
/// from any thread afterwards; the thread ends with `f` (a blocking-pool
/// thread would go back to the pool still in the namespace), and the
/// caller's threads never leave the machine's namespace.
pub async fn in_netns<T, F>(netns: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let netns = netns.to_path_buf();
    tokio::task::spawn_blocking(move || -> io::Result<T> {
        let ns = std::fs::File::open(&netns).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the network namespace {}: {e}", netns.display()),
            )
        })?;
        std::thread::spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("the thread in the namespace panicked"))?
    })
    .await
    .map_err(io::Error::other)?
}

/// Opens a TCP connection to `addr` from inside the network namespace at
/// `netns` (see [`in_netns`]).
pub async fn connect_in(
    netns: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let stream = in_netns(netns, move || TcpStream::connect_timeout(&addr, timeout)).await?;
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// A TCP listener on `addr` inside the network namespace at `netns` (see
/// [`in_netns`]); the address must be one of that namespace's.
pub async fn listen_in(netns: &Path, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let listener = in_netns(netns, move || std::net::TcpListener::bind(addr)).await?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_namespace_is_named_in_the_error() {
        let err = connect_in(
            Path::new("/run/netns/cairn-no-such-namespace"),
            "127.0.0.1:9".parse().unwrap(),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("cairn-no-such-namespace"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_namespace_is_named_when_listening() {
        let ns = Path::new("/run/netns/cairn-no-such-namespace");
        let err = listen_in(ns, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cairn-no-such-namespace"), "{err}");
    }

    #[test]
    fn the_path_is_the_clouds_namespace() {
        let p = cloud_netns_path("/var/lib/cairn/local");
        assert!(p.starts_with("/run/netns"));
        assert!(
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("cairn-")
        );
    }
}
