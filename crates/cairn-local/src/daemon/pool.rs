//! One local cloud per address pool on this machine. Two clouds on the same
//! 127.P.0.0/16 block would hand out the same addresses and steal each
//! other's listeners, so a daemon claims its block before it runs anything:
//! it listens on 127.P.0.1 (an address the pool never hands out) at a fixed
//! port. The kernel makes that exclusive and frees it when the daemon dies,
//! so there is no lock file to go stale; and the holder answers with its
//! directory, so the refusal can say which cloud has the block.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The port of the claim on 127.P.0.1: below the ephemeral range, so no
/// outgoing connection takes it by chance.
pub const CLAIM_PORT: u16 = 4207;

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "the address pool 127.{pool}.0.0/16 is in use by another local cloud ({holder}); \
         give this one another pool with --pool or CAIRN_LOCAL_POOL, or stop that one"
    )]
    Taken { pool: u8, holder: String },
    #[error("cannot claim the address pool 127.{pool}.0.0/16 on {addr}: {source}")]
    Bind {
        pool: u8,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub fn claim_addr(pool: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, pool, 0, 1), CLAIM_PORT))
}

/// Claims `pool`. Keep the listener and [`serve`] it for as long as the
/// cloud runs.
pub async fn claim(pool: u8) -> Result<TcpListener, ClaimError> {
    let addr = claim_addr(pool);
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(ClaimError::Taken {
            pool,
            holder: holder(addr).await,
        }),
        Err(source) => Err(ClaimError::Bind { pool, addr, source }),
    }
}

/// Who holds a claim, as its holder says; a short wait at most.
async fn holder(addr: SocketAddr) -> String {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    };
    match tokio::time::timeout(Duration::from_secs(1), ask).await {
        Ok(Some(who)) => who,
        _ => format!("something else listens on {addr}"),
    }
}

/// Answers every connection to the claim with `holder`, until `shutdown`;
/// gives the listener back, so that the caller holds the claim until the
/// last of its cloud has stopped.
pub async fn serve(
    listener: TcpListener,
    holder: String,
    shutdown: CancellationToken,
) -> TcpListener {
    let mut answers = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((mut s, _)) = accepted else { continue };
                let text = format!("{holder}\n");
                answers.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(text.as_bytes())).await;
                });
                while answers.try_join_next().is_some() {}
            }
        }
    }
    answers.shutdown().await;
    listener
}
