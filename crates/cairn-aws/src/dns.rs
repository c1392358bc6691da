//! dns_zone → Route 53 hosted zone, dns_record → record set. An `A` or
//! `AAAA` record whose value is a load balancer's DNS name (what the
//! load balancer's `address` is on aws) becomes an alias to it: ALBs have
//! no fixed address to put in a plain record.

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ResourceRecord, ResourceRecordSet, RrType, Tag,
    TagResourceType,
};
use cairn_engine::provider::*;
use cairn_engine::schema::dns::DnsRecord as DnsRecordProps;
use serde_json::json;

use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;
use crate::shared_reads::zone_record_sets;
use crate::shared_writes::change_record_sets;

fn zone_id(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

fn dotted(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The record's fully qualified name; `@` is the apex.
pub fn fqdn(zone: &str, name: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match name.trim_end_matches('.') {
        "@" | "" => format!("{zone}."),
        n if n == zone || n.ends_with(&format!(".{zone}")) => format!("{n}."),
        n => format!("{n}.{zone}."),
    }
}

/// A record's id: zone, name and type, all a record set is keyed by.
fn record_id(zone: &str, fqdn: &str, rtype: &str) -> String {
    format!("{}/{fqdn}/{rtype}", zone_id(zone))
}

fn split_record_id(id: &str) -> ProviderResult<(&str, &str, &str)> {
    let mut parts = id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(z), Some(n), Some(t)) => Ok((z, n, t)),
        _ => Err(permanent(format!(
            "`{id}` is not a record id (zone/name/type)"
        ))),
    }
}

impl AwsProvider {
    pub(crate) async fn create_zone(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let name = required(p, "name")?;
        if prop_bool(p, "private") {
            return Err(permanent(
                "a private hosted zone needs a VPC; the portable `dns_zone` has none to give (use a public zone)",
            ));
        }
        // The caller reference is the token: Route 53 refuses a second
        // zone for one reference, and `find` matches it.
        let out = self
            .c
            .route53
            .create_hosted_zone()
            .name(name)
            .caller_reference(&req.token)
            .send()
            .await
            .map_err(|e| classify("CreateHostedZone", e))?;
        let zone = out
            .hosted_zone()
            .ok_or_else(|| permanent("CreateHostedZone returned no zone"))?;
        let id = zone_id(zone.id()).to_string();
        // The records made in it next need its name: the answer has it.
        self.shared.zone_names.know(&id, zone.name().to_string());
        self.tag_zone(&id, &create_tags(&req.tags, &req.token), &[])
            .await?;
        let ns: Vec<String> = out
            .delegation_set()
            .map(|d| d.name_servers().to_vec())
            .unwrap_or_default();
        Ok(json!({"id": id, "name_servers": ns}))
    }

    async fn tag_zone(
        &self,
        id: &str,
        tags: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> ProviderResult<()> {
        self.c
            .route53
            .change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(id)
            .set_add_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .set_remove_tag_keys(Some(remove.to_vec()).filter(|r| !r.is_empty()))
            .send()
            .await
            .map_err(|e| classify("ChangeTagsForResource", e))?;
        Ok(())
    }

    pub(crate) async fn zone_tags(
        &self,
        id: &str,
    ) -> ProviderResult<std::collections::BTreeMap<String, String>> {
        let out = self
            .c
            .route53
            .list_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(id)
            .send()
            .await
            .map_err(|e| classify("ListTagsForResource", e))?;
        Ok(out
            .resource_tag_set()
            .map(|s| {
                s.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Every hosted zone: (id, name, caller reference).
    pub(crate) async fn zones(&self) -> ProviderResult<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .c
                .route53
                .list_hosted_zones()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("ListHostedZones", e))?;
            for z in page.hosted_zones() {
                out.push((
                    zone_id(z.id()).to_string(),
                    z.name().to_string(),
                    z.caller_reference().to_string(),
                ));
            }
            match page.next_marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(out),
            }
        }
    }

    pub(crate) async fn find_zone(&self, token: &str) -> ProviderResult<Option<String>> {
        Ok(self
            .zones()
            .await?
            .into_iter()
            .find(|(_, _, reference)| reference == token)
            .map(|(id, ..)| id))
    }

    pub(crate) async fn read_zone(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let out = self
            .c
            .route53
            .get_hosted_zone()
            .id(id)
            .send()
            .await
            .map_err(|e| classify("GetHostedZone", e));
        let Some(out) = gone(out)? else {
            return Ok(None);
        };
        let Some(z) = out.hosted_zone() else {
            return Ok(None);
        };
        let mut p = blank(Kind::DnsZone);
        p.insert("name".into(), json!(z.name().trim_end_matches('.')));
        p.insert(
            "private".into(),
            json!(z.config().map(|c| c.private_zone()).unwrap_or(false)),
        );
        let ns: Vec<String> = out
            .delegation_set()
            .map(|d| d.name_servers().to_vec())
            .unwrap_or_default();
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id, "name_servers": ns}),
            tags: self.zone_tags(id).await?,
        }))
    }

    pub(crate) async fn update_zone(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let current = self.zone_tags(&req.id).await?;
        let remove = stale_tag_keys(current.keys().map(String::as_str), &req.tags);
        self.tag_zone(&req.id, &req.tags, &remove).await?;
        Ok(json!({"id": req.id}))
    }

    pub(crate) async fn delete_zone(&self, id: &str) -> ProviderResult<()> {
        // Route 53 deletes only an empty zone, and a zone's records have
        // gone before it in a destroy: the delete is tried first, the zone
        // emptied only when Route 53 says it is not.
        match self.delete_hosted_zone(id).await {
            Err(e) if e.to_string().contains("HostedZoneNotEmpty") => {}
            other => return other,
        }
        // Every record but the apex NS and SOA (which it made) goes first,
        // whoever made it.
        let Some(sets) = gone(self.record_sets(id).await)? else {
            return Ok(());
        };
        let apex = sets
            .iter()
            .find(|s| s.r#type() == &RrType::Soa)
            .map(|s| s.name().to_string());
        let changes: Vec<Change> = sets
            .into_iter()
            .filter(|s| {
                !(Some(s.name()) == apex.as_deref()
                    && matches!(s.r#type(), RrType::Ns | RrType::Soa))
            })
            .map(|s| {
                Change::builder()
                    .action(ChangeAction::Delete)
                    .resource_record_set(s)
                    .build()
                    .expect("action and record set are set")
            })
            .collect();
        if !changes.is_empty() {
            self.change(id, changes).await?;
        }
        self.delete_hosted_zone(id).await
    }

    async fn delete_hosted_zone(&self, id: &str) -> ProviderResult<()> {
        let r = self
            .c
            .route53
            .delete_hosted_zone()
            .id(id)
            .send()
            .await
            .map_err(|e| classify("DeleteHostedZone", e));
        gone(r)?;
        Ok(())
    }

    async fn record_sets(&self, zone: &str) -> ProviderResult<Vec<ResourceRecordSet>> {
        zone_record_sets(&self.c.route53, zone).await
    }

    /// A hosted zone's name (`example.test.`): it never changes, so it is
    /// asked once however many records of the zone are made or read.
    async fn zone_name(&self, zone: &str) -> ProviderResult<String> {
        self.shared
            .zone_names
            .get_or_try(zone_id(zone), || async {
                self.c
                    .route53
                    .get_hosted_zone()
                    .id(zone)
                    .send()
                    .await
                    .map_err(|e| classify("GetHostedZone", e))?
                    .hosted_zone()
                    .map(|z| z.name().to_string())
                    .ok_or_else(|| ProviderError::NotFound(format!("hosted zone {zone}")))
            })
            .await
    }

    async fn change(&self, zone: &str, changes: Vec<Change>) -> ProviderResult<()> {
        change_record_sets(&self.c.route53, zone, changes).await
    }

    /// One change to one record set, sent with the zone's other changes
    /// made now.
    async fn change_one(
        &self,
        zone: &str,
        action: ChangeAction,
        set: ResourceRecordSet,
    ) -> ProviderResult<()> {
        let change = Change::builder()
            .action(action)
            .resource_record_set(set)
            .build()
            .map_err(|e| permanent(e.to_string()))?;
        self.writes.record_changes.write(zone, change).await
    }

    /// The record set the properties describe (an alias when its one value
    /// is a load balancer's DNS name).
    async fn record_set(&self, p: &Json) -> ProviderResult<(String, ResourceRecordSet)> {
        // The engine's typed model, the one the local target reads too.
        let record = DnsRecordProps::read(p).map_err(|e| permanent(format!("dns record {e}")))?;
        let zone_name = self.zone_name(&record.zone).await?;
        let name = fqdn(&zone_name, &record.name);
        self.record_set_named(&record, &name).await
    }

    /// [`Self::record_set`] under a fully qualified name already known.
    async fn record_set_named(
        &self,
        record: &DnsRecordProps,
        name: &str,
    ) -> ProviderResult<(String, ResourceRecordSet)> {
        let zone = record.zone.as_str();
        let rtype = record.rtype.as_str();
        let values = &record.values;
        let mut set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::from(rtype));
        let alias = match values.as_slice() {
            [one] if record.rtype.is_address() && one.parse::<std::net::IpAddr>().is_err() => {
                Some(self.load_balancer_zone(one).await?)
            }
            _ => None,
        };
        match alias {
            Some((dns, hosted_zone)) => {
                set = set.alias_target(
                    AliasTarget::builder()
                        .dns_name(dns)
                        .hosted_zone_id(hosted_zone)
                        .evaluate_target_health(false)
                        .build()
                        .map_err(|e| permanent(e.to_string()))?,
                );
            }
            None => {
                set = set.ttl(i64::from(record.ttl));
                for v in values {
                    set = set.resource_records(
                        ResourceRecord::builder()
                            .value(v)
                            .build()
                            .map_err(|e| permanent(e.to_string()))?,
                    );
                }
            }
        }
        let set = set.build().map_err(|e| permanent(e.to_string()))?;
        Ok((record_id(zone, name, rtype), set))
    }

    pub(crate) async fn create_record(&self, req: &CreateRequest) -> ProviderResult<Json> {
        self.create_record_upsert(&req.properties).await
    }

    /// UPSERT: the same call creates, updates and repeats safely.
    pub(crate) async fn create_record_upsert(&self, p: &Json) -> ProviderResult<Json> {
        let (id, set) = self.record_set(p).await?;
        let fqdn = set.name().to_string();
        self.change_one(required(p, "zone")?, ChangeAction::Upsert, set)
            .await?;
        Ok(json!({"id": id, "fqdn": fqdn}))
    }

    async fn find_record(&self, id: &str) -> ProviderResult<Option<ResourceRecordSet>> {
        let (zone, name, rtype) = split_record_id(id)?;
        // Records of one zone read together share one listing.
        let Some(sets) = self.shared.record_sets.get(zone).await? else {
            return Ok(None);
        };
        Ok(sets
            .into_iter()
            .find(|s| dotted(s.name()) == dotted(name) && s.r#type().as_str() == rtype))
    }

    pub(crate) async fn read_record(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(set) = self.find_record(id).await? else {
            return Ok(None);
        };
        let (zone, name, rtype) = split_record_id(id)?;
        let zone_name = match gone(self.zone_name(zone).await)? {
            Some(n) => dotted(&n),
            None => return Ok(None),
        };
        let relative = if dotted(name) == zone_name {
            "@".to_string()
        } else {
            dotted(name)
                .strip_suffix(&format!(".{zone_name}"))
                .unwrap_or(name)
                .to_string()
        };
        let values: Vec<String> = match set.alias_target() {
            Some(a) => vec![a.dns_name().trim_end_matches('.').to_string()],
            None => set
                .resource_records()
                .iter()
                .map(|r| r.value().to_string())
                .collect(),
        };
        let mut p = blank(Kind::DnsRecord);
        p.insert("zone".into(), json!(zone));
        p.insert("name".into(), json!(relative));
        p.insert("type".into(), json!(rtype));
        // An alias has no TTL of its own (the target's applies).
        p.insert("ttl".into(), json!(set.ttl()));
        p.insert("values".into(), json!(values));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id, "fqdn": dotted(name)}),
            tags: Default::default(),
        }))
    }

    pub(crate) async fn delete_record(&self, req: &DeleteRequest) -> ProviderResult<()> {
        let id = req.id.as_str();
        let (zone, name, rtype) = split_record_id(id)?;
        // Route 53 deletes a record set given exactly as it is: the recorded
        // properties say that in one call, under the name the id holds (no
        // need to ask the zone's name). Only when they no longer match
        // (changed behind cairn's back, or gone) is the zone listed for
        // what is there.
        let recorded = DnsRecordProps::read(&req.properties)
            .ok()
            .filter(|r| zone_id(&r.zone) == zone && r.rtype.as_str() == rtype);
        let recorded = match recorded {
            Some(r) => self.record_set_named(&r, name).await.ok(),
            None => None,
        };
        if let Some((recorded_id, set)) = recorded
            && recorded_id == id
        {
            match self.change_one(zone, ChangeAction::Delete, set).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!(
                    id,
                    "deleting the recorded record set: {e}; listing the zone"
                ),
            }
        }
        let Some(set) = self.find_record(id).await? else {
            return Ok(());
        };
        let r = self.change_one(zone, ChangeAction::Delete, set).await;
        gone(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fully_qualified() {
        assert_eq!(fqdn("example.test.", "www"), "www.example.test.");
        assert_eq!(fqdn("example.test", "@"), "example.test.");
        assert_eq!(
            fqdn("example.test", "www.example.test."),
            "www.example.test."
        );
        assert_eq!(
            split_record_id(&record_id("/hostedzone/Z1", "www.example.test.", "A")).unwrap(),
            ("Z1", "www.example.test.", "A")
        );
    }
}
