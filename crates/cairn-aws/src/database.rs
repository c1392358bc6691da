//! database → RDS instance (PostgreSQL), in a DB subnet group of its own
//! when the template gives subnets. Its identifier is derived from the
//! token (or is the `name`), which RDS keeps unique: a retried create
//! meets the first one instead of making a second.

use std::collections::BTreeMap;

use aws_sdk_rds::types::{DbInstance, Tag};
use cairn_engine::provider::*;
use cairn_engine::schema::database::{Database, DbSize};
use serde_json::json;

use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;

/// RDS identifiers: at most 63 characters.
const NAME_MAX: usize = 63;

/// Portable sizes → burstable DB instance classes.
fn class_of(size: DbSize) -> &'static str {
    match size {
        DbSize::Micro => "db.t3.micro",
        DbSize::Small => "db.t3.small",
        DbSize::Medium => "db.t3.medium",
        DbSize::Large => "db.t3.large",
    }
}

/// The portable size of a class, or the class itself when it is none of
/// them (`instance_class` given, or a database made outside cairn).
fn size_of(class: &str) -> String {
    DbSize::ALL
        .into_iter()
        .find(|s| class_of(*s) == class)
        .map_or_else(|| class.to_string(), |s| s.as_str().to_string())
}

fn rds_tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// RDS counts storage in an `i32`.
fn storage(gb: u32) -> ProviderResult<i32> {
    i32::try_from(gb).map_err(|_| permanent(format!("storage_gb {gb} is more than RDS takes")))
}

fn read(p: &Json) -> ProviderResult<Database> {
    Database::read(p).map_err(|e| permanent(format!("database {e}")))
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
        let db = read(&req.properties)?;
        let target = req.target.clone().unwrap_or(Json::Null);
        let id = db
            .name
            .clone()
            .unwrap_or_else(|| derived_name(&req.deployment, &req.address, &req.token, NAME_MAX));
        let tags = rds_tags(&create_tags(&req.tags, &req.token));
        let class = prop_str(&target, "instance_class").unwrap_or(class_of(db.size));
        let subnets = db.subnets;
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
            .engine(db.engine.as_str())
            .set_engine_version(db.version)
            .db_instance_class(class)
            .allocated_storage(storage(db.storage_gb)?)
            .db_name(db.database)
            .master_username(db.owner)
            .master_user_password(db.owner_password)
            .set_db_subnet_group_name(group)
            .set_vpc_security_group_ids(Some(db.firewalls).filter(|f| !f.is_empty()))
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
        let db = read(&req.properties)?;
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
                .set_db_instance_class(changed("size").then(|| class_of(db.size).to_string()))
                .set_allocated_storage(
                    changed("storage_gb")
                        .then(|| storage(db.storage_gb))
                        .transpose()?,
                )
                .set_master_user_password(changed("owner_password").then_some(db.owner_password))
                .set_vpc_security_group_ids(changed("firewalls").then_some(db.firewalls))
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| classify("ModifyDBInstance", e))?;
        }
        let db = self.wait_available(&req.id).await?;
        if let Some(arn) = db.db_instance_arn() {
            let current = stale_tag_keys(db.tag_list().iter().filter_map(|t| t.key()), &req.tags);
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
                .set_tags(Some(rds_tags(&req.tags)))
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
        assert_eq!(class_of(DbSize::Small), "db.t3.small");
        assert_eq!(size_of("db.t3.small"), "small");
        assert_eq!(size_of("db.r6g.large"), "db.r6g.large");
    }
}
