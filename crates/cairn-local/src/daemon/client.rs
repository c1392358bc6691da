//! The `local` provider as the CLI uses it: every call goes to the daemon's
//! control API with the token from the daemon's directory.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::time::Duration;

use cairn_engine::backend::{BackendControl, BackendRef, BackendState, DrainReport};
use cairn_engine::provider::*;
use cairn_engine::schema::{ResourceSchema, portable};

use super::published::{Published, published_path, token_path};
use super::wire::{BackendCall, decode};
use crate::cloud::LocalDirs;

#[derive(Debug, Clone)]
pub struct LocalClient {
    pub published: Published,
    token: String,
}

impl LocalClient {
    /// Connects to the daemon published in `dirs`, if one is running there.
    pub async fn connect(dirs: &LocalDirs) -> Result<LocalClient, String> {
        let text = std::fs::read_to_string(published_path(dirs)).map_err(|_| {
            format!(
                "the local cloud is not running (no {})",
                published_path(dirs).display()
            )
        })?;
        let published: Published =
            serde_json::from_str(&text).map_err(|e| format!("daemon.json: {e}"))?;
        let token = std::fs::read_to_string(token_path(dirs))
            .map_err(|e| format!("cannot read the local cloud's token: {e}"))?;
        let client = LocalClient {
            published,
            token: token.trim().to_string(),
        };
        client
            .status()
            .await
            .map_err(|e| format!("the local cloud does not answer: {e}"))?;
        Ok(client)
    }

    async fn send(&self, method: &str, path: &str, body: Vec<u8>) -> Result<(u16, Bytes), String> {
        let stream = tokio::net::TcpStream::connect(self.published.api)
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the local cloud at {}: {e}",
                    self.published.api
                )
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.published.api.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn call<Q: Serialize, T: DeserializeOwned>(
        &self,
        op: &str,
        req: &Q,
    ) -> ProviderResult<T> {
        let body = serde_json::to_vec(req).map_err(|e| ProviderError::Permanent(e.to_string()))?;
        let (status, bytes) = self
            .send("POST", &format!("/v1/{op}"), body)
            .await
            .map_err(ProviderError::Transient)?;
        if status != 200 {
            return Err(ProviderError::Permanent(format!(
                "the local cloud refused {op}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        decode(&bytes)
    }

    pub async fn status(&self) -> Result<Json, String> {
        let (status, bytes) = self.send("GET", "/v1/status", Vec::new()).await?;
        if status != 200 {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Provider for LocalClient {
    fn name(&self) -> &str {
        "local"
    }
    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema> {
        portable(kind)
    }
    async fn create(&self, req: CreateRequest) -> ProviderResult<Created> {
        self.call("create", &req).await
    }
    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        self.call("read", &req).await
    }
    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        self.call("update", &req).await
    }
    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        self.call("delete", &req).await
    }
    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        self.call("find", &req).await
    }
    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        self.call("list", &deployment.to_string()).await
    }
    fn backend_control(&self) -> Option<&dyn BackendControl> {
        Some(self)
    }
}

/// Each call goes to the daemon, which holds the running balancers (and
/// the drained marks, which a daemon restart forgets).
#[async_trait::async_trait]
impl BackendControl for LocalClient {
    async fn drain(
        &self,
        lb_id: &str,
        backend: &BackendRef,
        timeout: Duration,
    ) -> ProviderResult<DrainReport> {
        self.call(
            "backend/drain",
            &backend_call(lb_id, backend, Some(timeout)),
        )
        .await
    }

    async fn restore(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<()> {
        self.call("backend/restore", &backend_call(lb_id, backend, None))
            .await
    }

    async fn backend_state(
        &self,
        lb_id: &str,
        backend: &BackendRef,
    ) -> ProviderResult<BackendState> {
        self.call("backend/state", &backend_call(lb_id, backend, None))
            .await
    }
}

fn backend_call(lb_id: &str, backend: &BackendRef, timeout: Option<Duration>) -> BackendCall {
    BackendCall {
        lb_id: lb_id.to_string(),
        backend: backend.clone(),
        timeout,
    }
}
