//! database → RDS instance (PostgreSQL), in a DB subnet group of its own
//! when the template gives subnets. Its identifier is derived from the
//! token (or is the `name`), which RDS keeps unique: a retried create
//! meets the first one instead of making a second.

use aws_sdk_rds::types::{DbInstance, Tag};
use cairn_engine::provider::*;
use serde_json::json;

use crate::AwsProvider;
use crate::error::{classify, gone};
use crate::model::*;

/// RDS identifiers: at most 63 characters.
const NAME_MAX: usize = 63;

const SIZES: &[(&str, &str)] = &[
    ("micro", "db.t3.micro"),
    ("small", "db.t3.small"),
    ("medium", "db.t3.medium"),
    ("large", "db.t3.large"),
];

fn class_of(size: &str) -> Option<&'static str> {
    SIZES.iter().find(|(s, _)| *s == size).map(|(_, c)| *c)
}

fn size_of(class: &str) -> String {
    SIZES
        .iter()
        .find(|(_, c)| *c == class)
        .map_or(class, |(s, _)| *s)
        .to_string()
}

fn db_attributes(db: &DbInstance) -> Json {
    let host = db.endpoint().and_then(|e| e.address());
    let port = db.endpoint().and_then(|e| e.port());
    json!({
        "id": db.db_instance_identifier(),
        "endpoint": host.zip(port).map(|(h, p)| format!("{h}:{p}")),
        "address": host,
        "port": port,
    })
}

impl AwsProvider {
    async fn db(&self, id: &str) -> ProviderResult<Option<DbInstance>> {
        let out = self
            .c
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| classify("DescribeDBInstances", e));
        Ok(gone(out)?.and_then(|o| o.db_instances().first().cloned()))
    }

    pub(crate) async fn create_database(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let target = req.target.clone().unwrap_or(Json::Null);
        let id = prop_str(p, "name")
            .map(str::to_string)
            .unwrap_or_else(|| derived_name(&req.deployment, &req.address, &req.token, NAME_MAX));
        let tags: Vec<Tag> = create_tags(&req.tags, &req.token)
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let size = prop_str(p, "size").unwrap_or("small");
        let class = prop_str(&target, "instance_class")
            .map(str::to_string)
            .or_else(|| class_of(size).map(str::to_string))
            .ok_or_else(|| permanent(format!("size `{size}` has no DB instance class")))?;
        let subnets = prop_strs(p, "subnets");
        let group = if subnets.is_empty() {
            None
        } else {
            let r = self
                .c
                .rds
                .create_db_subnet_group()
                .db_subnet_group_name(&id)
                .db_subnet_group_description(format!("cairn {}", req.address))
                .set_subnet_ids(Some(subnets))
                .set_tags(Some(tags.clone()))
                .send()
                .await
                .map_err(|e| classify("CreateDBSubnetGroup", e));
            match r {
                Ok(_) | Err(ProviderError::Conflict(_)) => Some(id.clone()),
                Err(e) => return Err(e),
            }
        };
        let r = self
            .c
            .rds
            .create_db_instance()
            .db_instance_identifier(&id)
            .engine(required(p, "engine")?)
            .set_engine_version(prop_str(p, "version").map(str::to_string))
            .db_instance_class(class)
            .allocated_storage(prop_i64(p, "storage_gb").unwrap_or(10) as i32)
            .db_name(prop_str(p, "database").unwrap_or("app"))
            .master_username(prop_str(p, "owner").unwrap_or("app"))
            .master_user_password(required(p, "owner_password")?)
            .set_db_subnet_group_name(group)
            .set_vpc_security_group_ids(Some(prop_strs(p, "firewalls")).filter(|f| !f.is_empty()))
            .publicly_accessible(false)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify("CreateDBInstance", e));
        match r {
            Ok(_) => {}
            // The identifier is the token's: this is the earlier attempt's.
            Err(ProviderError::Conflict(m)) if m.contains("AlreadyExists") => {
                tracing::info!(%id, "the database of an earlier attempt exists; waiting for it");
            }
            Err(e) => return Err(e),
        }
        let db = self.wait_available(&id).await?;
        Ok(db_attributes(&db))
    }

    async fn wait_available(&self, id: &str) -> ProviderResult<DbInstance> {
        wait_for(&format!("database {id}"), self.waits.database, || async {
            let Some(db) = self.db(id).await? else {
                return Ok(None);
            };
            match db.db_instance_status() {
                Some("available") => Ok(Some(db)),
                Some(
                    s @ ("failed"
                    | "incompatible-parameters"
                    | "incompatible-network"
                    | "storage-full"
                    | "inaccessible-encryption-credentials"),
                ) => Err(permanent(format!("database {id} is {s}"))),
                _ => Ok(None),
            }
        })
        .await
    }

    pub(crate) async fn find_database(&self, token: &str) -> ProviderResult<Option<String>> {
        Ok(self
            .all_databases()
            .await?
            .into_iter()
            .find(|db| {
                db.tag_list()
                    .iter()
                    .any(|t| t.key() == Some(TOKEN_TAG) && t.value() == Some(token))
            })
            .and_then(|db| db.db_instance_identifier().map(str::to_string)))
    }

    pub(crate) async fn all_databases(&self) -> ProviderResult<Vec<DbInstance>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .c
                .rds
                .describe_db_instances()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("DescribeDBInstances", e))?;
            out.extend(page.db_instances().iter().cloned());
            match page.marker() {
                Some(m) => marker = Some(m.to_string()),
                None => return Ok(out),
            }
        }
    }

    pub(crate) async fn read_database(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(db) = self.db(id).await? else {
            return Ok(None);
        };
        if db.db_instance_status() == Some("deleting") {
            return Ok(None);
        }
        let tags = db
            .tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        let mut p = blank(Kind::Database);
        p.insert("name".into(), json!(id));
        p.insert("engine".into(), json!(db.engine()));
        p.insert("version".into(), json!(db.engine_version()));
        p.insert("size".into(), json!(db.db_instance_class().map(size_of)));
        p.insert("storage_gb".into(), json!(db.allocated_storage()));
        p.insert("database".into(), json!(db.db_name()));
        p.insert("owner".into(), json!(db.master_username()));
        // The password cannot be read back: it stays as the state has it.
        p.insert(
            "subnets".into(),
            json!(
                db.db_subnet_group()
                    .map(|g| g
                        .subnets()
                        .iter()
                        .filter_map(|s| s.subnet_identifier())
                        .collect::<Vec<_>>())
                    .unwrap_or_default()
            ),
        );
        p.insert(
            "firewalls".into(),
            json!(
                db.vpc_security_groups()
                    .iter()
                    .filter_map(|g| g.vpc_security_group_id())
                    .collect::<Vec<_>>()
            ),
        );
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: db_attributes(&db),
            tags,
        }))
    }

    pub(crate) async fn update_database(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let changed = |k: &str| req.changed.iter().any(|c| c == k);
        if changed("size")
            || changed("storage_gb")
            || changed("owner_password")
            || changed("firewalls")
        {
            self.c
                .rds
                .modify_db_instance()
                .db_instance_identifier(&req.id)
                .set_db_instance_class(
                    changed("size")
                        .then(|| {
                            class_of(prop_str(p, "size").unwrap_or("small")).map(str::to_string)
                        })
                        .flatten(),
                )
                .set_allocated_storage(
                    changed("storage_gb")
                        .then(|| prop_i64(p, "storage_gb").map(|n| n as i32))
                        .flatten(),
                )
                .set_master_user_password(
                    changed("owner_password")
                        .then(|| prop_str(p, "owner_password").map(str::to_string))
                        .flatten(),
                )
                .set_vpc_security_group_ids(changed("firewalls").then(|| prop_strs(p, "firewalls")))
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| classify("ModifyDBInstance", e))?;
        }
        let db = self.wait_available(&req.id).await?;
        if let Some(arn) = db.db_instance_arn() {
            let current: Vec<String> = db
                .tag_list()
                .iter()
                .filter_map(|t| t.key())
                .filter(|k| *k != TOKEN_TAG && !req.tags.contains_key(*k))
                .map(str::to_string)
                .collect();
            if !current.is_empty() {
                self.c
                    .rds
                    .remove_tags_from_resource()
                    .resource_name(arn)
                    .set_tag_keys(Some(current))
                    .send()
                    .await
                    .map_err(|e| classify("RemoveTagsFromResource", e))?;
            }
            self.c
                .rds
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(
                    req.tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| classify("AddTagsToResource", e))?;
        }
        Ok(db_attributes(&db))
    }

    pub(crate) async fn delete_database(&self, id: &str) -> ProviderResult<()> {
        let Some(db) = self.db(id).await? else {
            return Ok(());
        };
        let group = db
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_name())
            .filter(|g| *g == id)
            .map(str::to_string);
        if db.db_instance_status() != Some("deleting") {
            // The engine asked for `--allow-data-loss` before calling this:
            // no final snapshot, which would outlive the deployment.
            let r = self
                .c
                .rds
                .delete_db_instance()
                .db_instance_identifier(id)
                .skip_final_snapshot(true)
                .delete_automated_backups(true)
                .send()
                .await
                .map_err(|e| classify("DeleteDBInstance", e));
            gone(r)?;
        }
        wait_for(
            &format!("database {id} to go"),
            self.waits.database,
            || async { Ok(self.db(id).await?.is_none().then_some(())) },
        )
        .await?;
        if let Some(g) = group {
            let r = self
                .c
                .rds
                .delete_db_subnet_group()
                .db_subnet_group_name(g)
                .send()
                .await
                .map_err(|e| classify("DeleteDBSubnetGroup", e));
            gone(r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_classes_and_back() {
        assert_eq!(class_of("small"), Some("db.t3.small"));
        assert_eq!(size_of("db.t3.small"), "small");
        assert_eq!(size_of("db.r6g.large"), "db.r6g.large");
    }
}
