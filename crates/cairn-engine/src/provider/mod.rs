//! The provider interface: what a target (local, aws, and later others)
//! implements. Methods take a request struct and return a response, so new
//! fields break no one. Retries, backoff and deadlines are the engine's;
//! a provider reports what kind of failure it saw.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schema::{Kind, ResourceSchema};

pub(crate) mod error;
pub use error::{ProviderError, ProviderResult};

pub type Json = serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub deployment: String,
    pub address: String,
    pub kind: Kind,
    /// Desired properties with defaults filled and secrets revealed.
    pub properties: Json,
    pub tags: BTreeMap<String, String>,
    /// Target-only fields (`aws: {...}`) for this provider.
    pub target: Option<Json>,
    /// The idempotency token (client token or deterministic name): a retried
    /// or interrupted create with the same token must not make a second one.
    pub token: String,
    /// Top-level properties whose value is a secret or derived from one
    /// (a `user_data` holding a password): a target that keeps its own
    /// record of properties must not keep these in clear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Whether an earlier call with this token may have made the resource:
    /// a retried call (the answer to the first was lost), or a recovered
    /// intent. A run's first call with a fresh token cannot have, so a
    /// target skips its look-up for an earlier attempt (one call less per
    /// create). Absent on the wire: assume it may.
    #[serde(default = "earlier_attempt_possible")]
    pub may_exist: bool,
}

fn earlier_attempt_possible() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
    /// Computed attributes (`address`, `endpoint`, ...), `id` included.
    pub attributes: Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRequest {
    pub deployment: String,
    pub address: String,
    pub kind: Kind,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Properties as the target reports them now (for drift).
    pub properties: Json,
    pub attributes: Json,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRequest {
    pub deployment: String,
    pub address: String,
    pub kind: Kind,
    pub id: String,
    pub prior: Json,
    pub properties: Json,
    pub tags: BTreeMap<String, String>,
    /// Top-level properties that changed.
    pub changed: Vec<String>,
    pub token: String,
    /// As in [`CreateRequest::sensitive`], for the new properties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub deployment: String,
    pub address: String,
    pub kind: Kind,
    pub id: String,
    pub properties: Json,
    pub token: String,
}

/// Recovery: what did an interrupted create with this token leave behind?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindRequest {
    pub deployment: String,
    pub address: String,
    pub kind: Kind,
    pub token: String,
}

/// A live resource carrying a deployment's tags (for `--prune` and orphan search).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub kind: Kind,
    pub id: String,
    /// The `cairn:resource` tag: which address it was made for.
    pub address: Option<String>,
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// `local`, `aws`, ...
    fn name(&self) -> &str;

    /// The schema of a type this provider implements (portable or its own).
    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema>;

    /// Creates and waits until the resource is ready.
    async fn create(&self, req: CreateRequest) -> ProviderResult<Created>;
    /// None when the resource no longer exists.
    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>>;
    /// Updates in place; returns the new attributes.
    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json>;
    /// Deleting something already gone succeeds.
    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()>;
    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>>;
    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>>;

    /// Drain and restore of load balancer backends, for rolling releases;
    /// `None` when the target cannot.
    fn backend_control(&self) -> Option<&dyn crate::backend::BackendControl> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_written_before_kinds_were_typed_still_read() {
        // As a journal, a saved daemon call or an older cairn wrote them.
        let old = r#"{"deployment":"d","address":"role","kind":"aws.iam_role","properties":{},
            "tags":{},"target":null,"token":"t"}"#;
        let req: CreateRequest = serde_json::from_str(old).unwrap();
        assert_eq!(req.kind, Kind::AwsIamRole);
        assert!(
            req.may_exist,
            "absent on the wire: an earlier attempt may exist"
        );
        let again = serde_json::to_value(&req).unwrap();
        assert_eq!(again["kind"], "aws.iam_role");
        let listed: Vec<Listed> = serde_json::from_str(
            r#"[{"kind":"server","id":"i-1","address":"web[0]"},{"kind":"dns_record","id":"r","address":null}]"#,
        )
        .unwrap();
        assert_eq!(
            (listed[0].kind, listed[1].kind),
            (Kind::Server, Kind::DnsRecord)
        );
        // A type this cairn does not know is refused by name.
        let e = serde_json::from_str::<ReadRequest>(
            r#"{"deployment":"d","address":"a","kind":"aws.route_table","id":"x"}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown resource type `aws.route_table`"),
            "{e}"
        );
    }
}
