//! Reaching the NATS server.

/// Connects to the bus, retrying in the background when the server is not
/// up yet (the process starts anyway and says so).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, String> {
    if !url.starts_with("nats://") && !url.starts_with("tls://") {
        return Err(format!(
            "--bus {url}: give a NATS server as nats://HOST:PORT (user:password@ and tls:// work too)"
        ));
    }
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        // A master is sent a result for every host of a job at once.
        .subscription_capacity(1 << 16)
        .client_capacity(1 << 14)
        .event_callback(|e| async move {
            tracing::warn!("bus: {e}");
        })
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to the bus at {url}: {e}"))
}
