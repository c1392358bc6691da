//! What the daemon's control API (`api`) and its client (`client`) both
//! speak, apart from the server so that the client does not depend on the
//! `Cloud`: the body of the backend calls, and the reply's envelope.

use std::time::Duration;

use cairn_engine::backend::BackendRef;
use cairn_engine::provider::{ProviderError, ProviderResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The body of the `/v1/backend/*` calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendCall {
    /// The `load_balancer` resource's id.
    pub lb_id: String,
    pub backend: BackendRef,
    /// How long a drain waits for what is in flight (drain only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// For the client: turns a reply body into the provider's result.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> ProviderResult<T> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Envelope<T> {
        Ok(T),
        Err(ProviderError),
    }
    match serde_json::from_slice::<Envelope<T>>(bytes) {
        Ok(Envelope::Ok(v)) => Ok(v),
        Ok(Envelope::Err(e)) => Err(e),
        Err(e) => Err(ProviderError::Transient(format!(
            "bad answer from the local cloud: {e}"
        ))),
    }
}
