//! EC2 plumbing shared by the EC2-backed types: tags, filters, and the
//! tag updates every taggable EC2 resource gets.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use cairn_engine::provider::ProviderResult;

use crate::config::Clients;
use crate::error::classify;
use crate::model::stale_tag_keys;

pub fn tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags applied by the create call itself: a resource never exists
/// without its token and deployment tags, so `find` and `list` see it.
pub fn spec(kind: ResourceType, map: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags(map)))
        .build()
}

pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// A filter matching any of `values` (EC2 takes up to 200).
pub fn filter_any(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

pub fn by_tag(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), value)
}

/// Desired tags with `Name` set from the `name` property when given.
pub fn with_name(tags: &BTreeMap<String, String>, name: Option<&str>) -> BTreeMap<String, String> {
    let mut all = tags.clone();
    if let Some(n) = name {
        all.insert("Name".into(), n.into());
    }
    all
}

/// Makes a resource's tags the desired ones: sets them all, removes what
/// is no longer wanted (the token tag stays: it is how `find` knows it).
pub async fn retag(
    c: &Clients,
    id: &str,
    desired: &BTreeMap<String, String>,
) -> ProviderResult<()> {
    let current = c
        .ec2
        .describe_tags()
        .filters(filter("resource-id", id))
        .send()
        .await
        .map_err(|e| classify("DescribeTags", e))?;
    let stale: Vec<Tag> = stale_tag_keys(current.tags().iter().filter_map(|t| t.key()), desired)
        .into_iter()
        .map(|k| Tag::builder().key(k).build())
        .collect();
    if !stale.is_empty() {
        c.ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(stale))
            .send()
            .await
            .map_err(|e| classify("DeleteTags", e))?;
    }
    if !desired.is_empty() {
        c.ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(tags(desired)))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
    }
    Ok(())
}
