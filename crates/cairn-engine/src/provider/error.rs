//! How a provider call failed, in the kinds the engine's retries and
//! reports tell apart. Its own module so that what providers offer beside
//! the `Provider` trait (`crate::backend`) can use it without the trait.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum ProviderError {
    /// A network fault or 5xx: worth retrying.
    #[error("transient: {0}")]
    Transient(String),
    /// Slow down; retry after the given time when the target said.
    #[error("throttled: {message}")]
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("not found: {0}")]
    NotFound(String),
    /// The request clashes with something that exists (a name, an address).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Transient(_) | ProviderError::Throttled { .. }
        )
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_wire() {
        for e in [
            ProviderError::Transient("reset".into()),
            ProviderError::Throttled {
                retry_after: Some(Duration::from_millis(1500)),
                message: "slow down".into(),
            },
            ProviderError::Conflict("address in use".into()),
        ] {
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<ProviderError>(&text).unwrap(), e);
        }
    }
}
