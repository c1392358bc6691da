//! What every resource module shares: reading properties, the tags cairn
//! puts on everything, the names it derives, and waiting with a deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use cairn_engine::provider::{CreateRequest, Json, ProviderError, ProviderResult};
pub use cairn_engine::schema::Kind;
use sha2::{Digest, Sha256};

/// The tag that names the create that made a resource: `find` looks for it.
pub const TOKEN_TAG: &str = "cairn:token";
pub const DEPLOYMENT_TAG: &str = "cairn:deployment";
pub const RESOURCE_TAG: &str = "cairn:resource";

pub fn permanent(msg: impl Into<String>) -> ProviderError {
    ProviderError::Permanent(msg.into())
}

pub fn prop<'a>(p: &'a Json, name: &str) -> Option<&'a Json> {
    p.get(name).filter(|v| !v.is_null())
}

pub fn prop_str<'a>(p: &'a Json, name: &str) -> Option<&'a str> {
    prop(p, name).and_then(Json::as_str)
}

pub fn prop_bool(p: &Json, name: &str) -> bool {
    prop(p, name).and_then(Json::as_bool).unwrap_or(false)
}

pub fn prop_strs(p: &Json, name: &str) -> Vec<String> {
    prop(p, name)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn required<'a>(p: &'a Json, name: &str) -> ProviderResult<&'a str> {
    prop_str(p, name).ok_or_else(|| permanent(format!("`{name}` is required")))
}

/// Every property of `kind` as the template holds them after defaults:
/// all keys present, `null` where unset. `read` fills this in, so a
/// property-by-property comparison with the state lines up.
pub fn blank(kind: Kind) -> serde_json::Map<String, Json> {
    kind.schema()
        .properties
        .iter()
        .filter(|p| p.name != "tags")
        .map(|p| (p.name.to_string(), Json::Null))
        .collect()
}

/// The tags a resource is created with: the engine's (deployment,
/// resource, environment and template tags) plus the token, so that an
/// interrupted create can be found again.
pub fn create_tags(tags: &BTreeMap<String, String>, token: &str) -> BTreeMap<String, String> {
    let mut all = tags.clone();
    all.insert(TOKEN_TAG.into(), token.into());
    all
}

/// Whether these tags say the create with `token` made the resource.
pub fn has_token(tags: &BTreeMap<String, String>, token: &str) -> bool {
    tags.get(TOKEN_TAG).map(String::as_str) == Some(token)
}

/// The keys of `have` that `want` no longer has: the tags an update
/// removes. The token tag stays: it is how `find` knows the resource.
pub fn stale_tag_keys<'a>(
    have: impl IntoIterator<Item = &'a str>,
    want: &BTreeMap<String, String>,
) -> Vec<String> {
    have.into_iter()
        .filter(|k| *k != TOKEN_TAG && !want.contains_key(*k))
        .map(str::to_string)
        .collect()
}

pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The stem of a derived name: readable (deployment and address), limited
/// to `[a-z0-9-]`, and the same for every create of this address, so `read`
/// can tell a derived name from one the template gave.
pub fn name_stem(deployment: &str, address: &str) -> String {
    let clean = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        out.trim_matches('-').to_string()
    };
    format!("{}-{}", clean(deployment), clean(address))
}

/// A name for a resource the template did not name: the stem, cut to fit
/// `max`, then six hex digits of the token, so a retried create reuses the
/// name (the target refuses a second one) and a replacement gets a new one.
pub fn derived_name(deployment: &str, address: &str, token: &str, max: usize) -> String {
    let suffix = &digest(&[token])[..6];
    let mut stem = name_stem(deployment, address);
    stem.truncate(max.saturating_sub(7));
    let stem = stem.trim_end_matches('-');
    let stem = if stem.starts_with(|c: char| c.is_ascii_alphabetic()) {
        stem.to_string()
    } else {
        format!("c{stem}")
    };
    format!("{stem}-{suffix}")
}

/// The `name` the template gave, else one derived from the create's
/// token ([`derived_name`]).
pub fn name_or_derived(req: &CreateRequest, max: usize) -> String {
    prop_str(&req.properties, "name")
        .map(str::to_string)
        .unwrap_or_else(|| derived_name(&req.deployment, &req.address, &req.token, max))
}

/// Polls `check` until it says ready (`Some`), or fails at the deadline.
/// The target reports transient states (`pending`, `provisioning`), so
/// polling is the only way; a permanent failure state is the check's error.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> ProviderResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ProviderResult<Option<T>>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        if let Some(v) = check().await? {
            tracing::debug!(what, elapsed = ?start.elapsed(), "ready");
            return Ok(v);
        }
        if start.elapsed() >= deadline {
            return Err(ProviderError::Transient(format!(
                "{what} was not ready after {}s",
                deadline.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_stable_valid_and_recognised() {
        let a = derived_name("webapp-aws", "web[0]", "cairn-0011", 32);
        assert_eq!(a, derived_name("webapp-aws", "web[0]", "cairn-0011", 32));
        assert_ne!(a, derived_name("webapp-aws", "web[0]", "cairn-0012", 32));
        assert!(a.len() <= 32 && a.starts_with("webapp-aws-web-0-"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let long = derived_name(
            "a-very-long-deployment-name-indeed",
            "load_balancer",
            "t",
            32,
        );
        assert!(long.len() <= 32, "{long}");
        let digits = derived_name("1st", "x", "t", 63);
        assert!(digits.starts_with('c'), "{digits}");
    }

    #[test]
    fn stale_tags_keep_the_token() {
        let want: BTreeMap<String, String> = [("team".to_string(), "api".to_string())].into();
        let stale = stale_tag_keys([TOKEN_TAG, "team", "old", DEPLOYMENT_TAG], &want);
        assert_eq!(stale, ["old", DEPLOYMENT_TAG]);
    }

    #[test]
    fn blank_has_every_property_but_tags() {
        let b = blank(Kind::Firewall);
        assert!(b.contains_key("ingress") && !b.contains_key("tags"));
    }
}
