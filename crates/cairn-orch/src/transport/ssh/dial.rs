//! The byte stream SSH runs over, and who opens it.

use std::future::Future;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream SSH can run over.
pub trait SshStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> SshStream for T {}

/// Opens the stream to a host: TCP by default; the CLI gives its own to
/// reach servers inside a network namespace. The connect timeout is applied
/// around it.
#[async_trait]
pub trait Dialer: Send + Sync {
    async fn dial(&self, address: &str, port: u16) -> std::io::Result<Box<dyn SshStream>>;
}

/// `TcpStream::connect`, names resolved by the system.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

#[async_trait]
impl Dialer for TcpDialer {
    async fn dial(&self, address: &str, port: u16) -> std::io::Result<Box<dyn SshStream>> {
        let stream = tokio::net::TcpStream::connect((address, port)).await?;
        // Small packets (a channel open, a short script) go at once.
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

/// A closure as a dialer: `|address, port| async move { ... }`.
pub struct DialFn<F>(pub F);

#[async_trait]
impl<F, Fut> Dialer for DialFn<F>
where
    F: Fn(String, u16) -> Fut + Send + Sync,
    Fut: Future<Output = std::io::Result<Box<dyn SshStream>>> + Send,
{
    async fn dial(&self, address: &str, port: u16) -> std::io::Result<Box<dyn SshStream>> {
        (self.0)(address.to_string(), port).await
    }
}
